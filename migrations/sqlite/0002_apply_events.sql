-- PostgreSQL's version of this migration adds its batch function; SQLite applies batches from
-- the service (src/store/sqlite.rs). Kept so both backends share one list of versions.
SELECT 1;
