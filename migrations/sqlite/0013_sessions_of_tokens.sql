-- A console session belongs to the API token that opened it: a fingerprint of the token (never
-- the token) is kept with it, and a session whose token has left API_TOKENS ends. Sessions
-- opened before this version have none and end at their next request. And when a session was
-- last used: one unused for CONSOLE_IDLE_TIMEOUT ends.
ALTER TABLE console_sessions ADD COLUMN token_fingerprint TEXT;
ALTER TABLE console_sessions ADD COLUMN last_used_at TEXT;
