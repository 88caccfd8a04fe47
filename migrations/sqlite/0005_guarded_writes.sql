-- PostgreSQL's version of this migration adds the function its batch statement guards its
-- writes with; SQLite's batch writer checks each guarded write itself (src/store/sqlite.rs).
-- Kept so both backends share one list of versions.
SELECT 1;
