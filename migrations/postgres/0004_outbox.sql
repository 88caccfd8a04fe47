-- Announcing every change of a shipment: subscriptions, the transactional outbox (one row per
-- change, written in the transaction of the change) and one delivery per subscription.
CREATE TABLE subscriptions (
    id          UUID        NOT NULL CONSTRAINT subscriptions_pkey PRIMARY KEY,
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY CONSTRAINT subscriptions_seq_key UNIQUE,
    url         TEXT        NOT NULL,
    -- A JSON array of the event types it wants.
    event_types JSONB       NOT NULL,
    description TEXT,
    secret      TEXT        NOT NULL,
    active      BOOLEAN     NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE outbox_events (
    id          UUID        NOT NULL CONSTRAINT outbox_events_pkey PRIMARY KEY,
    -- Write order. Two changes of one shipment are serialised by its order's lock, so a later
    -- change is never visible before an earlier one.
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY CONSTRAINT outbox_events_seq_key UNIQUE,
    shipment_id UUID        NOT NULL,
    event_type  TEXT        NOT NULL,
    -- The body every subscription receives, exactly: {id, type, timestamp, data}.
    body        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    -- Whether its deliveries (one per subscription that wants it) have been made. The
    -- dispatcher makes them, off the webhook's path.
    fanned_out  BOOLEAN     NOT NULL DEFAULT false
);

CREATE INDEX outbox_events_to_fan_out_idx ON outbox_events (seq) WHERE NOT fanned_out;

CREATE TABLE deliveries (
    id              UUID        NOT NULL CONSTRAINT deliveries_pkey PRIMARY KEY,
    -- The order the changes were written in: per (subscription, shipment), deliveries go out
    -- in this order.
    seq             BIGINT      GENERATED ALWAYS AS IDENTITY CONSTRAINT deliveries_seq_key UNIQUE,
    event_id        UUID        NOT NULL CONSTRAINT deliveries_event_id_fkey REFERENCES outbox_events (id),
    subscription_id UUID        NOT NULL CONSTRAINT deliveries_subscription_id_fkey
                                REFERENCES subscriptions (id) ON DELETE CASCADE,
    shipment_id     UUID        NOT NULL,
    status          TEXT        NOT NULL
        CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER     NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    -- While set and in the future, an instance is delivering it; after, anyone may take it over.
    leased_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- What the dispatcher claims, and the earlier pending delivery that holds a later one back.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_pending_order_idx ON deliveries (subscription_id, shipment_id, seq)
    WHERE status = 'pending';
CREATE INDEX deliveries_subscription_seq_idx ON deliveries (subscription_id, seq);

CREATE TABLE delivery_attempts (
    delivery_id  UUID        NOT NULL CONSTRAINT delivery_attempts_delivery_id_fkey
                             REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at TIMESTAMPTZ NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  BIGINT      NOT NULL
);

CREATE INDEX delivery_attempts_delivery_id_idx ON delivery_attempts (delivery_id, attempted_at);
