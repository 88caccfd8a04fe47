//! Shipments: filtered and searched, page by page; one shipment with its order's history, the
//! moves operators made, its deliveries, and a button for each move its status allows. A move
//! is sent with the revision the page showed, so a move made from a stale page is refused,
//! never applied blindly.

use crate::telemetry::traces::current_trace;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{page, redirect, respond, table, time, Notice, Section};
use super::listing::{cursor, given, Filter, Listing};
use super::session::{signed_in, Checked, SignedIn};
use crate::domain::{ShipmentPatch, ShipmentStatus};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::{DeliveryFilter, EventFilter, PageRequest, Patched, ShipmentFilter};

const PAGE: u32 = 50;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    order_id: Option<String>,
    customer_id: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    signed_in: SignedIn,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let status = query.status.as_deref().and_then(ShipmentStatus::parse);
    let filter = ShipmentFilter {
        status,
        order_id: given(&query.order_id),
        customer_id: given(&query.customer_id),
    };
    let shipments = state
        .store
        .shipments(
            &filter,
            PageRequest {
                limit: PAGE,
                after: cursor(&query.cursor),
            },
        )
        .await?;
    let rows = shipments
        .items
        .iter()
        .map(|s| {
            vec![
                html! { a href={ "/console/shipments/" (s.id) } { (s.order_id) } },
                html! { (s.customer_id) },
                html! { (s.status.as_str()) },
                html! { (s.revision) },
                time(s.updated_at),
            ]
        })
        .collect();
    let body = Listing {
        path: "/console/shipments",
        filters: vec![
            Filter::Choice {
                name: "status",
                label: "Status",
                options: ShipmentStatus::ALL.map(ShipmentStatus::as_str).to_vec(),
                chosen: status.map(ShipmentStatus::as_str),
            },
            Filter::Text {
                name: "order_id",
                label: "Order id",
                value: filter.order_id,
            },
            Filter::Text {
                name: "customer_id",
                label: "Customer id",
                value: filter.customer_id,
            },
        ],
        columns: &["Order", "Customer", "Status", "Revision", "Updated"],
        rows,
        next: shipments.next,
    }
    .markup();
    Ok(respond(
        StatusCode::OK,
        page("Shipments", Section::Shipments, &operator.csrf, None, body),
    ))
}

#[derive(Deserialize)]
pub struct ShowQuery {
    notice: Option<String>,
}

pub async fn show(
    signed_in: SignedIn,
    id: web::Path<String>,
    query: web::Query<ShowQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let Ok(id) = Uuid::parse_str(&id) else {
        return Ok(not_found(&operator.csrf));
    };
    let Some(shipment) = state.store.shipment(id).await? else {
        return Ok(not_found(&operator.csrf));
    };
    let history = state
        .store
        .events(
            &EventFilter {
                order_id: Some(shipment.order_id.clone()),
                outcome: None,
            },
            PageRequest {
                limit: 200,
                after: None,
            },
        )
        .await?;
    let operator_moves = state.store.shipment_moves(id).await?;
    let deliveries = state
        .store
        .deliveries(
            &DeliveryFilter {
                shipment_id: Some(id),
                ..DeliveryFilter::default()
            },
            PageRequest {
                limit: 200,
                after: None,
            },
        )
        .await?;
    let moves: Vec<ShipmentStatus> = ShipmentStatus::ALL
        .into_iter()
        .filter(|to| shipment.status.can_move_to(*to))
        .collect();
    let body = html! {
        dl {
            dt { "Order" } dd { (shipment.order_id) }
            dt { "Customer" } dd { (shipment.customer_id) }
            dt { "Status" } dd { (shipment.status.as_str()) }
            dt { "Revision" } dd { (shipment.revision) }
            dt { "Version" } dd { (shipment.version) }
            dt { "Items" } dd {
                @for item in &shipment.items { (item.quantity) " × " code { (item.sku) } br; }
            }
            dt { "Address" } dd {
                (shipment.shipping_address.street) ", " (shipment.shipping_address.zip) " "
                (shipment.shipping_address.city)
            }
            dt { "Carrier" } dd { (shipment.carrier.as_deref().unwrap_or("—")) }
            dt { "Tracking number" } dd { (shipment.tracking_number.as_deref().unwrap_or("—")) }
            @if let Some(reason) = &shipment.cancel_reason { dt { "Cancel reason" } dd { (reason) } }
            dt { "Ordered" } dd { (time(shipment.ordered_at)) }
            dt { "Updated" } dd { (time(shipment.updated_at)) }
        }
        h2 { "Moves" }
        @if moves.is_empty() {
            p class="empty" { "None: a " (shipment.status.as_str()) " shipment moves no further." }
        }
        @for to in &moves {
            (move_form(&operator.csrf, id, shipment.revision, *to))
        }
        h2 { "Order history" }
        (table(
            &["Event", "Type", "Version", "Outcome", "Received"],
            history.items.iter().map(|e| vec![
                html! { code { (e.event_id) } },
                html! { (e.event_type) },
                html! { (e.version.map(|v| v.to_string()).unwrap_or_default()) },
                html! { (e.outcome.as_str()) },
                time(e.received_at),
            ]).collect(),
        ))
        h2 { "Operator moves" }
        (table(
            &["Revision", "From", "To", "Carrier", "Tracking number", "Moved"],
            operator_moves.iter().map(|m| vec![
                html! { (m.revision) },
                html! { (m.from.as_str()) },
                html! { (m.to.as_str()) },
                html! { (m.carrier.as_deref().unwrap_or("—")) },
                html! { (m.tracking_number.as_deref().unwrap_or("—")) },
                time(m.moved_at),
            ]).collect(),
        ))
        h2 { "Deliveries" }
        (table(super::deliveries::COLUMNS, super::deliveries::rows(&operator.csrf, &deliveries.items)))
    };
    let notice = query.notice.as_deref().and_then(Notice::parse);
    let title = format!("Shipment {}", shipment.order_id);
    Ok(respond(
        StatusCode::OK,
        page(&title, Section::Shipments, &operator.csrf, notice, body),
    ))
}

