//! Quarantine: authentic events the service could not apply. Read one's body and problem,
//! replay it (as it came, or with a correction), or discard it.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{maybe_time, page, redirect, respond, time, Notice, Section};
use super::listing::{cursor, Filter, Listing};
use super::session::{signed_in, Checked, NoFields, SignedIn};
use crate::domain::quarantine::ShownBody;
use crate::domain::QuarantineStatus;
use crate::intake;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::{PageRequest, QuarantineEntry};

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    signed_in: SignedIn,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let status = query.status.as_deref().and_then(QuarantineStatus::parse);
    let entries = state
        .store
        .quarantined_events(
            status,
            PageRequest {
                limit: 50,
                after: cursor(&query.cursor),
            },
        )
        .await?;
    let rows = entries
        .items
        .iter()
        .map(|e| {
            vec![
                html! { a href={ "/console/quarantine/" (e.id) } { code { (e.id) } } },
                html! { (e.reason) },
                html! { (e.status.as_str()) },
                html! { (e.deliveries) },
                time(e.last_received_at),
            ]
        })
        .collect();
    let body = Listing {
        path: "/console/quarantine",
        filters: vec![Filter::Choice {
            name: "status",
            label: "Status",
            options: QuarantineStatus::ALL.map(QuarantineStatus::as_str).to_vec(),
            chosen: status.map(QuarantineStatus::as_str),
        }],
        columns: &["Entry", "Reason", "Status", "Deliveries", "Last received"],
        rows,
        next: entries.next,
    }
    .markup();
    Ok(respond(
        StatusCode::OK,
        page(
            "Quarantine",
            Section::Quarantine,
            &operator.csrf,
            None,
            body,
        ),
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
    let notice = query.notice.as_deref().and_then(Notice::parse);
    Ok(match entry(&state, &id).await? {
        Some(entry) => respond(StatusCode::OK, detail(&operator.csrf, &entry, notice, None)),
        None => not_found(&operator.csrf),
    })
}

/// The entry's page: the body and problem, what became of it, and what may be done now.
/// `outcome` tells what a replay just did, or why it could not.
fn detail(
    csrf: &str,
    entry: &QuarantineEntry,
    notice: Option<Notice>,
    outcome: Option<maud::Markup>,
) -> maud::Markup {
    let (text, encoding) = match ShownBody::of(entry.body.clone().unwrap_or_default()) {
        ShownBody::Text(text) => (text, "as received"),
        ShownBody::Base64(encoded) => (encoded, "base64: not UTF-8"),
    };
    let problem = serde_json::to_string_pretty(&entry.problem).unwrap_or_default();
    let content = html! {
        @if let Some(outcome) = outcome { (outcome) }
        dl {
            dt { "Status" } dd { (entry.status.as_str()) }
            dt { "Reason" } dd { (entry.reason) }
            dt { "Deliveries" } dd { (entry.deliveries) }
            dt { "First received" } dd { (time(entry.first_received_at)) }
            dt { "Last received" } dd { (time(entry.last_received_at)) }
            dt { "Signed" } dd { (entry.scheme) @if let Some(id) = &entry.webhook_id { ", webhook-id " code { (id) } } }
            @if let Some(headers) = &entry.platform_headers {
                dt { "Platform headers" } dd { code { (headers) } }
            }
            @if let Some(event_id) = &entry.event_id { dt { "Applied as" } dd { code { (event_id) } } }
            dt { "Decided" } dd { (maybe_time(entry.resolved_at)) }
        }
        h2 { "Body (" (encoding) ")" }
        pre { (text) }
        h2 { "Problem" }
        pre { (problem) }
        @if let Some(correction) = &entry.correction {
            h2 { "Correction applied" }
            pre { (serde_json::to_string_pretty(correction).unwrap_or_default()) }
        }
        @if entry.status.can_replay() {
            h2 { "Replay" }
            form method="post" action={ "/console/quarantine/" (entry.id) "/replay" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="correction" { "Correction (optional: the corrected event as JSON; empty replays the body as it came)" }
                textarea id="correction" name="correction" {}
                p { button type="submit" { "Replay" } }
            }
        }
        @if entry.status.can_discard() && entry.status != QuarantineStatus::Discarded {
            form method="post" action={ "/console/quarantine/" (entry.id) "/discard" }
                 data-confirm="Discard this event? It will not be applied." {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" class="danger" { "Discard" }
            }
        }
    };
    page(
        "Quarantined event",
        Section::Quarantine,
        csrf,
        notice,
        content,
    )
}

#[derive(Deserialize)]
pub struct ReplayForm {
    correction: Option<String>,
}

pub async fn replay(
    id: web::Path<String>,
    checked: Checked<ReplayForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Checked { operator, form } = checked;
    let Ok(id) = Uuid::parse_str(&id) else {
        return Ok(not_found(&operator.csrf));
    };
    let correction = form
        .correction
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let correction = match correction.map(serde_json::from_str::<serde_json::Value>) {
        Some(Err(error)) => {
            let problem = html! { p class="notice notice-problem" role="alert" { "Not replayed: the correction is not JSON (" (error) ")." } };
            return answer(
                &state,
                &operator.csrf,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                problem,
            )
            .await;
        }
        Some(Ok(value)) => Some(value),
        None => None,
    };
    let (status, outcome) = match intake::replay(&state, id, correction).await {
        Ok((receipt, _)) => (
            StatusCode::OK,
            html! { p class="notice" role="status" {
                "Replayed: " (receipt.status.as_str()) ", event " code { (receipt.event_id) } "."
                @if let Some(shipment) = receipt.shipment_id {
                    " " a href={ "/console/shipments/" (shipment) } { "The shipment" }
                }
            } },
        ),
        Err(ApiError::NotFound(_)) => return Ok(not_found(&operator.csrf)),
        Err(
            error @ (ApiError::Invalid { .. } | ApiError::Conflict(_) | ApiError::TooLarge { .. }),
        ) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            html! { div class="notice notice-problem" role="alert" {
                p { "Not replayed: " (error) }
                @if let ApiError::Invalid { errors, .. } = &error {
                    ul { @for e in errors { li { code { (e.field) } " " (e.message) } } }
                }
            } },
        ),
        Err(error) => return Err(error),
    };
    answer(&state, &operator.csrf, id, status, outcome).await
}

async fn answer(
    state: &AppState,
    csrf: &str,
    id: Uuid,
    status: StatusCode,
    outcome: maud::Markup,
) -> Result<HttpResponse, ApiError> {
    let entry = intake::quarantined(state, id).await?;
    Ok(respond(status, detail(csrf, &entry, None, Some(outcome))))
}

pub async fn discard(
    id: web::Path<String>,
    checked: Checked<NoFields>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Checked { operator, .. } = checked;
    let Ok(id) = Uuid::parse_str(&id) else {
        return Ok(not_found(&operator.csrf));
    };
    let notice = if state.store.discard_quarantined(id).await? {
        Notice::Discarded
    } else {
        Notice::NotDiscarded
    };
    Ok(redirect(&format!(
        "/console/quarantine/{id}?notice={}",
        notice.code()
    )))
}

async fn entry(state: &AppState, id: &str) -> Result<Option<QuarantineEntry>, ApiError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    Ok(state.store.quarantined_event(id).await?)
}

fn not_found(csrf: &str) -> HttpResponse {
    respond(
        StatusCode::NOT_FOUND,
        page(
            "No such quarantined event",
            Section::Quarantine,
            csrf,
            None,
            html! { p { a href="/console/quarantine" { "All quarantined events" } } },
        ),
    )
}
