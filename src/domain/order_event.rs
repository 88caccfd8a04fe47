//! An authentic webhook payload turned into a [`Delivery`]: the event id that makes it
//! idempotent, and the event itself. The payload is read leniently (unknown fields are
//! ignored, senders add them over time) but every field we rely on is checked, and all bad
//! fields are reported together so a sender can fix its payload in one go.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::fields::{is_storable, FieldError, Fields, MAX_TEXT_BYTES};
use super::{Address, Item, OrderState, TraceContext};

pub const ORDER_CREATED: &str = "order.created";
pub const ORDER_UPDATED: &str = "order.updated";
pub const ORDER_CANCELLED: &str = "order.cancelled";

/// An item quantity must fit a 32-bit integer in every consumer downstream.
const MAX_QUANTITY: i64 = i32::MAX as i64;

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub event_id: String,
    /// Whether the service derived `event_id` (the sender gave none). A sender's ids and
    /// derived ids are separate namespaces: an explicit `"order.created:ORD-9"` on another
    /// order must not take the id ORD-9's own creation derives.
    pub derived_id: bool,
    pub event: Event,
    /// The trace of the request that brought it, for the announcements of what it changes.
    pub trace: Option<TraceContext>,
}

#[cfg(test)]
impl Delivery {
    /// An order event with a sender's id and no version, for the unit tests of every module.
    pub fn example(event_id: &str, order_id: &str, change: Change) -> Delivery {
        Delivery {
            event_id: event_id.into(),
            derived_id: false,
            event: Event::Order(OrderEvent {
                order_id: order_id.into(),
                version: None,
                occurred_at: Some(chrono::DateTime::UNIX_EPOCH),
                change,
            }),
            trace: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Order(OrderEvent),
    /// An authentic event of a type this service does not handle; it is recorded, not applied.
    Other {
        event_type: String,
        order_id: Option<String>,
    },
}

/// One step of an order's life, as the sender reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    pub order_id: String,
    /// The sender's place for this event in the order's history, when it gave one.
    pub version: Option<i64>,
    /// The event's `timestamp`; required for the events that carry the order's state.
    pub occurred_at: Option<DateTime<Utc>>,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Created(OrderState),
    /// The order's full state after the change.
    Updated(OrderState),
    Cancelled {
        reason: Option<String>,
    },
}

impl Change {
    pub fn event_type(&self) -> &'static str {
        match self {
            Change::Created(_) => ORDER_CREATED,
            Change::Updated(_) => ORDER_UPDATED,
            Change::Cancelled { .. } => ORDER_CANCELLED,
        }
    }

    /// The order's state the change carries; a cancellation carries none.
    pub fn state(&self) -> Option<&OrderState> {
        match self {
            Change::Created(state) | Change::Updated(state) => Some(state),
            Change::Cancelled { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Change::Cancelled { reason } => reason.as_deref(),
            _ => None,
        }
    }
}

impl Event {
    pub fn event_type(&self) -> &str {
        match self {
            Event::Order(event) => event.change.event_type(),
            Event::Other { event_type, .. } => event_type,
        }
    }

