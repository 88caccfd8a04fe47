-- Fences on the outbound half and on quarantine replays.

-- The claim that holds a delivery's lease: a result is written back only while its attempt's
-- claim still holds, so one that returns after the lease passed to another instance (or after
-- an operator queued the delivery again) changes nothing.
ALTER TABLE deliveries ADD COLUMN claim BLOB;

-- The bytes an entry holds, summed for QUARANTINE_MAX_BYTES without reading the bodies; and
-- the replay that holds an entry while it is applied, until when: a second replay or a
-- discard meanwhile is refused, and a replay whose instance died is free again after it.
ALTER TABLE quarantine ADD COLUMN body_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE quarantine ADD COLUMN replay_claim BLOB;
ALTER TABLE quarantine ADD COLUMN replay_until TEXT;
UPDATE quarantine SET body_bytes = length(body);
