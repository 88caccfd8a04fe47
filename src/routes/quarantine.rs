//! `/quarantine`: authentic events the service could not apply, kept until an operator decides.
//! A replay runs the webhook's own parse-and-apply path (`intake`) on the body as it came, or on
//! the operator's correction, with the event id rules of any event, so it is applied once
//! however often it is replayed.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Authorized;
use super::{json_body, page_request, path_id, Listing};
use crate::domain::quarantine::ShownBody;
use crate::domain::{FieldError, QuarantineStatus};
use crate::intake::{self, Receipt};
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
pub struct Detail {
    #[serde(flatten)]
    entry: QuarantineEntry,
    body: String,
    body_encoding: &'static str,
}

impl From<QuarantineEntry> for Detail {
    fn from(mut entry: QuarantineEntry) -> Detail {
        let (body, body_encoding) = match ShownBody::of(entry.body.take().unwrap_or_default()) {
            ShownBody::Text(text) => (text, "utf-8"),
            ShownBody::Base64(encoded) => (encoded, "base64"),
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
    let id = path_id(&id, WHAT)?;
    let correction = if body.is_empty() {
        None
    } else {
        Some(correction(&json_body(&request, &body)?)?)
    };
    let (receipt, entry) = intake::replay(&state, id, correction).await?;
    Ok(HttpResponse::build(receipt.status_code()).json(Replayed {
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
        let entry = intake::quarantined(&state, entry.id).await?;
        return Err(ApiError::Conflict(format!(
            "a {} event cannot be discarded",
            entry.status.as_str()
        )));
    }
    Ok(HttpResponse::Ok().json(Detail::from(intake::quarantined(&state, entry.id).await?)))
}

async fn entry(state: &AppState, id: &str) -> Result<QuarantineEntry, ApiError> {
    intake::quarantined(state, path_id(id, WHAT)?).await
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
