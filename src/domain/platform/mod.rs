//! Orders from shop platforms (contract section 14). A platform is a verifier (in
//! `signature`) and a pure mapping, here, from its order payload and headers into the order
//! event the fold already knows; nothing past the mapping learns that a platform exists. The
//! parts both platforms share are written once below: ids that no float touches, a version
//! from the order's last change, the line that becomes an item, and when an order is an event
//! at all.

pub mod shopify;
pub mod woocommerce;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fields::{is_storable, FieldError, Fields};
use super::order_event::{Change, Delivery, Event, OrderEvent};
use super::{Address, Item, OrderState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopify,
    WooCommerce,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Shopify, Platform::WooCommerce];

    /// Its name in URLs, in quarantine's `scheme`, and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Shopify => "shopify",
            Platform::WooCommerce => "woocommerce",
        }
    }

    pub fn parse(text: &str) -> Option<Platform> {
        Self::ALL
            .into_iter()
            .find(|platform| platform.as_str() == text)
    }

    /// The header carrying the base64 HMAC-SHA256 of the raw body.
    pub fn signature_header(self) -> &'static str {
        match self {
            Platform::Shopify => "x-shopify-hmac-sha256",
            Platform::WooCommerce => "x-wc-webhook-signature",
        }
    }

    /// Headers: the topic, where the call comes from, and the platform's event id (Shopify's
    /// is the same across redeliveries; WooCommerce's delivery id is not, so it is not read).
    fn header_names(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Platform::Shopify => (
                "x-shopify-topic",
                "x-shopify-shop-domain",
                &["x-shopify-event-id", "x-shopify-webhook-id"],
            ),
            Platform::WooCommerce => ("x-wc-webhook-topic", "x-wc-webhook-source", &[]),
        }
    }
}

/// What a platform says about a call besides its body: all its mapping reads of the headers,
/// and what quarantine keeps so that a replay maps the body the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub platform: Platform,
    pub topic: Option<String>,
    /// Shopify's shop domain; WooCommerce's source URL.
    pub origin: Option<String>,
    pub event_id: Option<String>,
}

impl Call {
    /// Reads the call's headers; `header` gives a header's value by lower-case name.
    pub fn read<'h>(platform: Platform, header: impl Fn(&str) -> Option<&'h str>) -> Call {
        let (topic, origin, event_ids) = platform.header_names();
        Call {
            platform,
            topic: header(topic).map(str::to_owned),
            origin: header(origin).map(str::to_owned),
            event_id: event_ids
                .iter()
                .find_map(|name| header(name).filter(|id| !id.is_empty()))
                .map(str::to_owned),
        }
    }
}

/// What a platform's call comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An order event, for the one intake path.
    Event(Box<Delivery>),
    /// Nothing for a shipment: another topic, or an order with nothing to ship.
    Ignored { event_id: String, reason: String },
}

/// Maps an authentic call; every field that stops it is named, for quarantine.
pub fn map(call: &Call, payload: &Value, body: &[u8]) -> Result<Mapped, Vec<FieldError>> {
    let mut fields = Fields::default();
    let mapped = match call.platform {
        Platform::Shopify => shopify::map(&mut fields, call, payload, body),
        Platform::WooCommerce => woocommerce::map(&mut fields, call, payload, body),
    };
    fields.finish(mapped)
}

/// A shop's order as both platforms describe it, before it is an event.
struct ShopOrder {
    order_id: String,
    /// The time of its last change in milliseconds: a later change has a higher version, so
    /// the fold decides between changes that arrive out of order. None: the platform gave
    /// none (WooCommerce's deletion), so it goes after everything recorded.
    version: Option<i64>,
    life: Life,
}

/// What the call says of the order.
enum Life {
    /// Created (`created`) or changed, with its state now.
    Open { created: bool, state: ShopState },
    /// Cancelled, with the platform's reason; a cancellation needs no state.
    Cancelled(Option<String>),
}

struct ShopState {
    placed_at: DateTime<Utc>,
    customer_id: String,
    /// The lines that need shipping.
    items: Vec<Item>,
    address: Option<Address>,
}

