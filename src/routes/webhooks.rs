//! `POST /webhooks/order_events` and the shop platforms' `POST /webhooks/{shopify,woocommerce}`:
//! the front doors. Each step rejects with its own status and nothing is stored until the last
//! one: media type (415), size (413), signature over the raw bytes (401), JSON (400), event
//! (422), then one committed transaction (201/200/202). An authentic event that is not JSON or
//! not a valid event is quarantined instead (202), unless `INVALID_EVENTS=reject`. A platform's
//! endpoint is 404 until its secrets are set.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::require_json;
use crate::config::{InvalidEvents, QuarantineLimits};
use crate::domain::platform::{Call, Platform};
use crate::intake::{apply_event, Receipt, Source};
use crate::problem::ApiError;
use crate::signature::Verified;
use crate::state::AppState;
use crate::store::{Arrival, Quarantined};
use crate::telemetry::traces;

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
    /// WooCommerce's ping when a webhook is saved: answered, stored nowhere.
    Ping,
}

pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = accept(&request, payload, &state).await;
    answer(&state, result)
}

/// The endpoint of `platform`.
pub async fn receive_from(
    platform: Platform,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = accept_from(platform, &request, payload, &state).await;
    answer(&state, result)
}

fn answer(state: &AppState, result: Result<Answer, ApiError>) -> Result<HttpResponse, ApiError> {
    let span = tracing::Span::current();
    let outcome = match &result {
        Ok(Answer::Applied(receipt)) => {
            traces::attribute(&span, "event_id", receipt.event_id.clone());
            receipt.status.as_str()
        }
        Ok(Answer::Quarantined(_)) => "quarantined",
        Ok(Answer::Ping) => "ping",
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
    traces::attribute(&span, "webhook.outcome", outcome);
    state.metrics.webhook_outcome(outcome);
    Ok(match result? {
        Answer::Applied(receipt) => HttpResponse::build(receipt.status_code()).json(receipt),
        Answer::Quarantined(receipt) => HttpResponse::Accepted().json(receipt),
        Answer::Ping => HttpResponse::Ok().json(serde_json::json!({"status": "ping"})),
    })
}

async fn accept(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Answer, ApiError> {
    require_json(request)?;
    let body = read_body(request, payload, state).await?;
    let verified =
        state
            .verifier
            .verify(&body, &headers(request), chrono::Utc::now().timestamp())?;
    let webhook_id = match verified {
        Verified::Standard { id } => Some(id),
        Verified::Hex => None,
    };
    apply(state, Source::OrderEvents { webhook_id }, &body).await
}

async fn accept_from(
    platform: Platform,
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Answer, ApiError> {
    let Some(verifier) = state.platforms.iter().find(|v| v.platform == platform) else {
        return Err(ApiError::NotFound(format!(
            "{} webhooks are not received here",
            platform.as_str()
        )));
    };
    if platform == Platform::WooCommerce && is_form(request) {
        let body = read_body(request, payload, state).await?;
        return if is_ping(&body) {
            Ok(Answer::Ping)
        } else {
            Err(ApiError::UnsupportedMedia)
        };
    }
    require_json(request)?;
    let body = read_body(request, payload, state).await?;
    verifier.verify(&body, &headers(request))?;
    let call = Call::read(platform, |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    });
    apply(state, Source::Platform(call), &body).await
}

/// Applies authentic bytes, or keeps them in quarantine when they are no event.
async fn apply(state: &AppState, source: Source, body: &[u8]) -> Result<Answer, ApiError> {
    match apply_event(state, &source, body).await {
        Err(error @ (ApiError::NotJson(_) | ApiError::Invalid { .. })) => {
            let InvalidEvents::Quarantine(limits) = state.invalid_events else {
                return Err(error);
            };
            quarantine(state, body, &source, error, limits).await
        }
        applied => applied.map(Answer::Applied),
    }
}

fn headers(request: &HttpRequest) -> Vec<(&str, &[u8])> {
    request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect()
}

fn is_form(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// WooCommerce's ping: `webhook_id=<n>`, unsigned, when a webhook is saved.
fn is_ping(body: &[u8]) -> bool {
    body.strip_prefix(b"webhook_id=")
        .is_some_and(|id| !id.is_empty() && id.len() <= 20 && id.iter().all(u8::is_ascii_digit))
}

/// Keeps an authentic event that could not be applied, with the problem it would have had;
/// past `QUARANTINE_MAX_HELD` held entries or `QUARANTINE_MAX_BYTES` held bytes, that problem
/// is the answer.
async fn quarantine(
    state: &AppState,
    body: &[u8],
    source: &Source,
    error: ApiError,
    limits: QuarantineLimits,
) -> Result<Answer, ApiError> {
    let problem = error.problem();
    let (webhook_id, platform_headers) = match source {
        Source::OrderEvents { webhook_id } => (webhook_id.as_deref(), None),
        Source::Platform(call) => (
            None,
            Some(serde_json::to_string(call).expect("headers serialise")),
        ),
    };
    let arrival = Arrival {
        body,
        scheme: source.scheme(),
        webhook_id,
        platform_headers: platform_headers.as_deref(),
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

/// Reads the body within `REQUEST_TIMEOUT_SECS` and `MAX_BODY_BYTES`.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, ApiError> {
    tokio::time::timeout(
        state.request_timeout,
        read_limited(request, payload, state.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout)?
}

/// Reads the body up to `limit` bytes, refusing early when `Content-Length` already says more.
async fn read_limited(
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
