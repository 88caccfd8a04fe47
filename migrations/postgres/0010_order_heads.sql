-- Writers of one order do not lock it: every write of an order's history is guarded by the
-- order's head (src/domain/plan.rs), which the write advances from the value it read. The
-- head is the shipment when the order has one, else the order's first recorded event.

-- The shipment's head: advanced by every event that joins its order's history, changed or not.
ALTER TABLE shipments ADD COLUMN head_seq BIGINT NOT NULL DEFAULT 1;
-- Set on the first event of each order's history only: the head while there is no shipment.
ALTER TABLE processed_events ADD COLUMN head_seq BIGINT;
UPDATE processed_events p SET head_seq = 1
FROM (SELECT DISTINCT ON (order_id) seq FROM processed_events
      WHERE in_history ORDER BY order_id, seq) first
WHERE p.seq = first.seq;
-- One head per order: of two writers that both take an order for new, the second one's
-- insert fails, and it reads the order again.
CREATE UNIQUE INDEX processed_events_head_idx ON processed_events (order_id)
WHERE head_seq IS NOT NULL;
