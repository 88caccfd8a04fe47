-- Quarantine (PRODUCT.md section 11): an authentic event the service cannot apply is kept as
-- it came until an operator replays or discards it. The same bytes again are the same entry.
CREATE TABLE quarantine (
    id                BLOB        NOT NULL CONSTRAINT quarantine_id_key UNIQUE,
    -- Arrival order, for keyset paging.
    seq               INTEGER     PRIMARY KEY,
    -- The SHA-256 of the body: one entry per distinct body, however often it is delivered.
    body_key          TEXT        NOT NULL CONSTRAINT quarantine_body_key_key UNIQUE,
    -- The bytes as received.
    body              BLOB        NOT NULL,
    -- How its signature was made ('hex' or 'standard'), and the signed webhook-id if any: the
    -- event id a replay takes first.
    scheme            TEXT        NOT NULL,
    webhook_id        TEXT,
    -- The problem it would have had (400 malformed-json or 422 invalid-event), as JSON.
    reason            TEXT        NOT NULL,
    problem           TEXT        NOT NULL,
    status            TEXT        NOT NULL
        CONSTRAINT quarantine_status_check CHECK (status IN ('held', 'replayed', 'discarded')),
    deliveries        INTEGER     NOT NULL,
    first_received_at TEXT        NOT NULL,
    last_received_at  TEXT        NOT NULL,
    -- An operator's corrected event, applied instead of the body; kept beside it.
    correction        TEXT,
    -- The event id the replay applied.
    event_id          TEXT,
    -- When it was replayed or discarded: retention removes it RETENTION later.
    resolved_at       TEXT
);

CREATE INDEX quarantine_status_seq_idx ON quarantine (status, seq);
CREATE INDEX quarantine_resolved_idx ON quarantine (resolved_at) WHERE resolved_at IS NOT NULL;