    pub fn order_id(&self) -> Option<&str> {
        match self {
            Event::Order(event) => Some(&event.order_id),
            Event::Other { order_id, .. } => order_id.as_deref(),
        }
    }
}

impl Delivery {
    /// Reads a JSON payload. `webhook_id` is the signed Standard Webhooks id, which wins over
    /// any id in the payload; `body` is the raw payload, hashed when nothing else identifies it.
    pub fn parse(
        payload: &Value,
        body: &[u8],
        webhook_id: Option<&str>,
    ) -> Result<Delivery, Vec<FieldError>> {
        let mut fields = Fields::default();
        if webhook_id.is_some_and(|id| id.len() > MAX_TEXT_BYTES) {
            fields.reject("webhook-id", "must be at most 1024 bytes");
        }
        let Some(object) = payload.as_object() else {
            fields.reject("body", "must be a JSON object");
            return Err(fields.errors);
        };
        // Either name may carry the sender's id (`id` wins); whichever is present must be valid.
        let id = fields.optional_text(object.get("id"), "id");
        let event_id = fields.optional_text(object.get("event_id"), "event_id");
        let payload_id = id.or(event_id);
        let event_type = fields.text(object.get("event_type"), "event_type");
        let event = match event_type.as_deref() {
            Some(kind @ (ORDER_CREATED | ORDER_UPDATED | ORDER_CANCELLED)) => {
                order_event(&mut fields, object, kind).map(Event::Order)
            }
            Some(other) => Some(Event::Other {
                event_type: other.to_owned(),
                order_id: lenient_order_id(object),
            }),
            None => None,
        };
        let event = fields.finish(event)?;
        let given = webhook_id.map(str::to_owned).or(payload_id);
        Ok(Delivery {
            derived_id: given.is_none(),
            event_id: given.unwrap_or_else(|| derived_event_id(&event, body)),
            event,
            trace: None,
        })
    }
}

/// The id of an event that carries none: stable across redeliveries of the same event. Only
/// `order.created` is unique per order by itself; another order event is identified by its
/// version, and without one by its exact bytes.
fn derived_event_id(event: &Event, body: &[u8]) -> String {
    match event {
        Event::Order(order) => match (&order.change, order.version) {
            (Change::Created(_), _) => format!("{ORDER_CREATED}:{}", order.order_id),
            (change, Some(version)) => {
                format!("{}:{}:v{version}", change.event_type(), order.order_id)
            }
            (_, None) => body_digest(body),
        },
        Event::Other { .. } => body_digest(body),
    }
}

/// `sha256:<hex digest>`: the id of a body that carries no other.
pub fn body_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Other event types are recorded as they come; an order id is kept when it is usable.
fn lenient_order_id(object: &Map<String, Value>) -> Option<String> {
    let order_id = object.get("data")?.get("order_id")?.as_str()?;
    is_storable(order_id).then(|| order_id.to_owned())
}

fn order_event(
    fields: &mut Fields,
    object: &Map<String, Value>,
    event_type: &str,
) -> Option<OrderEvent> {
    let cancelled = event_type == ORDER_CANCELLED;
    // A cancellation carries no state, so it needs no time of its own.
    let occurred_at = match object.get("timestamp") {
        None | Some(Value::Null) if cancelled => Some(None),
        value => fields.timestamp(value, "timestamp").map(Some),
    };
    let data = fields.object(object.get("data"), "data")?;
    let order_id = fields.text(data.get("order_id"), "data.order_id");
    let version = version(fields, data.get("version"));
    let change = match event_type {
        ORDER_CREATED => state(fields, data).map(Change::Created),
        ORDER_UPDATED => state(fields, data).map(Change::Updated),
        _ => Some(Change::Cancelled {
            reason: fields.optional_text(data.get("reason"), "data.reason"),
        }),
    };
    Some(OrderEvent {
        order_id: order_id?,
        version: version?,
        occurred_at: occurred_at?,
        change: change?,
    })
}

/// `data.version`: absent, or an integer from 1.
fn version(fields: &mut Fields, value: Option<&Value>) -> Option<Option<i64>> {
    match value {
        None | Some(Value::Null) => Some(None),
        Some(value) => match value.as_i64() {
            Some(version) if version >= 1 => Some(Some(version)),
            _ => {
                fields.reject("data.version", "must be an integer of at least 1");
                None
            }
        },
    }
}

fn state(fields: &mut Fields, data: &Map<String, Value>) -> Option<OrderState> {
    let customer_id = fields.text(data.get("customer_id"), "data.customer_id");
    let items = items(fields, data.get("items"));
    let shipping_address = address(fields, data.get("shipping_address"));
    Some(OrderState {
        customer_id: customer_id?,
        items: items?,
        shipping_address: shipping_address?,
    })
}

fn items(fields: &mut Fields, value: Option<&Value>) -> Option<Vec<Item>> {
    let list = match value {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            fields.reject("data.items", "must contain at least one item");
            return None;
        }
        None | Some(Value::Null) => {
            fields.reject("data.items", "is required");
            return None;
        }
        Some(_) => {
            fields.reject("data.items", "must be an array");
            return None;
        }
    };
    let mut items = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let path = format!("data.items[{index}]");
        let Some(item) = fields.object(Some(entry), &path) else {
            continue;
        };
        let sku = fields.text(item.get("sku"), &format!("{path}.sku"));
        let quantity = quantity(fields, item.get("quantity"), &format!("{path}.quantity"));
        if let (Some(sku), Some(quantity)) = (sku, quantity) {
            items.push(Item { sku, quantity });
        }
    }
    (items.len() == list.len()).then_some(items)
}

