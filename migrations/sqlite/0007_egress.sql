-- Where deliveries may go, and subscriptions that only fail (PRODUCT.md section 10).

-- Why an inactive subscription was deactivated: nothing delivered for DELIVERY_DISABLE_AFTER
-- ('failing'), a 410 ('gone'), an operator ('operator'). Those deactivated before this
-- version have none recorded. And since when its deliveries have failed with nothing
-- delivered (cleared by the next delivery).
ALTER TABLE subscriptions ADD COLUMN deactivated_reason TEXT
    CONSTRAINT subscriptions_deactivated_reason_check
    CHECK (deactivated_reason IN ('failing', 'gone', 'operator'));
ALTER TABLE subscriptions ADD COLUMN failing_since TEXT;

-- Each subscription's due deliveries in order, so that a claim takes each one's share
-- without reading past it.
CREATE INDEX deliveries_due_by_subscription_idx ON deliveries (subscription_id, next_attempt_at)
    WHERE status = 'pending';
