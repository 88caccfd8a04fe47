-- One row per event id ever acknowledged: the idempotency record.
CREATE TABLE processed_events (
    event_id    TEXT        NOT NULL CONSTRAINT processed_events_pkey PRIMARY KEY,
    -- Insertion order, for keyset paging; event ids are the sender's and have no order.
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY CONSTRAINT processed_events_seq_key UNIQUE,
    event_type  TEXT        NOT NULL,
    order_id    TEXT,
    outcome     TEXT        NOT NULL
        CONSTRAINT processed_events_outcome_check CHECK (outcome IN ('processed', 'duplicate', 'ignored')),
    shipment_id UUID,
    received_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE shipments (
    id               UUID        NOT NULL CONSTRAINT shipments_pkey PRIMARY KEY,
    seq              BIGINT      GENERATED ALWAYS AS IDENTITY CONSTRAINT shipments_seq_key UNIQUE,
    -- The second line of defence: one shipment per order, whatever event ids a sender uses.
    order_id         TEXT        NOT NULL CONSTRAINT shipments_order_id_key UNIQUE,
    customer_id      TEXT        NOT NULL,
    items            JSONB       NOT NULL,
    shipping_address JSONB       NOT NULL,
    status           TEXT        NOT NULL,
    source_event_id  TEXT        NOT NULL,
    ordered_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX shipments_customer_id_seq_idx ON shipments (customer_id, seq);

-- Applies one delivery in the caller's transaction (autocommit: one round trip per event).
-- A reused event id returns the stored answer with is_first = false; a new event id for an
-- order that already has a shipment is recorded as 'duplicate' of that shipment. ON CONFLICT
-- waits for a concurrent twin to commit, and each statement then sees its row (READ COMMITTED).
CREATE FUNCTION apply_event(
    p_event_id TEXT, p_event_type TEXT, p_order_id TEXT, p_shipment_id UUID,
    p_customer_id TEXT, p_items JSONB, p_shipping_address JSONB, p_ordered_at TIMESTAMPTZ,
    p_now TIMESTAMPTZ)
RETURNS TABLE (is_first BOOLEAN, outcome TEXT, shipment_id UUID)
LANGUAGE plpgsql AS $$
DECLARE
    existing UUID;
BEGIN
    INSERT INTO processed_events AS e (event_id, event_type, order_id, outcome, shipment_id, received_at)
    VALUES (p_event_id, p_event_type, p_order_id,
            CASE WHEN p_shipment_id IS NULL THEN 'ignored' ELSE 'processed' END,
            p_shipment_id, p_now)
    ON CONFLICT ON CONSTRAINT processed_events_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, e.outcome, e.shipment_id
            FROM processed_events e WHERE e.event_id = p_event_id;
        RETURN;
    END IF;

    IF p_shipment_id IS NULL THEN
        RETURN QUERY SELECT true, 'ignored'::TEXT, NULL::UUID;
        RETURN;
    END IF;

    INSERT INTO shipments AS s (id, order_id, customer_id, items, shipping_address, status,
                                source_event_id, ordered_at, created_at, updated_at)
    VALUES (p_shipment_id, p_order_id, p_customer_id, p_items, p_shipping_address, 'pending',
            p_event_id, p_ordered_at, p_now, p_now)
    ON CONFLICT ON CONSTRAINT shipments_order_id_key DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT true, 'processed'::TEXT, p_shipment_id;
        RETURN;
    END IF;

    SELECT s.id INTO existing FROM shipments s WHERE s.order_id = p_order_id;
    UPDATE processed_events e SET outcome = 'duplicate', shipment_id = existing
        WHERE e.event_id = p_event_id;
    RETURN QUERY SELECT true, 'duplicate'::TEXT, existing;
END
$$;