impl ShopOrder {
    /// The event this is, identified by the platform's id or, without one, by topic, order
    /// and version (stable across the platform's retries). An order with nothing to ship is
    /// no event.
    fn into_mapped(self, topic: &str, platform_id: Option<&str>) -> Mapped {
        let (event_id, derived_id) = match (platform_id, self.version) {
            (Some(id), _) => (id.to_owned(), false),
            (None, Some(version)) => (format!("{topic}:{}:v{version}", self.order_id), true),
            (None, None) => (format!("{topic}:{}", self.order_id), true),
        };
        let (occurred_at, change) = match self.life {
            Life::Cancelled(reason) => (None, Change::Cancelled { reason }),
            Life::Open { created, state } => {
                let reason = match &state.address {
                    None => Some("the order has no shipping address: nothing to ship"),
                    Some(_) if state.items.is_empty() => {
                        Some("no line of the order needs shipping: nothing to ship")
                    }
                    Some(_) => None,
                };
                let (Some(address), None) = (state.address, reason) else {
                    return Mapped::Ignored {
                        event_id,
                        reason: reason.unwrap_or_default().to_owned(),
                    };
                };
                let order = OrderState {
                    customer_id: state.customer_id,
                    items: state.items,
                    shipping_address: address,
                };
                let change = if created {
                    Change::Created(order)
                } else {
                    Change::Updated(order)
                };
                (Some(state.placed_at), change)
            }
        };
        Mapped::Event(Box::new(Delivery {
            event_id,
            derived_id,
            event: Event::Order(OrderEvent {
                order_id: self.order_id,
                version: self.version,
                occurred_at,
                change,
            }),
            trace: None,
        }))
    }
}

/// `<platform>:<origin>:<id>`: one shop's order 42 is not another's.
fn order_id(
    fields: &mut Fields,
    platform: Platform,
    origin: Option<String>,
    id: Option<String>,
) -> Option<String> {
    let order_id = format!("{}:{}:{}", platform.as_str(), origin?, id?);
    if is_storable(&order_id) {
        Some(order_id)
    } else {
        fields.reject("id", "with the shop makes an order id over 1024 bytes");
        None
    }
}

/// A platform's id: a JSON integer (read as one, so ids above 2^53 keep every digit) or a
/// string of digits.
fn platform_id(fields: &mut Fields, value: Option<&Value>, field: &str) -> Option<String> {
    match value {
        Some(Value::Number(number)) if number.is_u64() => Some(number.to_string()),
        Some(Value::String(text))
            if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(text.clone())
        }
        None | Some(Value::Null) => {
            fields.reject(field, "is required");
            None
        }
        Some(_) => {
            fields.reject(field, "must be a non-negative integer");
            None
        }
    }
}

/// An id that may be absent or zero (the platforms' "none").
fn optional_platform_id(fields: &mut Fields, value: Option<&Value>, field: &str) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) if number.as_u64() == Some(0) => None,
        present => platform_id(fields, present, field),
    }
}

/// A time as the platforms write it: RFC 3339, or WooCommerce's `_gmt` form without a zone.
fn time(fields: &mut Fields, value: Option<&Value>, field: &str) -> Option<DateTime<Utc>> {
    let text = fields.text(value, field)?;
    let parsed = DateTime::parse_from_rfc3339(&text)
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f").map(|at| at.and_utc())
        });
    match parsed {
        Ok(at) if at.timestamp_millis() >= 1 => Some(at),
        _ => {
            fields.reject(field, "must be a date-time after 1970");
            None
        }
    }
}

/// A text the platforms may leave empty or null for "none".
fn given<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .get(name)
        .filter(|value| !value.is_null() && value.as_str() != Some(""))
}

/// A line of an order, as an item: its SKU, else its variant, else its product. `None` when
/// it has nothing to ship (quantity 0, as Shopify's removed lines).
fn line_item(
    fields: &mut Fields,
    line: &Map<String, Value>,
    path: &str,
    quantity_field: &str,
    variant_field: &str,
) -> Option<Item> {
    let quantity_path = format!("{path}.{quantity_field}");
    let quantity = match line.get(quantity_field).and_then(Value::as_i64) {
        Some(0) => return None,
        Some(quantity) if (1..=i64::from(i32::MAX)).contains(&quantity) => quantity,
        _ => {
            fields.reject(quantity_path, "must be an integer from 0 to 2147483647");
            return None;
        }
    };
    let sku = match given(line, "sku") {
        Some(sku) => fields.text(Some(sku), &format!("{path}.sku")),
        None => {
            let variant = optional_platform_id(
                fields,
                line.get(variant_field),
                &format!("{path}.{variant_field}"),
            );
            let product = optional_platform_id(
                fields,
                line.get("product_id"),
                &format!("{path}.product_id"),
            );
            match (variant, product) {
                (Some(variant), _) => Some(format!("variant:{variant}")),
                (None, Some(product)) => Some(format!("product:{product}")),
                (None, None) => {
                    fields.reject(path, "has no sku, variant or product");
                    None
                }
            }
        }
    };
    Some(Item {
        sku: sku?,
        quantity,
    })
}

