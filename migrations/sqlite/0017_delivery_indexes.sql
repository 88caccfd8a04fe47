-- A shipment's deliveries, for every subscription, by status, in the order they were made:
-- the claim finds the first pending one of a subscription and shipment along it (the planner
-- keeps to it even without statistics), and a shipment's page and
-- GET /deliveries?shipment_id= read only that shipment's few. It replaces the index of
-- pending deliveries by subscription and shipment, which only the claim could use.
DROP INDEX deliveries_pending_order_idx;
CREATE INDEX deliveries_shipment_idx ON deliveries (shipment_id, subscription_id, status, seq);

-- The failed deliveries, newest first, for the lists filtered by `failed` (what an operator
-- looks for to queue again): few among many delivered, and a walk over every delivery to
-- find them grew with the table. Only failed deliveries have an entry.
CREATE INDEX deliveries_failed_idx ON deliveries (seq) WHERE status = 'failed';
