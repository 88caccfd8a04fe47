-- The physical limit of the service's per-event work on PostgreSQL:
-- record the event id, create the shipment, one statement, one durable commit, on a minimal
-- two-table schema. Run by pgbench -M prepared, without a per-transaction log.
WITH e AS (
    INSERT INTO events (event_id) VALUES (gen_random_uuid()::text)
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
INSERT INTO shipments (id, order_id, items, shipping_address)
SELECT gen_random_uuid(), event_id,
       '[{"sku":"SKU001","quantity":2},{"sku":"SKU005","quantity":1}]',
       '{"street":"123 Main St","city":"Anytown","zip":"12345"}'
FROM e;
