-- Retention (src/domain/retention.rs): what no promise needs any more is removed once older
-- than RETENTION, so the database stays the size of the open work.

-- Whether an event is part of its order's history (what the fold reads); the others are
-- records kept only to recognise redeliveries. The writer sets it from the event's outcome
-- (Outcome::joins_history); existing rows get it from theirs.
ALTER TABLE processed_events ADD COLUMN in_history BOOLEAN NOT NULL DEFAULT false;
UPDATE processed_events SET in_history = true
WHERE outcome IN ('processed', 'updated', 'stale', 'parked');
ALTER TABLE processed_events ALTER COLUMN in_history DROP DEFAULT;
-- Loading an order reads only its history, however many other records it has.
CREATE INDEX processed_events_history_idx ON processed_events (order_id) WHERE in_history;
-- The records a pass removes, oldest first.
CREATE INDEX processed_events_records_idx ON processed_events (received_at) WHERE NOT in_history;

-- When the history of this closed order was removed: later events of it are too late.
ALTER TABLE shipments ADD COLUMN history_removed_at TIMESTAMPTZ;
-- The shipments whose history is still kept, by their last change: where a pass looks for
-- closed orders.
CREATE INDEX shipments_history_kept_idx ON shipments (updated_at) WHERE history_removed_at IS NULL;

-- An outbound event goes with its deliveries; finding them must not scan every delivery.
CREATE INDEX deliveries_event_id_idx ON deliveries (event_id);

-- These tables now lose old rows steadily. Autovacuum by default waits for a fifth of a table
-- to be dead before it reclaims any of it, so a table holding a month of events would carry
-- days of dead rows and grow in steps. A small fraction keeps the space each pass frees
-- reusable by the next inserts, so the files stop growing.
ALTER TABLE processed_events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE outbox_events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE delivery_attempts SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
