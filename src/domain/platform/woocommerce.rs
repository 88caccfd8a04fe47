//! WooCommerce's order webhooks, read as its REST API (v3) describes the order resource.
//! Topics `order.created`, `order.updated` and `order.deleted` are applied; a status of
//! `cancelled`, `refunded`, `failed` or `trash` cancels; any other topic is ignored.
//! WooCommerce gives each attempt a new delivery id, so an event is identified by its topic,
//! order and version.

use serde_json::Value;

use super::{
    address, given, items, optional_platform_id, order_id, platform_id, time, Call, Life, Mapped,
    Platform, ShopOrder, ShopState,
};
use crate::domain::fields::Fields;
use crate::domain::order_event::body_digest;

const CREATED: &str = "order.created";
const UPDATED: &str = "order.updated";
const DELETED: &str = "order.deleted";

/// The statuses of an order that will not be shipped.
const CANCELLING: [&str; 4] = ["cancelled", "refunded", "failed", "trash"];

pub(super) fn map(
    fields: &mut Fields,
    call: &Call,
    payload: &Value,
    body: &[u8],
) -> Option<Mapped> {
    let topic = fields.text(
        call.topic.clone().map(Value::from).as_ref(),
        "X-WC-Webhook-Topic",
    )?;
    if ![CREATED, UPDATED, DELETED].contains(&topic.as_str()) {
        return Some(Mapped::Ignored {
            event_id: body_digest(body),
            reason: format!("topic {topic} does not change an order's shipment"),
        });
    }
    let order = fields.object(Some(payload), "body")?;
    let host = source_host(fields, call.origin.as_deref());
    let id = platform_id(fields, order.get("id"), "id");
    let order_id = order_id(fields, Platform::WooCommerce, host, id);
    // A deletion carries the order's id alone.
    let version = match (topic.as_str(), given(order, "date_modified_gmt")) {
        (DELETED, None) => None,
        (_, modified) => Some(time(fields, modified, "date_modified_gmt")?.timestamp_millis()),
    };
    let status = fields.optional_text(given(order, "status"), "status");
    let life = match status.as_deref() {
        _ if topic == DELETED => Life::Cancelled(Some("deleted".into())),
        Some(status) if CANCELLING.contains(&status) => Life::Cancelled(Some(status.into())),
        _ => {
            let placed_at = time(fields, order.get("date_created_gmt"), "date_created_gmt");
            let customer = optional_platform_id(fields, order.get("customer_id"), "customer_id")
                .or_else(|| {
                    let email = given(order, "billing").and_then(|billing| billing.get("email"));
                    fields.text(email, "billing.email")
                });
            let items = items(fields, order, |_| "quantity", "variation_id", |_| true);
            let address = address(
                fields,
                order.get("shipping"),
                "shipping",
                ["address_1", "address_2", "city", "postcode", "country"],
            );
            Life::Open {
                created: topic == CREATED,
                state: ShopState {
                    placed_at: placed_at?,
                    customer_id: customer?,
                    items,
                    address,
                },
            }
        }
    };
    let order = ShopOrder {
        order_id: order_id?,
        version,
        life,
    };
    Some(order.into_mapped(&topic, None))
}

/// The host of `X-WC-Webhook-Source` (the shop's URL).
fn source_host(fields: &mut Fields, source: Option<&str>) -> Option<String> {
    let host = source
        .and_then(|source| url::Url::parse(source).ok())
        .and_then(|url| url.host_str().map(str::to_owned));
    if host.is_none() {
        fields.reject("X-WC-Webhook-Source", "must be the shop's URL");
    }
    host
}
