-- Quarantine (PRODUCT.md section 11): an authentic event the service cannot apply is kept as
-- it came until an operator replays or discards it. The same bytes again are the same entry.
CREATE TABLE quarantine (
    id                UUID        NOT NULL CONSTRAINT quarantine_pkey PRIMARY KEY,
    -- Arrival order, for keyset paging.
    seq               BIGINT      GENERATED ALWAYS AS IDENTITY CONSTRAINT quarantine_seq_key UNIQUE,
    -- The SHA-256 of the body: one entry per distinct body, however often it is delivered.
    body_key          TEXT        NOT NULL CONSTRAINT quarantine_body_key_key UNIQUE,
    -- The bytes as received.
    body              BYTEA       NOT NULL,
    -- How its signature was made ('hex' or 'standard'), and the signed webhook-id if any: the
    -- event id a replay takes first.
    scheme            TEXT        NOT NULL,
    webhook_id        TEXT,
    -- The problem it would have had (400 malformed-json or 422 invalid-event), as JSON.
    reason            TEXT        NOT NULL,
    problem           JSONB       NOT NULL,
    status            TEXT        NOT NULL
        CONSTRAINT quarantine_status_check CHECK (status IN ('held', 'replayed', 'discarded')),
    deliveries        BIGINT      NOT NULL,
    first_received_at TIMESTAMPTZ NOT NULL,
    last_received_at  TIMESTAMPTZ NOT NULL,
    -- An operator's corrected event, applied instead of the body; kept beside it.
    correction        JSONB,
    -- The event id the replay applied.
    event_id          TEXT,
    -- When it was replayed or discarded: retention removes it RETENTION later.
    resolved_at       TIMESTAMPTZ
);

CREATE INDEX quarantine_status_seq_idx ON quarantine (status, seq);
CREATE INDEX quarantine_resolved_idx ON quarantine (resolved_at) WHERE resolved_at IS NOT NULL;
