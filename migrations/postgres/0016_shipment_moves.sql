-- Operators' moves of shipments, shown beside the order's history; removed with that history
-- once the order is closed and untouched for RETENTION.
CREATE TABLE shipment_moves (
    seq             BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shipment_id     UUID        NOT NULL,
    -- The shipment's revision the move made.
    revision        BIGINT      NOT NULL,
    from_status     TEXT        NOT NULL,
    to_status       TEXT        NOT NULL,
    carrier         TEXT,
    tracking_number TEXT,
    moved_at        TIMESTAMPTZ NOT NULL
);

CREATE INDEX shipment_moves_shipment_idx ON shipment_moves (shipment_id, seq);
