-- The order's head (src/domain/plan.rs), as on PostgreSQL. SQLite's one writer takes the
-- database's write lock for each batch, so no two writers race here, and no unique index is
-- needed to stop them; the columns keep the same meaning on both backends.

-- The shipment's head: advanced by every event that joins its order's history, changed or not.
ALTER TABLE shipments ADD COLUMN head_seq INTEGER NOT NULL DEFAULT 1;
-- Set on the first event of each order's history only: the head while there is no shipment.
ALTER TABLE processed_events ADD COLUMN head_seq INTEGER;
UPDATE processed_events SET head_seq = 1
WHERE seq IN (SELECT MIN(seq) FROM processed_events WHERE in_history GROUP BY order_id);
