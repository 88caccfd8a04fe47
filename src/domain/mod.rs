//! The product's vocabulary, parsed from untrusted input once so that everything past the
//! front door works with values that are known to be valid, and the rules of an order's life.

pub mod fold;
pub mod order_event;
pub mod shipment;

pub use fold::{Decision, Fact, Folded, OrderLife, Outcome};
pub use order_event::{Change, Delivery, Event, FieldError, OrderEvent};
pub use shipment::{
    Address, Announcement, Item, OrderState, Shipment, ShipmentChange, ShipmentStatus,
};
