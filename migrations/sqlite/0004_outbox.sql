-- Announcing every change of a shipment: subscriptions, the transactional outbox (one row per
-- change, written in the transaction of the change) and one delivery per subscription.
CREATE TABLE subscriptions (
    seq         INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL CONSTRAINT subscriptions_id_key UNIQUE,
    url         TEXT    NOT NULL,
    -- A JSON array of the event types it wants.
    event_types TEXT    NOT NULL,
    description TEXT,
    secret      TEXT    NOT NULL,
    active      INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE outbox_events (
    -- Write order; the dispatcher fans events out in it.
    seq         INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL CONSTRAINT outbox_events_id_key UNIQUE,
    shipment_id BLOB    NOT NULL,
    event_type  TEXT    NOT NULL,
    -- The body every subscription receives, exactly: {id, type, timestamp, data}.
    body        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    -- Whether its deliveries (one per subscription that wants it) have been made.
    fanned_out  INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX outbox_events_to_fan_out_idx ON outbox_events (seq) WHERE NOT fanned_out;

CREATE TABLE deliveries (
    -- The order the changes were written in: per (subscription, shipment), deliveries go out
    -- in this order.
    seq             INTEGER PRIMARY KEY,
    id              BLOB    NOT NULL CONSTRAINT deliveries_id_key UNIQUE,
    event_id        BLOB    NOT NULL REFERENCES outbox_events (id),
    subscription_id BLOB    NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    shipment_id     BLOB    NOT NULL,
    status          TEXT    NOT NULL
        CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT    NOT NULL,
    -- While set and in the future, the dispatcher is delivering it.
    leased_until    TEXT,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_pending_order_idx ON deliveries (subscription_id, shipment_id, seq)
    WHERE status = 'pending';
CREATE INDEX deliveries_subscription_seq_idx ON deliveries (subscription_id, seq);

CREATE TABLE delivery_attempts (
    delivery_id  BLOB    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at TEXT    NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL
);

CREATE INDEX delivery_attempts_delivery_id_idx ON delivery_attempts (delivery_id, attempted_at);
