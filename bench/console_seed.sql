-- A production-sized database for `bench/run console`: 1,000,000 shipments and 5,000,000
-- recorded events (each order created, updated four times; a spread of statuses), and one
-- subscription with 1,000,000 outbound events and deliveries (one in ten thousand failed), made
-- in bulk by the database itself, not through the webhook.
INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status,
                       source_event_id, ordered_at, created_at, updated_at, version, revision,
                       head_seq)
SELECT gen_random_uuid(), 'ORD-' || n, 'CUST-' || (n % 50000),
       '[{"sku": "SKU001", "quantity": 2}]', '{"street": "1 Road", "city": "Town", "zip": "1"}',
       (ARRAY['pending', 'packed', 'shipped', 'delivered', 'cancelled'])[1 + n % 5],
       'order.created:ORD-' || n, now() - interval '1 day', now() - interval '1 day', now(),
       5, 5, 5
FROM generate_series(1, 1000000) AS n;

INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome,
                              shipment_id, version, received_at, in_history, head_seq)
SELECT CASE WHEN v = 1 THEN 'order.created:ORD-' || n ELSE 'order.updated:ORD-' || n || ':v' || v END,
       true, CASE WHEN v = 1 THEN 'order.created' ELSE 'order.updated' END, 'ORD-' || n,
       CASE WHEN v = 1 THEN 'processed' ELSE 'updated' END, NULL, v,
       now() - interval '1 day' + (v || ' minutes')::interval, true, NULL
FROM generate_series(1, 1000000) AS n, generate_series(1, 5) AS v;

INSERT INTO subscriptions (id, url, event_types, secret, active, created_at, updated_at)
VALUES (gen_random_uuid(), 'https://example.com/hooks', '["shipment.created"]',
        'whsec_c2VlZC1zZWNyZXQtb2YtdHdlbnR5LWZvdXI=', true, now(), now());

INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at, fanned_out)
SELECT gen_random_uuid(), id, 'shipment.created', '{}', created_at, true
FROM shipments ORDER BY seq;

INSERT INTO deliveries (id, event_id, subscription_id, shipment_id, status, attempts,
                        next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), o.id, (SELECT id FROM subscriptions), o.shipment_id,
       CASE WHEN o.seq % 10000 = 0 THEN 'failed' ELSE 'delivered' END, 1, o.created_at,
       o.created_at, o.created_at
FROM outbox_events o ORDER BY o.seq;

ANALYZE;
