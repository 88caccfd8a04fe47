//! `/quarantine`: authentic events the service could not apply, kept until an operator decides.
//! A replay runs the webhook's own parse-and-apply path (`webhooks::apply_event`) on the body
//! as it came, or on the operator's correction, with the event id rules of any event, so it is
//! applied once however often it is replayed.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Authorized;
use super::webhooks::{apply_event, Receipt};
use super::{json_body, not_found, page_request, path_id, Listing};
use crate::domain::{FieldError, QuarantineStatus};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::QuarantineEntry;

const WHAT: &str = "quarantined event";

#[derive(Deserialize)]
pub struct QuarantineQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// One entry with its body: as text when it is UTF-8, else base64.
#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    entry: QuarantineEntry,
    body: String,
    body_encoding: &'static str,
}

impl From<QuarantineEntry> for Detail {
    fn from(mut entry: QuarantineEntry) -> Detail {
        let bytes = entry.body.take().unwrap_or_default();
        let (body, body_encoding) = match String::from_utf8(bytes) {
            Ok(text) => (text, "utf-8"),
            Err(error) => (BASE64.encode(error.into_bytes()), "base64"),
        };
        Detail {
            entry,
            body,
            body_encoding,
        }
    }
}

/// The answer to a replay: the webhook's, with the entry.
#[derive(Serialize)]
struct Replayed {
    #[serde(flatten)]
    receipt: Receipt,
    quarantine: Detail,
}

pub async fn list(
    _: Authorized,
    query: web::Query<QuarantineQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let status = query
        .status
        .map(|status| {
            QuarantineStatus::parse(&status).ok_or_else(|| {
                ApiError::BadQuery("status must be one of: held, replayed, discarded".into())
            })
        })
        .transpose()?;
    let entries = state.store.quarantined_events(status, page).await?;
    Ok(HttpResponse::Ok().json(Listing::from(entries)))
}

pub async fn get(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = entry(&state, &id).await?;
    Ok(HttpResponse::Ok().json(Detail::from(entry)))
}

/// Applies the event now, as it came or as corrected by `{"body": <event>}`.
pub async fn replay(
    _: Authorized,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = entry(&state, &id).await?;
    if !entry.status.can_replay() {
        return Err(ApiError::Conflict(format!(
            "a {} event cannot be replayed",
            entry.status.as_str()
        )));
    }
    let correction = if body.is_empty() {
        None
    } else {
        Some(correction(&json_body(&request, &body)?)?)
    };
    let event = match &correction {
        Some(corrected) => serde_json::to_vec(corrected).expect("JSON serialises"),
        None => entry.body.clone().unwrap_or_default(),
    };
    if event.len() > state.max_body_bytes {
        return Err(ApiError::TooLarge {
            limit: state.max_body_bytes,
        });
    }
    let receipt = apply_event(&state, &event, entry.webhook_id.as_deref())
        .await
        .map_err(still_invalid)?;
    state
        .store
        .mark_replayed(entry.id, &receipt.event_id, correction.as_ref())
        .await?;
    let entry = reread(&state, entry.id).await?;
    tracing::info!(quarantine_id = %entry.id, event_id = %receipt.event_id, outcome = receipt.status.as_str(), "quarantined event replayed");
    Ok(receipt.response().json(Replayed {
        receipt,
        quarantine: Detail::from(entry),
    }))
}

pub async fn discard(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = entry(&state, &id).await?;
    if !state.store.discard_quarantined(entry.id).await? {
        let entry = reread(&state, entry.id).await?;
        return Err(ApiError::Conflict(format!(
            "a {} event cannot be discarded",
            entry.status.as_str()
        )));
    }
    Ok(HttpResponse::Ok().json(Detail::from(reread(&state, entry.id).await?)))
}

async fn entry(state: &AppState, id: &str) -> Result<QuarantineEntry, ApiError> {
    let id = path_id(id, WHAT)?;
    reread(state, id).await
}

async fn reread(state: &AppState, id: Uuid) -> Result<QuarantineEntry, ApiError> {
    state
        .store
        .quarantined_event(id)
        .await?
        .ok_or_else(|| not_found(WHAT, id))
}

/// The corrected event of a replay's `{"body": <event>}`.
fn correction(body: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    let invalid = |field: &str, message| ApiError::Invalid {
        what: "replay",
        errors: vec![FieldError {
            field: field.into(),
            message,
        }],
    };
    let object = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    if let Some(unknown) = object.keys().find(|key| *key != "body") {
        return Err(invalid(unknown, "is not a field of a replay"));
    }
    object.get("body").cloned().ok_or_else(|| {
        invalid(
            "body",
            "is required: the corrected event, or no body at all",
        )
    })
}

/// An event that still cannot be applied is answered 422 with its problem, whatever the
/// reason (a body that is not JSON, too): it stays held.
fn still_invalid(error: ApiError) -> ApiError {
    match error {
        ApiError::NotJson(detail) => {
            tracing::info!(%detail, "a replayed event is still not JSON");
            ApiError::Invalid {
                what: "event",
                errors: vec![FieldError {
                    field: "body".into(),
                    message: "is not valid JSON",
                }],
            }
        }
        error => error,
    }
}
