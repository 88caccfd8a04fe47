//! `POST /webhooks/order_events`: the front door. Each step rejects with its own status and
//! nothing is stored until the last one: media type (415), size (413), signature over the raw
//! bytes (401), JSON (400), event (422), then one committed transaction (201/200/202).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::require_json;
use crate::domain::Applied;
use crate::domain::Delivery;
use crate::domain::Outcome;
use crate::problem::ApiError;
use crate::signature::Verified;
use crate::state::AppState;

#[derive(Serialize)]
struct Receipt {
    status: Outcome,
    event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shipment_id: Option<Uuid>,
}

pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = accept(&request, payload, &state).await;
    let outcome = match &result {
        Ok(receipt) => receipt.status.as_str(),
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
    let receipt = result?;
    let mut response = match receipt.status {
        Outcome::Processed => HttpResponse::Created(),
        Outcome::Parked => HttpResponse::Accepted(),
        _ => HttpResponse::Ok(),
    };
    Ok(response.json(receipt))
}

async fn accept(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Receipt, ApiError> {
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
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::NotJson(error.to_string()))?;
    let webhook_id = match &verified {
        Verified::Standard { id } => Some(id.as_str()),
        Verified::Hex => None,
    };
    let delivery = Delivery::parse(&json, &body, webhook_id).map_err(ApiError::invalid("event"))?;
    let event_id = delivery.event_id.clone();
    let Applied {
        outcome,
        shipment_id,
    } = state.store.apply(delivery).await?;
    // Debug: every event is already recorded (GET /events) and counted (/metrics), and a line
    // per event at info would cost more CPU than the event's own database work.
    tracing::debug!(event_id = %event_id, outcome = outcome.as_str(), "webhook applied");
    Ok(Receipt {
        status: outcome,
        event_id,
        shipment_id,
    })
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
