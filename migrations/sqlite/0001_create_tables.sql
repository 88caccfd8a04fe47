-- One row per event id ever acknowledged: the idempotency record.
CREATE TABLE processed_events (
    -- Insertion order, for keyset paging (the rowid; rows are never deleted).
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL CONSTRAINT processed_events_event_id_key UNIQUE,
    event_type  TEXT    NOT NULL,
    order_id    TEXT,
    outcome     TEXT    NOT NULL
        CONSTRAINT processed_events_outcome_check CHECK (outcome IN ('processed', 'duplicate', 'ignored')),
    shipment_id BLOB,
    received_at TEXT    NOT NULL
);

CREATE TABLE shipments (
    seq              INTEGER PRIMARY KEY,
    id               BLOB    NOT NULL CONSTRAINT shipments_id_key UNIQUE,
    -- The second line of defence: one shipment per order, whatever event ids a sender uses.
    order_id         TEXT    NOT NULL CONSTRAINT shipments_order_id_key UNIQUE,
    customer_id      TEXT    NOT NULL,
    items            TEXT    NOT NULL,
    shipping_address TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    source_event_id  TEXT    NOT NULL,
    ordered_at       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);

CREATE INDEX shipments_customer_id_seq_idx ON shipments (customer_id, seq);