/// The items of `line_items`, leaving out the lines `ships` says need no shipping.
fn items(
    fields: &mut Fields,
    order: &Map<String, Value>,
    quantity_field: impl Fn(&Map<String, Value>) -> &'static str,
    variant_field: &str,
    ships: impl Fn(&Map<String, Value>) -> bool,
) -> Vec<Item> {
    let Some(lines) = order.get("line_items").and_then(Value::as_array) else {
        if !order.get("line_items").is_none_or(Value::is_null) {
            fields.reject("line_items", "must be an array");
        }
        return Vec::new();
    };
    let mut items = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let path = format!("line_items[{index}]");
        let Some(line) = fields.object(Some(line), &path) else {
            continue;
        };
        if ships(line) {
            items.extend(line_item(
                fields,
                line,
                &path,
                quantity_field(line),
                variant_field,
            ));
        }
    }
    items
}

/// An address from the platform's names for its parts; `None` when it has no street (an order
/// with nothing to send anywhere).
fn address(
    fields: &mut Fields,
    value: Option<&Value>,
    path: &str,
    [street, street2, city, zip, country]: [&str; 5],
) -> Option<Address> {
    let address = value?
        .as_object()
        .filter(|address| given(address, street).is_some())?;
    let part = |fields: &mut Fields, name: &str| {
        fields.text(
            given(address, name).or(address.get(name)),
            &format!("{path}.{name}"),
        )
    };
    let first = part(fields, street);
    let second = given(address, street2).and_then(|_| part(fields, street2));
    let city = part(fields, city);
    let zip = part(fields, zip);
    let country = given(address, country).and_then(|_| part(fields, country));
    let street = match (first?, second) {
        (first, Some(second)) => format!("{first}, {second}"),
        (first, None) => first,
    };
    Some(Address {
        street,
        city: city?,
        zip: zip?,
        country,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fold::OrderLife;
    use crate::domain::{Outcome, ShipmentStatus};
    use proptest::prelude::*;
    use serde_json::json;

    const SHOPIFY_CREATE: &str = include_str!("../../../examples/shopify/orders-create.json");
    const SHOPIFY_UPDATED: &str = include_str!("../../../examples/shopify/orders-updated.json");
    const SHOPIFY_CANCELLED: &str = include_str!("../../../examples/shopify/orders-cancelled.json");
    const WOO_CREATED: &str = include_str!("../../../examples/woocommerce/order.created.json");
    const WOO_CANCELLED: &str =
        include_str!("../../../examples/woocommerce/order.updated-cancelled.json");
    const WOO_DELETED: &str = include_str!("../../../examples/woocommerce/order.deleted.json");

    fn shopify(topic: &str, event_id: &str) -> Call {
        Call {
            platform: Platform::Shopify,
            topic: Some(topic.into()),
            origin: Some("shop.example.myshopify.com".into()),
            event_id: Some(event_id.into()),
        }
    }

    fn woocommerce(topic: &str) -> Call {
        Call {
            platform: Platform::WooCommerce,
            topic: Some(topic.into()),
            origin: Some("https://shop.example/".into()),
            event_id: None,
        }
    }

    fn mapped(call: &Call, body: &str) -> Mapped {
        map(call, &serde_json::from_str(body).unwrap(), body.as_bytes()).unwrap()
    }

    fn event(call: &Call, body: &str) -> Delivery {
        match mapped(call, body) {
            Mapped::Event(delivery) => *delivery,
            ignored => panic!("not an event: {ignored:?}"),
        }
    }

    fn order(delivery: &Delivery) -> &OrderEvent {
        match &delivery.event {
            Event::Order(order) => order,
            other => panic!("not an order: {other:?}"),
        }
    }

    fn millis(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn fields(call: &Call, payload: Value) -> Vec<String> {
        map(call, &payload, b"")
            .unwrap_err()
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn a_shopify_order_becomes_its_shipment() {
        let delivery = event(&shopify("orders/create", "evt-1"), SHOPIFY_CREATE);
        assert_eq!(
            (delivery.event_id.as_str(), delivery.derived_id),
            ("evt-1", false)
        );
        let order = order(&delivery);
        // Above 2^53: every digit kept.
        assert_eq!(
            order.order_id,
            "shopify:shop.example.myshopify.com:820982911946154508"
        );
        assert_eq!(order.version, Some(millis("2026-12-01T10:15:00-05:00")));
        let Change::Created(state) = &order.change else {
            panic!("not a creation")
        };
        assert_eq!(state.customer_id, "115310627314723954");
        // The gift card needs no shipping; a line without a SKU is its variant.
        let items: Vec<(&str, i64)> = state
            .items
            .iter()
            .map(|i| (i.sku.as_str(), i.quantity))
            .collect();
        assert_eq!(items, [("IPOD2008PINK", 1), ("variant:457924702", 2)]);
        assert_eq!(
            state.shipping_address,
            Address {
                street: "123 Shipping Street, Suite 4".into(),
                city: "Shippington".into(),
                zip: "40003".into(),
                country: Some("US".into()),
            }
        );
    }

    #[test]
    fn shopify_updates_and_cancellations() {
        let updated = event(&shopify("orders/updated", "evt-2"), SHOPIFY_UPDATED);
        let Change::Updated(state) = &order(&updated).change else {
            panic!("not an update")
        };
        assert_eq!(state.shipping_address.street, "77 Corrected Road");
        assert_eq!(
            state.items[1].quantity, 1,
            "current_quantity, after the edit"
        );
        for topic in ["orders/cancelled", "orders/updated"] {
            let cancelled = event(&shopify(topic, "evt-3"), SHOPIFY_CANCELLED);
            assert_eq!(
                order(&cancelled).change,
                Change::Cancelled {
                    reason: Some("customer".into())
                },
                "{topic}"
            );
        }
    }

    #[test]
    fn what_has_nothing_to_ship_is_ignored_with_the_reason() {
        let other = mapped(&shopify("products/update", "evt-4"), "{}");
        assert!(matches!(other, Mapped::Ignored { ref event_id, .. } if event_id == "evt-4"));
        let mut digital: Value = serde_json::from_str(SHOPIFY_CREATE).unwrap();
        for line in digital["line_items"].as_array_mut().unwrap() {
            line["requires_shipping"] = json!(false);
        }
        let Mapped::Ignored { reason, .. } =
            mapped(&shopify("orders/create", "e"), &digital.to_string())
        else {
            panic!("not ignored")
        };
        assert!(reason.contains("no line"), "{reason}");
        digital["shipping_address"] = Value::Null;
        let Mapped::Ignored { reason, .. } =
            mapped(&shopify("orders/create", "e"), &digital.to_string())
        else {
            panic!("not ignored")
        };
        assert!(reason.contains("no shipping address"), "{reason}");
        let mut virtual_order: Value = serde_json::from_str(WOO_CREATED).unwrap();
        virtual_order["shipping"]["address_1"] = json!("");
        assert!(matches!(
            mapped(&woocommerce("order.created"), &virtual_order.to_string()),
            Mapped::Ignored { .. }
        ));
        assert!(matches!(
            mapped(&woocommerce("coupon.created"), "{}"),
            Mapped::Ignored { .. }
        ));
    }

    #[test]
    fn ids_are_read_as_integers_or_digits_never_as_floats() {
        let mut payload: Value = serde_json::from_str(SHOPIFY_CREATE).unwrap();
        payload["id"] = json!("18446744073709551615");
        payload["customer"]["id"] = json!(u64::MAX);
        let body = payload.to_string();
        let delivery = event(&shopify("orders/create", "e"), &body);
        assert!(order(&delivery).order_id.ends_with(":18446744073709551615"));
        let Change::Created(state) = &order(&delivery).change else {
            panic!()
        };
        assert_eq!(state.customer_id, "18446744073709551615");
        for bad in [json!(1.5), json!(-3), json!("12a"), json!(1e20)] {
            payload["id"] = bad.clone();
            assert_eq!(
                fields(&shopify("orders/create", "e"), payload.clone()),
                ["id"],
                "{bad}"
            );
        }
    }

    #[test]
    fn what_stops_a_mapping_is_named() {
        let mut call = shopify("orders/create", "e");
        call.origin = None;
        let payload: Value = serde_json::from_str(SHOPIFY_CREATE).unwrap();
        assert_eq!(fields(&call, payload.clone()), ["X-Shopify-Shop-Domain"]);
        call.topic = None;
        assert_eq!(fields(&call, payload.clone()), ["X-Shopify-Topic"]);
        let mut broken = payload;
        broken["updated_at"] = json!("yesterday");
        broken["line_items"][0]["quantity"] = json!(-1);
        broken["line_items"][0]["current_quantity"] = json!(-1);
        broken["shipping_address"]["city"] = json!(null);
        assert_eq!(
            fields(&shopify("orders/create", "e"), broken),
            [
                "updated_at",
                "line_items[0].current_quantity",
                "shipping_address.city"
            ]
        );
        let mut call = woocommerce("order.created");
        call.origin = Some("not a url".into());
        assert_eq!(
            fields(&call, serde_json::from_str(WOO_CREATED).unwrap()),
            ["X-WC-Webhook-Source"]
        );
        assert_eq!(fields(&woocommerce("order.created"), json!([1])), ["body"]);
    }

    #[test]
    fn a_woocommerce_order_is_identified_by_topic_order_and_version() {
        let delivery = event(&woocommerce("order.created"), WOO_CREATED);
        let order = order(&delivery);
        assert_eq!(order.order_id, "woocommerce:shop.example:727");
        let version =
            chrono::NaiveDateTime::parse_from_str("2026-12-01T16:28:08", "%Y-%m-%dT%H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_millis();
        assert_eq!(order.version, Some(version));
        assert_eq!(
            (delivery.event_id.as_str(), delivery.derived_id),
            (
                format!("order.created:woocommerce:shop.example:727:v{version}").as_str(),
                true
            )
        );
        let Change::Created(state) = &order.change else {
            panic!("not a creation")
        };
        // A guest: the billing email.
        assert_eq!(state.customer_id, "john.doe@example.com");
        let items: Vec<(&str, i64)> = state
            .items
            .iter()
            .map(|i| (i.sku.as_str(), i.quantity))
            .collect();
        assert_eq!(items, [("WOO-SINGLE-1", 2), ("variant:23", 1)]);
        assert_eq!(state.shipping_address.street, "969 Market, Floor 3");
        assert_eq!(state.shipping_address.zip, "94103");
        assert_eq!(state.shipping_address.country.as_deref(), Some("US"));
    }

    #[test]
    fn woocommerce_cancels_by_status_or_deletion() {
        let cancelled = event(&woocommerce("order.updated"), WOO_CANCELLED);
        assert_eq!(
            order(&cancelled).change,
            Change::Cancelled {
                reason: Some("cancelled".into())
            }
        );
        let deleted = event(&woocommerce("order.deleted"), WOO_DELETED);
        assert_eq!(
            deleted.event_id,
            "order.deleted:woocommerce:shop.example:727"
        );
        assert_eq!(order(&deleted).version, None);
        assert!(matches!(order(&deleted).change, Change::Cancelled { .. }));
    }

    /// One order's life at a platform: created, changed `updates` times a minute apart (the
    /// city says which change), cancelled at one of them perhaps.
    fn life(platform: Platform, updates: usize, cancel_at: Option<usize>) -> Vec<(Call, String)> {
        let (template, topics, stamp) = match platform {
            Platform::Shopify => (
                SHOPIFY_CREATE,
                ["orders/create", "orders/updated"],
                "updated_at",
            ),
            Platform::WooCommerce => (
                WOO_CREATED,
                ["order.created", "order.updated"],
                "date_modified_gmt",
            ),
        };
        let start = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap();
        (0..=updates)
            .map(|step| {
                let mut payload: Value = serde_json::from_str(template).unwrap();
                let at = start + chrono::Duration::minutes(step as i64);
                payload[stamp] = json!(match platform {
                    Platform::Shopify => at.to_rfc3339(),
                    Platform::WooCommerce => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
                });
                let city = format!("City {step}");
                match platform {
                    Platform::Shopify => payload["shipping_address"]["city"] = json!(city),
                    Platform::WooCommerce => payload["shipping"]["city"] = json!(city),
                }
                if cancel_at.is_some_and(|at| step >= at) {
                    match platform {
                        Platform::Shopify => payload["cancelled_at"] = json!(at.to_rfc3339()),
                        Platform::WooCommerce => payload["status"] = json!("cancelled"),
                    }
                }
                let topic = topics[usize::from(step > 0)];
                let call = match platform {
                    Platform::Shopify => shopify(topic, &format!("evt-{step}")),
                    Platform::WooCommerce => woocommerce(topic),
                };
                (call, payload.to_string())
            })
            .collect()
    }

    /// Maps and folds the calls at `indexes` (repeats are redeliveries, answered from the
    /// record as the store does); the shipment and how many calls created it.
    fn fold(
        calls: &[(Call, String)],
        indexes: &[usize],
    ) -> (Option<(String, ShipmentStatus, i64)>, usize) {
        let mut life = OrderLife::default();
        let mut seen = std::collections::HashSet::new();
        let mut processed = 0;
        for &index in indexes {
            let (call, body) = &calls[index];
            let delivery = event(call, body);
            if seen.insert(delivery.event_id.clone()) {
                let decision = life.apply(&delivery.event_id, order(&delivery));
                processed += usize::from(decision.outcome == Outcome::Processed);
            }
        }
        let shipment = life
            .shipment()
            .map(|s| (s.state.shipping_address.city, s.status, s.version));
        (shipment, processed)
    }

    proptest! {
        #[test]
        fn platform_changes_end_alike_in_any_arrival_order(
            platform in prop::sample::select(Platform::ALL.to_vec()),
            (updates, cancel_at, order) in (0usize..5).prop_flat_map(|updates| {
                let n = updates + 1;
                let order = proptest::collection::vec(0..n, 0..2 * n).prop_flat_map(move |extra| {
                    let mut all: Vec<usize> = (0..n).chain(extra).collect();
                    all.sort();
                    Just(all).prop_shuffle()
                });
                (Just(updates), proptest::option::of(1..=updates.max(1)), order)
            })
        ) {
            let calls = life(platform, updates, cancel_at.filter(|at| *at <= updates));
            let in_order: Vec<usize> = (0..calls.len()).collect();
            let (expected, _) = fold(&calls, &in_order);
            let (shipment, processed) = fold(&calls, &order);
            prop_assert_eq!(&shipment, &expected);
            prop_assert_eq!(processed, 1);
            let (city, status, _) = expected.unwrap();
            match cancel_at.filter(|at| *at <= updates) {
                None => {
                    prop_assert_eq!(city, format!("City {updates}"));
                    prop_assert_eq!(status, ShipmentStatus::Pending);
                }
                Some(at) => {
                    prop_assert_eq!(city, format!("City {}", at - 1));
                    prop_assert_eq!(status, ShipmentStatus::Cancelled);
                }
            }
        }

        #[test]
        fn arbitrary_payloads_never_panic_a_mapping(
            payload in any_json(),
            platform in prop::sample::select(Platform::ALL.to_vec()),
            topic in prop::sample::select(vec!["orders/create", "orders/updated", "orders/cancelled", "order.created", "order.updated", "order.deleted", "x"]),
        ) {
            let call = Call {
                platform,
                topic: Some(topic.into()),
                origin: Some("https://shop.example".into()),
                event_id: None,
            };
            let _ = map(&call, &payload, b"");
        }
    }

    /// Any JSON, shaped like the platforms' orders often enough to reach their fields.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
            Just(json!("2026-12-01T10:00:00Z")),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::hash_map(
                    prop::sample::select(vec![
                        "id",
                        "updated_at",
                        "created_at",
                        "cancelled_at",
                        "customer",
                        "email",
                        "line_items",
                        "sku",
                        "quantity",
                        "current_quantity",
                        "variant_id",
                        "product_id",
                        "variation_id",
                        "requires_shipping",
                        "shipping_address",
                        "shipping",
                        "address1",
                        "address_1",
                        "city",
                        "zip",
                        "postcode",
                        "status",
                        "date_modified_gmt",
                        "date_created_gmt",
                        "customer_id",
                        "billing",
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
}
