-- Retention (src/domain/retention.rs): what no promise needs any more is removed once older
-- than RETENTION, so the database stays the size of the open work.

-- Whether an event is part of its order's history (what the fold reads); the others are
-- records kept only to recognise redeliveries. The writer sets it from the event's outcome
-- (Outcome::joins_history); existing rows get it from theirs.
ALTER TABLE processed_events ADD COLUMN in_history INTEGER NOT NULL DEFAULT 0;
UPDATE processed_events SET in_history = 1
WHERE outcome IN ('processed', 'updated', 'stale', 'parked');
-- Loading an order reads only its history, however many other records it has.
CREATE INDEX processed_events_history_idx ON processed_events (order_id) WHERE in_history;
-- The records a pass removes, oldest first.
CREATE INDEX processed_events_records_idx ON processed_events (received_at) WHERE NOT in_history;

-- When the history of this closed order was removed: later events of it are too late.
ALTER TABLE shipments ADD COLUMN history_removed_at TEXT;
-- The shipments whose history is still kept, by their last change: where a pass looks for
-- closed orders.
CREATE INDEX shipments_history_kept_idx ON shipments (updated_at) WHERE history_removed_at IS NULL;

-- An outbound event goes with its deliveries; finding them must not scan every delivery.
CREATE INDEX deliveries_event_id_idx ON deliveries (event_id);
