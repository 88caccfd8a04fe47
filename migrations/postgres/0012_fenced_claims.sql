-- Fences on the outbound half and on quarantine replays.

-- The claim that holds a delivery's lease: a result is written back only while its attempt's
-- claim still holds, so one that returns after the lease passed to another instance (or after
-- an operator queued the delivery again) changes nothing.
ALTER TABLE deliveries ADD COLUMN claim UUID;

-- The bytes an entry holds, summed for QUARANTINE_MAX_BYTES without reading the bodies; and
-- the replay that holds an entry while it is applied, until when: a second replay or a
-- discard meanwhile is refused, and a replay whose instance died is free again after it.
ALTER TABLE quarantine
    ADD COLUMN body_bytes    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replay_claim  UUID,
    ADD COLUMN replay_until  TIMESTAMPTZ;
UPDATE quarantine SET body_bytes = octet_length(body);
