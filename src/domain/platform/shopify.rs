//! Shopify's order webhooks, read as its Admin API describes the order resource. Topics
//! `orders/create`, `orders/updated` and `orders/cancelled` are applied; an order with a
//! `cancelled_at` is cancelled whatever the topic; any other topic is ignored.

use serde_json::Value;

use super::{
    address, given, items, optional_platform_id, order_id, platform_id, time, Call, Life, Mapped,
    Platform, ShopOrder, ShopState,
};
use crate::domain::fields::Fields;
use crate::domain::order_event::body_digest;

const CREATE: &str = "orders/create";
const UPDATED: &str = "orders/updated";
const CANCELLED: &str = "orders/cancelled";

pub(super) fn map(
    fields: &mut Fields,
    call: &Call,
    payload: &Value,
    body: &[u8],
) -> Option<Mapped> {
    let topic = fields.text(
        call.topic.clone().map(Value::from).as_ref(),
        "X-Shopify-Topic",
    )?;
    if ![CREATE, UPDATED, CANCELLED].contains(&topic.as_str()) {
        return Some(Mapped::Ignored {
            event_id: call.event_id.clone().unwrap_or_else(|| body_digest(body)),
            reason: format!("topic {topic} does not change an order's shipment"),
        });
    }
    let order = fields.object(Some(payload), "body")?;
    let shop = fields.text(
        call.origin.clone().map(Value::from).as_ref(),
        "X-Shopify-Shop-Domain",
    );
    let id = platform_id(fields, order.get("id"), "id");
    let order_id = order_id(fields, Platform::Shopify, shop, id);
    let version = time(fields, order.get("updated_at"), "updated_at");
    let life = if topic == CANCELLED || given(order, "cancelled_at").is_some() {
        Life::Cancelled(fields.optional_text(given(order, "cancel_reason"), "cancel_reason"))
    } else {
        let placed_at = time(fields, order.get("created_at"), "created_at");
        let customer = given(order, "customer")
            .and_then(|customer| optional_platform_id(fields, customer.get("id"), "customer.id"))
            .or_else(|| {
                ["email", "contact_email"]
                    .into_iter()
                    .find_map(|name| given(order, name))
                    .and_then(|email| fields.text(Some(email), "email"))
            });
        if customer.is_none() {
            fields.reject("customer", "needs an id, or the order an email");
        }
        let items = items(
            fields,
            order,
            // Since 2023-01 a line's `current_quantity` leaves out what an edit removed.
            |line| match line.contains_key("current_quantity") {
                true => "current_quantity",
                false => "quantity",
            },
            "variant_id",
            |line| line.get("requires_shipping") != Some(&Value::Bool(false)),
        );
        let address = address(
            fields,
            order.get("shipping_address"),
            "shipping_address",
            ["address1", "address2", "city", "zip", "country_code"],
        );
        Life::Open {
            created: topic == CREATE,
            state: ShopState {
                placed_at: placed_at?,
                customer_id: customer?,
                items,
                address,
            },
        }
    };
    let order = ShopOrder {
        order_id: order_id?,
        version: Some(version?.timestamp_millis()),
        life,
    };
    Some(order.into_mapped(&topic, call.event_id.as_deref()))
}
