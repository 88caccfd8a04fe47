//! Deliveries: every outbound delivery, newest first; a failed one queued again (Retry), and
//! every failed delivery of a subscription since a time (Recover).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{NaiveDateTime, TimeZone, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{page, redirect, respond, time, Notice, Section};
use super::listing::{cursor, Filter, Listing};
use super::session::{signed_in, Checked, NoFields, SignedIn};
use crate::domain::DeliveryStatus;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::{DeliveryFilter, DeliveryRecord, PageRequest};

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

pub async fn list(
    signed_in: SignedIn,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let status = query.status.as_deref().and_then(DeliveryStatus::parse);
    let deliveries = state
        .store
        .deliveries(
            &DeliveryFilter {
                status,
                ..DeliveryFilter::default()
            },
            PageRequest {
                limit: 50,
                after: cursor(&query.cursor),
            },
        )
        .await?;
    let subscriptions = state
        .store
        .subscriptions(PageRequest {
            limit: 500,
            after: None,
        })
        .await?;
    let listing = Listing {
        path: "/console/deliveries",
        filters: vec![Filter::Choice {
            name: "status",
            label: "Status",
            options: DeliveryStatus::ALL.map(DeliveryStatus::as_str).to_vec(),
            chosen: status.map(DeliveryStatus::as_str),
        }],
        columns: COLUMNS,
        rows: rows(&operator.csrf, &deliveries.items),
        next: deliveries.next,
    };
    let body = html! {
        (listing.markup())
        h2 { "Recover a subscription" }
        @if subscriptions.items.is_empty() {
            p class="empty" { "No subscription." }
        } @else {
            form method="post" action="/console/deliveries/recover" class="row" {
                input type="hidden" name="csrf" value=(operator.csrf);
                div {
                    label for="subscription" { "Subscription" }
                    select id="subscription" name="subscription" required {
                        @for subscription in &subscriptions.items {
                            option value=(subscription.id) {
                                (crate::domain::subscription::without_userinfo(&subscription.url))
                            }
                        }
                    }
                }
                div {
                    label for="since" { "Failed since (UTC)" }
                    input id="since" name="since" type="datetime-local" required;
                }
                div { button type="submit" { "Recover" } }
            }
        }
    };
    let notice = query.notice.as_deref().and_then(Notice::parse);
    Ok(respond(
        StatusCode::OK,
        page(
            "Deliveries",
            Section::Deliveries,
            &operator.csrf,
            notice,
            body,
        ),
    ))
}

/// The columns of a table of deliveries.
pub const COLUMNS: &[&str] = &[
    "Delivery",
    "Type",
    "Shipment",
    "Status",
    "Attempts",
    "Last error",
    "Updated",
    "",
];

/// The rows of a table of deliveries, with a Retry button on each failed one.
pub fn rows(csrf: &str, deliveries: &[DeliveryRecord]) -> Vec<Vec<Markup>> {
    deliveries
            .iter()
            .map(|d| {
                vec![
                    html! { code { (d.id) } },
                    html! { (d.event_type) },
                    html! { a href={ "/console/shipments/" (d.shipment_id) } { "shipment" } },
                    html! { (d.status.as_str()) },
                    html! { (d.attempt_count) },
                    html! { (d.last_error.as_deref().unwrap_or("")) },
                    time(d.updated_at),
                    html! {
                        @if d.status == DeliveryStatus::REQUEUEABLE {
                            form method="post" action={ "/console/deliveries/" (d.id) "/retry" } class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Retry" }
                            }
                        }
                    },
                ]
            })
            .collect()
}

pub async fn retry(
    id: web::Path<String>,
    _: Checked<NoFields>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queued = match Uuid::parse_str(&id) {
        Ok(id) => state.store.requeue(Some(id), None).await?,
        Err(_) => 0,
    };
    let notice = if queued > 0 {
        Notice::Retried
    } else {
        Notice::NotRetried
    };
    Ok(redirect(&format!(
        "/console/deliveries?notice={}",
        notice.code()
    )))
}

#[derive(Deserialize)]
pub struct RecoverForm {
    subscription: Option<String>,
    since: Option<String>,
}

pub async fn recover(
    checked: Checked<RecoverForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Checked { form, .. } = checked;
    let subscription = form
        .subscription
        .as_deref()
        .and_then(|id| Uuid::parse_str(id).ok());
    // A `datetime-local` field: minutes (or seconds), no zone; the form says UTC.
    let since = form.since.as_deref().and_then(|text| {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            .ok()
            .map(|at| Utc.from_utc_datetime(&at))
    });
    let queued = match (subscription, since) {
        (Some(subscription), Some(since)) => {
            state
                .store
                .requeue(None, Some((subscription, since)))
                .await?
        }
        _ => 0,
    };
    Ok(redirect(&format!(
        "/console/deliveries?notice={}",
        Notice::Recovered(queued).code()
    )))
}
