-- An order's whole life: order.updated and order.cancelled join order.created. The rules that
-- decide what an event does now live in the service (src/domain/fold.rs), written once for
-- both backends, so the stored functions that held the order.created rule go.
DROP FUNCTION apply_events(TEXT[], TEXT[], TEXT[], UUID[], TEXT[], TEXT[], TEXT[], TIMESTAMPTZ[], TIMESTAMPTZ);
DROP FUNCTION apply_event(TEXT, TEXT, TEXT, UUID, TEXT, JSONB, JSONB, TIMESTAMPTZ, TIMESTAMPTZ);

-- Each event keeps what the fold needs of it: its place in the order's history and its data.
ALTER TABLE processed_events
    DROP CONSTRAINT processed_events_outcome_check,
    ADD CONSTRAINT processed_events_outcome_check CHECK (outcome IN
        ('processed', 'updated', 'stale', 'too_late', 'parked', 'duplicate', 'ignored')),
    -- Whether the service derived the id (the sender gave none): a sender's ids and derived
    -- ids are separate namespaces, so the key is both.
    ADD COLUMN derived_id  BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN version     BIGINT,
    ADD COLUMN state       JSONB,
    ADD COLUMN reason      TEXT,
    ADD COLUMN occurred_at TIMESTAMPTZ;

-- The previous release derived "{event_type}:{order_id}" and "sha256:{digest}".
UPDATE processed_events
SET derived_id = true
WHERE event_id LIKE 'sha256:%' OR event_id = event_type || ':' || order_id;
ALTER TABLE processed_events
    ALTER COLUMN derived_id DROP DEFAULT,
    DROP CONSTRAINT processed_events_pkey,
    ADD CONSTRAINT processed_events_pkey PRIMARY KEY (event_id, derived_id);

-- A shipment made before this version has one event in its history: the one that created it.
UPDATE processed_events e
SET version = 1,
    state = jsonb_build_object('customer_id', s.customer_id, 'items', s.items,
                               'shipping_address', s.shipping_address),
    occurred_at = s.ordered_at
FROM shipments s
WHERE e.event_id = s.source_event_id;

-- Loading an order's history must cost the same however many orders are stored; the same
-- index serves GET /events?order_id= newest first.
CREATE INDEX processed_events_order_id_seq_idx ON processed_events (order_id, seq);

ALTER TABLE shipments
    ADD COLUMN version         BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN revision        BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN cancel_reason   TEXT,
    -- What an operator moved the shipment to; the order's own events cannot undo it.
    ADD COLUMN operator_status TEXT,
    ADD COLUMN carrier         TEXT,
    ADD COLUMN tracking_number TEXT,
    ADD CONSTRAINT shipments_status_check CHECK (status IN
        ('pending', 'packed', 'shipped', 'delivered', 'cancelled'));

CREATE INDEX shipments_status_seq_idx ON shipments (status, seq);
