-- Claims find due deliveries by subscription (deliveries_due_by_subscription_idx), which also
-- holds every pending delivery for the counts of pending work. The index of all due
-- deliveries by time is one more entry written for every delivery made, leased and settled,
-- and read by nothing.
DROP INDEX deliveries_due_idx;