/// The form of one move, sent with the revision the page shows.
fn move_form(csrf: &str, id: Uuid, revision: i64, to: ShipmentStatus) -> Markup {
    let shipping = to == ShipmentStatus::Shipped;
    // Cancelling cannot be undone: asked first, as deleting and discarding are.
    let confirm = (to == ShipmentStatus::Cancelled)
        .then_some("Cancel this shipment? A cancelled shipment cannot move again.");
    html! {
        form method="post" action={ "/console/shipments/" (id) "/move" } class="row"
             data-confirm=[confirm] {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="revision" value=(revision);
            input type="hidden" name="status" value=(to.as_str());
            @if shipping {
                div {
                    label for="carrier" { "Carrier" }
                    input id="carrier" name="carrier" required;
                }
                div {
                    label for="tracking_number" { "Tracking number" }
                    input id="tracking_number" name="tracking_number" required;
                }
            }
            div {
                button type="submit" class=[(to == ShipmentStatus::Cancelled).then_some("danger")] { (to.as_str()) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct MoveForm {
    revision: Option<i64>,
    status: Option<String>,
    carrier: Option<String>,
    tracking_number: Option<String>,
}

pub async fn move_(
    id: web::Path<String>,
    checked: Checked<MoveForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Checked { operator, form } = checked;
    let Ok(id) = Uuid::parse_str(&id) else {
        return Ok(not_found(&operator.csrf));
    };
    let back =
        |notice: Notice| redirect(&format!("/console/shipments/{id}?notice={}", notice.code()));
    // The same validation as the API's PATCH body.
    let mut body = serde_json::json!({ "status": form.status });
    for (name, value) in [
        ("carrier", &form.carrier),
        ("tracking_number", &form.tracking_number),
    ] {
        if let Some(value) = given(value) {
            body[name] = value.into();
        }
    }
    let Ok(patch) = ShipmentPatch::parse(&body) else {
        return Ok(back(Notice::Invalid));
    };
    // Without the revision the page showed, a move cannot be known to be meant for this one.
    let Some(revision) = form.revision else {
        return Ok(back(Notice::Stale));
    };
    Ok(
        match state
            .store
            .patch_shipment(id, &patch, Some(revision), current_trace())
            .await?
        {
            Patched::NotFound => not_found(&operator.csrf),
            Patched::Stale { .. } => back(Notice::Stale),
            Patched::Illegal(_) => back(Notice::Illegal),
            Patched::Done(_) => back(Notice::Moved),
        },
    )
}

fn not_found(csrf: &str) -> HttpResponse {
    respond(
        StatusCode::NOT_FOUND,
        page(
            "No such shipment",
            Section::Shipments,
            csrf,
            None,
            html! { p { a href="/console/shipments" { "All shipments" } } },
        ),
    )
}
