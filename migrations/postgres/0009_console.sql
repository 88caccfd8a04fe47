-- The operator console (PRODUCT.md section 12): sessions that work across instances, and the
-- delivery attempts of the last hour found without reading every attempt.
CREATE TABLE console_sessions (
    -- The SHA-256 of the cookie's value: the table alone opens no session.
    id_hash    TEXT        NOT NULL CONSTRAINT console_sessions_pkey PRIMARY KEY,
    -- Every form of the session carries it.
    csrf_token TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX delivery_attempts_attempted_at_idx ON delivery_attempts (attempted_at);
