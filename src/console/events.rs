//! Events: the record of every event received, newest first, by order or outcome.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::layout::{page, respond, time, Section};
use super::listing::{cursor, given, Filter, Listing};
use super::session::{signed_in, SignedIn};
use crate::domain::Outcome;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::{EventFilter, PageRequest};

#[derive(Deserialize)]
pub struct ListQuery {
    order_id: Option<String>,
    outcome: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    signed_in: SignedIn,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let outcome = query.outcome.as_deref().and_then(Outcome::parse);
    let order_id = given(&query.order_id);
    let events = state
        .store
        .events(
            &EventFilter {
                order_id: order_id.clone(),
                outcome,
            },
            PageRequest {
                limit: 50,
                after: cursor(&query.cursor),
            },
        )
        .await?;
    let rows = events
        .items
        .iter()
        .map(|e| {
            vec![
                html! { code { (e.event_id) } },
                html! { (e.event_type) },
                html! {
                    @if let Some(order) = &e.order_id {
                        a href={ "/console/events?order_id=" (super::layout::encode(order)) } { (order) }
                    }
                },
                html! { (e.version.map(|v| v.to_string()).unwrap_or_default()) },
                html! {
                    @if let Some(shipment) = e.shipment_id {
                        a href={ "/console/shipments/" (shipment) } { (e.outcome.as_str()) }
                    } @else {
                        (e.outcome.as_str())
                    }
                },
                time(e.received_at),
            ]
        })
        .collect();
    let body = Listing {
        path: "/console/events",
        filters: vec![
            Filter::Text {
                name: "order_id",
                label: "Order id",
                value: order_id,
            },
            Filter::Choice {
                name: "outcome",
                label: "Outcome",
                options: Outcome::ALL.map(Outcome::as_str).to_vec(),
                chosen: outcome.map(Outcome::as_str),
            },
        ],
        columns: &["Event", "Type", "Order", "Version", "Outcome", "Received"],
        rows,
        next: events.next,
    }
    .markup();
    Ok(respond(
        StatusCode::OK,
        page("Events", Section::Events, &operator.csrf, None, body),
    ))
}
