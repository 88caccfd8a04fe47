//! The product's vocabulary, parsed from untrusted input once so that everything past the
//! front door works with values that are known to be valid.

pub mod order_event;
pub mod shipment;

pub use order_event::{Delivery, Event, FieldError, OrderCreated};
pub use shipment::{Address, Item, Shipment, ShipmentStatus};
