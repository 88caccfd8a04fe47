-- Informational: the same per-event work as pg_ceiling_minimal.sql on the service's own schema
-- (its wider rows and extra indexes), run the same way.
WITH e AS (
    INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome, shipment_id,
                                  in_history, head_seq, received_at)
    VALUES (gen_random_uuid()::text, false, 'order.created', gen_random_uuid()::text, 'processed',
            gen_random_uuid(), true, 1, now())
    ON CONFLICT DO NOTHING
    RETURNING event_id, order_id, shipment_id
)
INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status,
                       source_event_id, ordered_at, created_at, updated_at)
SELECT shipment_id, order_id, 'CUST987',
       '[{"sku":"SKU001","quantity":2},{"sku":"SKU005","quantity":1}]',
       '{"street":"123 Main St","city":"Anytown","zip":"12345"}',
       'pending', event_id, now(), now(), now()
FROM e
ON CONFLICT DO NOTHING;
