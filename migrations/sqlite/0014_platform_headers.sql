-- A quarantined call from a shop platform keeps the headers its mapping reads (topic, shop,
-- event id), as JSON, so that a replay maps its body the same way.
ALTER TABLE quarantine ADD COLUMN platform_headers TEXT;
