//! The product's vocabulary, parsed from untrusted input once so that everything past the
//! front door works with values that are known to be valid, and the rules of an order's life,
//! of an operator's moves and of subscriptions.

pub mod fold;
pub mod operator;
pub mod order_event;
pub mod shipment;
pub mod subscription;

pub use fold::{Decision, Fact, Folded, OrderLife, Outcome};
pub use operator::{IllegalMove, ShipmentPatch};
pub use order_event::{Change, Delivery, Event, FieldError, OrderEvent};
pub use shipment::{
    Address, Announcement, Item, OrderState, Shipment, ShipmentChange, ShipmentStatus,
};
pub use subscription::{NewSubscription, Subscription, SubscriptionPatch};
