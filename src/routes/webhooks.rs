//! `POST /webhooks/order_events`: the front door. Each step rejects with its own status and
//! nothing is stored until the last one: media type (415), size (413), signature over the raw
//! bytes (401), JSON (400), event (422), then one committed transaction (201/200/202). An
//! authentic event that is not JSON or not a valid event is quarantined instead (202), unless
//! `INVALID_EVENTS=reject`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::require_json;
use crate::config::{InvalidEvents, QuarantineLimits};
use crate::intake::{apply_event, Receipt};
use crate::problem::ApiError;
use crate::signature::Verified;
use crate::state::AppState;
use crate::store::{Arrival, Quarantined};

/// The answer to an event kept in quarantine.
#[derive(Serialize)]
struct QuarantineReceipt {
    status: &'static str,
    quarantine_id: Uuid,
    problem: serde_json::Value,
}

enum Answer {
    Applied(Receipt),
    Quarantined(QuarantineReceipt),
}

pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = accept(&request, payload, &state).await;
    let outcome = match &result {
        Ok(Answer::Applied(receipt)) => receipt.status.as_str(),
        Ok(Answer::Quarantined(_)) => "quarantined",
        Err(error) => {
            // What was wrong, never the values: field names and the problem's detail.
            let fields = match error {
                ApiError::Invalid { errors, .. } => errors
                    .iter()
                    .map(|error| error.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            };
            tracing::info!(reason = error.kind(), detail = %error, fields, "webhook rejected");
            error.kind()
        }
    };
    state.metrics.webhook_outcome(outcome);
    Ok(match result? {
        Answer::Applied(receipt) => HttpResponse::build(receipt.status_code()).json(receipt),
        Answer::Quarantined(receipt) => HttpResponse::Accepted().json(receipt),
    })
}

async fn accept(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Answer, ApiError> {
    require_json(request)?;
    let body = tokio::time::timeout(
        state.request_timeout,
        read_body(request, payload, state.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout)??;
    let headers: Vec<(&str, &[u8])> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let verified = state
        .verifier
        .verify(&body, &headers, chrono::Utc::now().timestamp())?;
    let webhook_id = match &verified {
        Verified::Standard { id } => Some(id.as_str()),
        Verified::Hex => None,
    };
    match apply_event(state, &body, webhook_id).await {
        Err(error @ (ApiError::NotJson(_) | ApiError::Invalid { .. })) => {
            let InvalidEvents::Quarantine(limits) = state.invalid_events else {
                return Err(error);
            };
            let scheme = match verified {
                Verified::Standard { .. } => "standard",
                Verified::Hex => "hex",
            };
            quarantine(state, &body, scheme, webhook_id, error, limits).await
        }
        applied => applied.map(Answer::Applied),
    }
}

/// Keeps an authentic event that could not be applied, with the problem it would have had;
/// past `QUARANTINE_MAX_HELD` held entries or `QUARANTINE_MAX_BYTES` held bytes, that problem
/// is the answer.
async fn quarantine(
    state: &AppState,
    body: &[u8],
    scheme: &'static str,
    webhook_id: Option<&str>,
    error: ApiError,
    limits: QuarantineLimits,
) -> Result<Answer, ApiError> {
    let problem = error.problem();
    let arrival = Arrival {
        body,
        scheme,
        webhook_id,
        reason: error.kind(),
        problem: &problem,
    };
    match state.store.quarantine(&arrival, limits).await? {
        Quarantined::Kept(quarantine_id) => {
            state.metrics.quarantined(error.kind());
            tracing::info!(%quarantine_id, reason = error.kind(), "webhook quarantined");
            Ok(Answer::Quarantined(QuarantineReceipt {
                status: "quarantined",
                quarantine_id,
                problem,
            }))
        }
        Quarantined::Full => {
            state.metrics.quarantine_full();
            tracing::warn!(
                max_held = limits.held,
                max_bytes = limits.bytes,
                "quarantine is full: an invalid event is rejected"
            );
            Err(error)
        }
    }
}

/// Reads the body up to `limit` bytes, refusing early when `Content-Length` already says more.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.map_or(1024, |length| length as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::UnreadableBody)?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
