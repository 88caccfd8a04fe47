-- Operators' moves of shipments, shown beside the order's history; removed with that history
-- once the order is closed and untouched for RETENTION.
CREATE TABLE shipment_moves (
    seq             INTEGER PRIMARY KEY,
    shipment_id     BLOB    NOT NULL,
    -- The shipment's revision the move made.
    revision        INTEGER NOT NULL,
    from_status     TEXT    NOT NULL,
    to_status       TEXT    NOT NULL,
    carrier         TEXT,
    tracking_number TEXT,
    moved_at        TEXT    NOT NULL
);

CREATE INDEX shipment_moves_shipment_idx ON shipment_moves (shipment_id, seq);
