-- An order's whole life: order.updated and order.cancelled join order.created (the rules live
-- in src/domain/fold.rs). SQLite cannot alter a CHECK or UNIQUE constraint, so
-- processed_events is rebuilt: new outcomes, what the fold needs of each event, and a key of
-- the id and whether the service derived it (a sender's ids and derived ids are separate
-- namespaces).
CREATE TABLE processed_events_new (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL,
    derived_id  INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    order_id    TEXT,
    outcome     TEXT    NOT NULL
        CONSTRAINT processed_events_outcome_check CHECK (outcome IN
            ('processed', 'updated', 'stale', 'too_late', 'parked', 'duplicate', 'ignored')),
    shipment_id BLOB,
    received_at TEXT    NOT NULL,
    version     INTEGER,
    state       TEXT,
    reason      TEXT,
    occurred_at TEXT,
    CONSTRAINT processed_events_event_id_key UNIQUE (event_id, derived_id)
);

-- A shipment made before this version has one event in its history: the one that created it.
-- The previous release derived "{event_type}:{order_id}" and "sha256:{digest}".
INSERT INTO processed_events_new (seq, event_id, derived_id, event_type, order_id, outcome,
                                  shipment_id, received_at, version, state, occurred_at)
SELECT e.seq, e.event_id,
       coalesce(e.event_id LIKE 'sha256:%' OR e.event_id = e.event_type || ':' || e.order_id, 0),
       e.event_type, e.order_id, e.outcome, e.shipment_id, e.received_at,
       CASE WHEN s.id IS NULL THEN NULL ELSE 1 END,
       CASE WHEN s.id IS NULL THEN NULL ELSE json_object('customer_id', s.customer_id,
            'items', json(s.items), 'shipping_address', json(s.shipping_address)) END,
       s.ordered_at
FROM processed_events e LEFT JOIN shipments s ON s.source_event_id = e.event_id;

DROP TABLE processed_events;
ALTER TABLE processed_events_new RENAME TO processed_events;

-- Loading an order's history must cost the same however many orders are stored; the same
-- index serves GET /events?order_id= newest first.
CREATE INDEX processed_events_order_id_seq_idx ON processed_events (order_id, seq);

ALTER TABLE shipments ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE shipments ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE shipments ADD COLUMN cancel_reason TEXT;
-- What an operator moved the shipment to; the order's own events cannot undo it.
ALTER TABLE shipments ADD COLUMN operator_status TEXT;
ALTER TABLE shipments ADD COLUMN carrier TEXT;
ALTER TABLE shipments ADD COLUMN tracking_number TEXT;

CREATE INDEX shipments_status_seq_idx ON shipments (status, seq);