fn quantity(fields: &mut Fields, value: Option<&Value>, field: &str) -> Option<i64> {
    match value.and_then(Value::as_i64) {
        Some(quantity) if (1..=MAX_QUANTITY).contains(&quantity) => Some(quantity),
        _ => {
            fields.reject(field, "must be an integer from 1 to 2147483647");
            None
        }
    }
}

fn address(fields: &mut Fields, value: Option<&Value>) -> Option<Address> {
    let address = fields.object(value, "data.shipping_address")?;
    let street = fields.text(address.get("street"), "data.shipping_address.street");
    let city = fields.text(address.get("city"), "data.shipping_address.city");
    let zip = fields.text(address.get("zip"), "data.shipping_address.zip");
    let country = fields.optional_text(address.get("country"), "data.shipping_address.country");
    Some(Address {
        street: street?,
        city: city?,
        zip: zip?,
        country,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({"event_type": "order.created", "timestamp": "2023-10-27T10:00:00Z",
               "data": {"order_id": "ORD12345", "customer_id": "CUST987",
                        "items": [{"sku": "SKU001", "quantity": 2}, {"sku": "SKU005", "quantity": 1}],
                        "shipping_address": {"street": "123 Main St", "city": "Anytown", "zip": "12345"}}})
    }

    fn fields_of(payload: Value) -> Vec<String> {
        Delivery::parse(&payload, b"", None)
            .unwrap_err()
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn the_seed_event_parses_with_a_derived_id() {
        let delivery = Delivery::parse(&seed(), b"", None).unwrap();
        assert_eq!(delivery.event_id, "order.created:ORD12345");
        let Event::Order(order) = delivery.event else {
            panic!("not an order")
        };
        let Change::Created(state) = order.change else {
            panic!("not a creation")
        };
        assert_eq!(state.items.len(), 2);
        assert_eq!(order.version, None);
        assert_eq!(
            order.occurred_at.unwrap().to_rfc3339(),
            "2023-10-27T10:00:00+00:00"
        );
    }

    #[test]
    fn the_signed_webhook_id_wins_over_the_payload_id() {
        let mut payload = seed();
        payload["id"] = json!("evt_payload");
        let from_payload = Delivery::parse(&payload, b"", None).unwrap();
        let from_header = Delivery::parse(&payload, b"", Some("msg_header")).unwrap();
        assert_eq!(from_payload.event_id, "evt_payload");
        assert_eq!(from_header.event_id, "msg_header");
        assert!(!from_payload.derived_id && !from_header.derived_id);
        assert!(Delivery::parse(&seed(), b"", None).unwrap().derived_id);
    }

    #[test]
    fn text_limits_count_bytes_and_cover_the_webhook_id() {
        let mut payload = seed();
        // 400 characters, 1,200 bytes.
        payload["data"]["order_id"] = json!("€".repeat(400));
        assert_eq!(fields_of(payload), ["data.order_id"]);
        let long_id = "€".repeat(400);
        let errors = Delivery::parse(&seed(), b"", Some(&long_id)).unwrap_err();
        assert_eq!(errors[0].field, "webhook-id");
        let mut fits = seed();
        fits["data"]["order_id"] = json!("€".repeat(341));
        assert!(Delivery::parse(&fits, b"", Some(&"x".repeat(1024))).is_ok());
    }

    #[test]
    fn every_bad_field_is_named() {
        let payload = json!({"event_type": "order.created", "timestamp": "yesterday",
            "data": {"order_id": "", "customer_id": 7,
                     "items": [{"sku": "A", "quantity": 0}, {"quantity": 2.5}],
                     "shipping_address": {"street": "x\u{0}y", "city": "c"}}});
        assert_eq!(
            fields_of(payload),
            [
                "timestamp",
                "data.order_id",
                "data.customer_id",
                "data.items[0].quantity",
                "data.items[1].sku",
                "data.items[1].quantity",
                "data.shipping_address.street",
                "data.shipping_address.zip",
            ]
        );
    }

    #[test]
    fn an_event_without_items_or_data_is_rejected() {
        let mut payload = seed();
        payload["data"]["items"] = json!([]);
        assert_eq!(fields_of(payload), ["data.items"]);
        assert_eq!(
            fields_of(json!({"event_type": "order.created", "timestamp": "2023-10-27T10:00:00Z"})),
            ["data"]
        );
        assert_eq!(fields_of(json!([1, 2])), ["body"]);
    }

    #[test]
    fn other_event_types_are_kept_with_an_id_of_their_own() {
        let body = br#"{"event_type":"order.shipped","data":{"order_id":"ORD-1"}}"#;
        let payload: Value = serde_json::from_slice(body).unwrap();
        let delivery = Delivery::parse(&payload, body, None).unwrap();
        assert_eq!(
            delivery.event_id,
            format!("sha256:{}", hex::encode(Sha256::digest(body)))
        );
        assert_eq!(delivery.event.event_type(), "order.shipped");
        assert_eq!(delivery.event.order_id(), Some("ORD-1"));
    }

    #[test]
    fn an_update_carries_the_full_state_and_a_version() {
        let mut payload = seed();
        payload["event_type"] = json!("order.updated");
        payload["data"]["version"] = json!(3);
        let delivery = Delivery::parse(&payload, b"", None).unwrap();
        assert_eq!(delivery.event_id, "order.updated:ORD12345:v3");
        let Event::Order(order) = delivery.event else {
            panic!("not an order")
        };
        assert_eq!(order.version, Some(3));
        assert!(matches!(order.change, Change::Updated(_)));

        payload["data"] = json!({"order_id": "ORD12345"});
        assert_eq!(
            fields_of(payload),
            ["data.customer_id", "data.items", "data.shipping_address"]
        );
    }

    #[test]
    fn a_cancellation_needs_only_the_order_and_identifies_itself_by_its_bytes() {
        let body =
            br#"{"event_type":"order.cancelled","data":{"order_id":"ORD-1","reason":"fraud"}}"#;
        let payload: Value = serde_json::from_slice(body).unwrap();
        let delivery = Delivery::parse(&payload, body, None).unwrap();
        assert!(delivery.event_id.starts_with("sha256:"));
        assert_eq!(
            delivery.event,
            Event::Order(OrderEvent {
                order_id: "ORD-1".into(),
                version: None,
                occurred_at: None,
                change: Change::Cancelled {
                    reason: Some("fraud".into())
                },
            })
        );
        let versioned = json!({"event_type": "order.cancelled",
                               "data": {"order_id": "ORD-1", "version": 4}});
        let delivery = Delivery::parse(&versioned, b"", None).unwrap();
        assert_eq!(delivery.event_id, "order.cancelled:ORD-1:v4");
    }

    #[test]
    fn a_bad_version_or_reason_is_named() {
        for version in [json!(0), json!(-1), json!(1.5), json!("2"), json!(u64::MAX)] {
            let payload = json!({"event_type": "order.cancelled",
                                 "data": {"order_id": "ORD-1", "version": version}});
            assert_eq!(fields_of(payload), ["data.version"]);
        }
        let payload = json!({"event_type": "order.cancelled",
                             "data": {"order_id": "ORD-1", "reason": 7}});
        assert_eq!(fields_of(payload), ["data.reason"]);
    }

    /// Any JSON value at all, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                proptest::collection::hash_map(
                    prop::sample::select(vec![
                        "event_type",
                        "timestamp",
                        "data",
                        "order_id",
                        "customer_id",
                        "items",
                        "sku",
                        "quantity",
                        "shipping_address",
                        "street",
                        "city",
                        "zip",
                        "id",
                        "x"
                    ]),
                    inner,
                    0..8,
                )
                .prop_map(|map| Value::Object(
                    map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics_the_parser(payload in any_json()) {
            let _ = Delivery::parse(&payload, b"", None);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_json_and_event_steps(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(payload) = serde_json::from_slice::<Value>(&body) {
                let _ = Delivery::parse(&payload, &body, None);
            }
        }

        #[test]
        fn a_seed_event_with_any_order_id_is_either_accepted_as_is_or_names_the_field(order_id in ".*") {
            let mut payload = seed();
            payload["data"]["order_id"] = json!(order_id.clone());
            match Delivery::parse(&payload, b"", None) {
                Ok(delivery) => prop_assert_eq!(delivery.event.order_id(), Some(order_id.as_str())),
                Err(errors) => prop_assert_eq!(errors[0].field.as_str(), "data.order_id"),
            }
        }
    }
}
