-- The minimal schema of the hard ceiling: an event id primary key; a shipment with a unique
-- order id, items and address as JSONB.
CREATE TABLE events (event_id TEXT PRIMARY KEY);
CREATE TABLE shipments (
    id               UUID  PRIMARY KEY,
    order_id         TEXT  NOT NULL UNIQUE,
    items            JSONB NOT NULL,
    shipping_address JSONB NOT NULL
);
