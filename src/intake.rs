//! The one path from authentic bytes to an applied event, for every webhook endpoint and for a
//! replay from quarantine: JSON (400), the event (422; a shop platform's call mapped into one
//! first), then the transaction; and the replay itself, which runs that path on a quarantined
//! body as it came or on an operator's correction.

use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::platform::{self, Call, Mapped};
use crate::domain::{Applied, Delivery, FieldError, Outcome, QuarantineStatus};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::QuarantineEntry;
use crate::telemetry::traces;

/// The answer to an applied event.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub status: Outcome,
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<Uuid>,
    /// Why a shop platform's call was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Receipt {
    /// The status that answers it: 201 when the event made the shipment, 202 while it waits
    /// for one, else 200.
    pub fn status_code(&self) -> StatusCode {
        match self.status {
            Outcome::Processed => StatusCode::CREATED,
            Outcome::Parked => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        }
    }
}

/// Where authentic bytes came from: what turning them into an event reads besides them.
#[derive(Debug, Clone)]
pub enum Source {
    /// `/webhooks/order_events`, with the signed Standard Webhooks id when there was one.
    OrderEvents { webhook_id: Option<String> },
    /// A shop platform's endpoint, with what its headers said.
    Platform(Call),
}

impl Source {
    /// How its signature was made: `hex`, `standard`, or the platform.
    pub fn scheme(&self) -> &'static str {
        match self {
            Source::OrderEvents { webhook_id: None } => "hex",
            Source::OrderEvents {
                webhook_id: Some(_),
            } => "standard",
            Source::Platform(call) => call.platform.as_str(),
        }
    }
}

/// Applies authentic bytes from `source`.
pub async fn apply_event(
    state: &AppState,
    source: &Source,
    body: &[u8],
) -> Result<Receipt, ApiError> {
    let span = tracing::Span::current();
    traces::attribute(&span, "webhook.scheme", source.scheme());
    let json: Value =
        serde_json::from_slice(body).map_err(|error| ApiError::NotJson(error.to_string()))?;
    let mut delivery = match source {
        Source::OrderEvents { webhook_id } => Delivery::parse(&json, body, webhook_id.as_deref()),
        Source::Platform(call) => match platform::map(call, &json, body) {
            Ok(Mapped::Event(delivery)) => Ok(*delivery),
            Ok(Mapped::Ignored { event_id, reason }) => {
                tracing::debug!(%event_id, %reason, "platform call ignored");
                return Ok(Receipt {
                    status: Outcome::Ignored,
                    event_id,
                    shipment_id: None,
                    reason: Some(reason),
                });
            }
            Err(errors) => Err(errors),
        },
    }
    .map_err(ApiError::invalid("event"))?;
    if let Some(order_id) = delivery.event.order_id() {
        traces::attribute(&span, "order_id", order_id.to_owned());
    }
    delivery.trace = traces::context_of(&span);
    let event_id = delivery.event_id.clone();
    let Applied {
        outcome,
        shipment_id,
    } = state.store.apply(delivery).await?;
    // Debug: every event is already recorded (GET /events) and counted (/metrics), and a line
    // per event at info would cost more CPU than the event's own database work.
    tracing::debug!(event_id = %event_id, outcome = outcome.as_str(), "event applied");
    Ok(Receipt {
        status: outcome,
        event_id,
        shipment_id,
        reason: None,
    })
}

/// How long one replay holds its entry at most: longer than a batch may take to commit. A
/// replay whose instance died frees its entry after it.
const REPLAY_HOLD: chrono::Duration = chrono::Duration::seconds(30);

/// Applies a quarantined event now: its body as it came, or `correction` instead (vouched for
/// by the operator, kept beside it), with the event id rules of any event (the signed
/// `webhook-id` it came with first). Replayed at most once: the entry is held by this replay
/// while it is applied, so a second replay or a discard meanwhile is refused, and a replayed
/// entry is never replayed again (409 `already-replayed`). Still not an event: 422, and it
/// stays held. Returns the answer and the entry, marked replayed.
pub async fn replay(
    state: &AppState,
    id: Uuid,
    correction: Option<Value>,
) -> Result<(Receipt, QuarantineEntry), ApiError> {
    let entry = quarantined(state, id).await?;
    let refused = |entry: &QuarantineEntry| match entry.status {
        QuarantineStatus::Replayed => ApiError::AlreadyReplayed(format!(
            "this event was replayed already (event id {}); it is applied at most once",
            entry.event_id.as_deref().unwrap_or("unknown")
        )),
        QuarantineStatus::Held => {
            ApiError::Conflict("another replay of this event is being applied now".into())
        }
        status => ApiError::Conflict(format!("a {} event cannot be replayed", status.as_str())),
    };
    if !entry.status.can_replay() {
        return Err(refused(&entry));
    }
    let event = match &correction {
        Some(corrected) => serde_json::to_vec(corrected).expect("JSON serialises"),
        None => entry.body.clone().unwrap_or_default(),
    };
    if event.len() > state.max_body_bytes {
        return Err(ApiError::TooLarge {
            limit: state.max_body_bytes,
        });
    }
    let Some(claim) = state
        .store
        .claim_replay(id, chrono::Utc::now() + REPLAY_HOLD)
        .await?
    else {
        return Err(refused(&quarantined(state, id).await?));
    };
    let applied = apply_event(state, &source_of(&entry)?, &event).await;
    let ended = match &applied {
        Ok(receipt) => {
            state
                .store
                .end_replay(id, claim, Some((&receipt.event_id, correction.as_ref())))
                .await
        }
        Err(_) => state.store.end_replay(id, claim, None).await,
    };
    let receipt = applied.map_err(still_invalid)?;
    if !ended? {
        tracing::warn!(quarantine_id = %id, "a replay outlasted its hold on the entry");
    }
    tracing::info!(quarantine_id = %id, event_id = %receipt.event_id, outcome = receipt.status.as_str(), "quarantined event replayed");
    Ok((receipt, quarantined(state, id).await?))
}

/// The endpoint a quarantined event came through, as it was then.
fn source_of(entry: &QuarantineEntry) -> Result<Source, ApiError> {
    match &entry.platform_headers {
        Some(headers) => serde_json::from_value(headers.clone())
            .map(Source::Platform)
            .map_err(|error| {
                ApiError::Internal(anyhow::anyhow!("a quarantined call's headers: {error}"))
            }),
        None => Ok(Source::OrderEvents {
            webhook_id: entry.webhook_id.clone(),
        }),
    }
}

/// A quarantined event, with its body.
pub async fn quarantined(state: &AppState, id: Uuid) -> Result<QuarantineEntry, ApiError> {
    state
        .store
        .quarantined_event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no quarantined event with id {id}")))
}

/// An event that still cannot be applied is answered 422 with its problem, whatever the
/// reason (a body that is not JSON, too).
fn still_invalid(error: ApiError) -> ApiError {
    match error {
        ApiError::NotJson(_) => ApiError::Invalid {
            what: "event",
            errors: vec![FieldError {
                field: "body".into(),
                message: "is not valid JSON",
            }],
        },
        error => error,
    }
}
