//! Events: the record of every event received, newest first, by order or outcome.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::layout::{next_page, page, respond, table, time, Section};
use super::session::{signed_in, SignedIn};
use super::shipments::cursor;
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
    let order_id = query
        .order_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty() && !id.contains('\0'))
        .map(str::to_owned);
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
    let body = html! {
        form method="get" action="/console/events" class="filters" {
            div {
                label for="order_id" { "Order id" }
                input id="order_id" name="order_id" value=(order_id.clone().unwrap_or_default());
            }
            div {
                label for="outcome" { "Outcome" }
                select id="outcome" name="outcome" {
                    option value="" { "any" }
                    @for option in Outcome::ALL {
                        option value=(option.as_str()) selected[outcome == Some(option)] { (option.as_str()) }
                    }
                }
            }
            div { button type="submit" { "Filter" } }
        }
        (table(&["Event", "Type", "Order", "Version", "Outcome", "Received"], rows))
        (next_page("/console/events", &[
            ("order_id", order_id),
            ("outcome", outcome.map(|o| o.as_str().to_owned())),
        ], events.next))
    };
    Ok(respond(
        StatusCode::OK,
        page("Events", Section::Events, &operator.csrf, None, body),
    ))
}
