-- Where deliveries may go, and subscriptions that only fail (PRODUCT.md section 10).

-- Why an inactive subscription was deactivated: nothing delivered for DELIVERY_DISABLE_AFTER
-- ('failing'), a 410 ('gone'), an operator ('operator'). Those deactivated before this
-- version have none recorded. And since when its deliveries have failed with nothing
-- delivered (cleared by the next delivery).
ALTER TABLE subscriptions ADD COLUMN deactivated_reason TEXT
    CONSTRAINT subscriptions_deactivated_reason_check
    CHECK (deactivated_reason IN ('failing', 'gone', 'operator'));
ALTER TABLE subscriptions ADD COLUMN failing_since TEXT;

-- The attempts in flight for a subscription (leased deliveries), counted at every claim to
-- keep each subscription to its share.
CREATE INDEX deliveries_leased_idx ON deliveries (subscription_id, leased_until)
    WHERE leased_until IS NOT NULL;
