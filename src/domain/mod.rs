//! The product's vocabulary, parsed from untrusted input once so that everything past the
//! front door works with values that are known to be valid, and the product's rules: an
//! order's life, what a batch of events writes, an operator's moves, subscriptions and
//! deliveries. Pure: no database, no HTTP; tested on its own.

pub mod delivery;
pub mod fields;
pub mod fold;
pub mod operator;
pub mod order_event;
pub mod plan;
pub mod platform;
pub mod quarantine;
pub mod retention;
pub mod shipment;
pub mod subscription;

pub use delivery::{DeliveryStatus, Health};
pub use fields::FieldError;
pub use fold::{Decision, Fact, Folded, OrderLife, Outcome};
pub use operator::{IllegalMove, ShipmentPatch};
pub use order_event::{Change, Delivery, Event, OrderEvent};
pub use plan::Applied;
pub use quarantine::QuarantineStatus;
pub use retention::Retention;
pub use shipment::{
    Address, Item, OrderState, OutboundEvent, Shipment, ShipmentChange, ShipmentStatus,
    TraceContext,
};
pub use subscription::{DeactivationReason, NewSubscription, Subscription, SubscriptionPatch};
