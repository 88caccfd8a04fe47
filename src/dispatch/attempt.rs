//! One delivery attempt: the POST, signed the two ways the service's own receiver accepts
//! (Standard Webhooks and the hex header), and what its answer decides.

use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;

use super::egress::{AddressNotAllowed, Egress};
use tracing::Instrument;

use crate::domain::{DeliveryStatus, TraceContext};
use crate::metrics::Metrics;
use crate::retry::{parse_retry_after, RetryPolicy, Verdict};
use crate::signature::{sign_hex, sign_standard, Secret};
use crate::store::{Claimed, Settlement};
use crate::telemetry::traces;

/// Longest text of an error kept with an attempt.
const MAX_ERROR_CHARS: usize = 500;
/// The most of an answer's body read (and dropped) to keep its connection.
const MAX_BODY_READ: usize = 64 * 1024;

/// The POST of `body` to `url`, signed with `secret` both ways: `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` (keyed by the decoded secret), and
/// `X-Ecomm-Signature` (keyed by the secret as written).
pub fn signed_request(
    client: &reqwest::Client,
    url: &str,
    secret: &Secret,
    event_id: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let now = Utc::now().timestamp();
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("webhook-id", event_id)
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            sign_standard(secret, event_id, now, body.as_bytes()),
        )
        .header("X-Ecomm-Signature", sign_hex(secret, body.as_bytes()))
        .body(body.to_owned())
}

/// What an attempt got back: a status (and `Retry-After`), or no answer at all.
struct Answer {
    status: Option<u16>,
    retry_after: Option<Duration>,
    error: Option<String>,
    /// The address is not one deliveries may reach: no connection was opened, and trying
    /// again would find the same.
    refused: bool,
}

impl Answer {
    fn failed(error: String) -> Answer {
        Answer {
            status: None,
            retry_after: None,
            error: Some(error),
            refused: false,
        }
    }

    fn refused() -> Answer {
        Answer {
            refused: true,
            ..Answer::failed(AddressNotAllowed.to_string())
        }
    }
}

/// The span of one attempt, a client span continuing the trace its change was made in; none
/// while traces are off.
fn attempt_span(delivery: &Claimed, attempt: i32) -> tracing::Span {
    if !traces::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "delivery attempt",
        otel.name = "POST delivery",
        otel.kind = "client",
        delivery_id = %delivery.id,
        subscription_id = %delivery.subscription_id,
        event_id = %delivery.event_id,
        attempt,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(parent) = &delivery.traceparent {
        let trace = TraceContext {
            parent: parent.clone(),
            state: delivery.tracestate.clone(),
        };
        traces::continue_stored(&span, &trace);
    }
    traces::record_ids(&span);
    span
}

/// What one attempt needs besides the delivery.
#[derive(Clone)]
pub(super) struct Sender {
    pub client: reqwest::Client,
    pub egress: Egress,
    pub policy: RetryPolicy,
    pub metrics: Metrics,
}

impl Sender {
    pub async fn attempt(&self, delivery: Claimed) -> Settlement {
        let attempts = delivery.attempts + 1;
        let span = attempt_span(&delivery, attempts);
        let attempted_at = Utc::now();
        let started = Instant::now();
        let answer = self.post(&delivery, &span).instrument(span.clone()).await;
        let duration = started.elapsed();
        self.metrics.delivery_attempt(duration.as_secs_f64());
        if let Some(status) = answer.status {
            traces::attribute(&span, "http.response.status_code", i64::from(status));
        }
        traces::attribute(&span, "duration_ms", duration.as_secs_f64() * 1000.0);
        let verdict = if answer.refused {
            Verdict::GiveUp
        } else {
            Verdict::of(answer.status)
        };
        let (status, wait) = match verdict {
            Verdict::Delivered => (DeliveryStatus::Delivered, None),
            Verdict::GiveUp => (DeliveryStatus::Failed, None),
            Verdict::Retry => {
                let retry = u32::try_from(attempts).unwrap_or(u32::MAX);
                match self.policy.wait_before(retry, answer.retry_after) {
                    Some(wait) => (DeliveryStatus::Pending, Some(wait)),
                    None => (DeliveryStatus::Failed, None),
                }
            }
        };
        Settlement {
            id: delivery.id,
            subscription_id: delivery.subscription_id,
            claim: delivery.claim,
            status,
            attempts,
            next_attempt_at: attempted_at
                + chrono::Duration::from_std(wait.unwrap_or_default()).unwrap_or_default(),
            attempted_at,
            status_code: answer.status.map(i32::from),
            error: answer
                .error
                .map(|text| text.chars().take(MAX_ERROR_CHARS).collect()),
            duration,
            gone: answer.status == Some(410),
        }
    }

    async fn post(&self, delivery: &Claimed, span: &tracing::Span) -> Answer {
        let secret = match Secret::parse(&delivery.secret) {
            Ok(secret) => secret,
            // The service generated it, so this is a damaged row: the attempt fails like one
            // without an answer (and is retried, in case the row is mended).
            Err(reason) => {
                return Answer::failed(format!("the subscription's secret is unusable: {reason}"))
            }
        };
        // A host given as an address is never resolved: checked here.
        if self.egress.check_url(&delivery.url).is_err() {
            return Answer::refused();
        }
        let event_id = delivery.event_id.to_string();
        let mut request = signed_request(
            &self.client,
            &delivery.url,
            &secret,
            &event_id,
            &delivery.body,
        );
        // The change's trace goes on, this attempt as the parent.
        if let Some(trace) = traces::context_of(span) {
            request = request.header("traceparent", trace.parent);
            if let Some(state) = trace.state {
                request = request.header("tracestate", state);
            }
        }
        // The answer's status and headers decide; its body is only read to its end.
        match request.send().await {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now()));
                let status = response.status();
                read_to_end(response).await;
                Answer {
                    status: Some(status.as_u16()),
                    retry_after,
                    error: (!status.is_success()).then(|| status.to_string()),
                    refused: false,
                }
            }
            Err(error) if refused_by_egress(&error) => Answer::refused(),
            Err(error) => Answer::failed(describe(error)),
        }
    }
}

/// Reads and drops an answer's body of up to [`MAX_BODY_READ`] bytes, so that its connection
/// serves the next attempt: one whose body is left unread is closed, and every attempt would
/// open a new one. A longer body (or one that fails) closes it.
async fn read_to_end(mut response: reqwest::Response) {
    let mut left = MAX_BODY_READ;
    while let Ok(Some(chunk)) = response.chunk().await {
        match left.checked_sub(chunk.len()) {
            Some(rest) => left = rest,
            None => return,
        }
    }
}

/// Whether the resolver refused every address of the host.
fn refused_by_egress(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if error.is::<AddressNotAllowed>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// What went wrong without an answer, in a few words an operator can act on, without the URL
/// (it may carry a password).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!(
        "{kind}: {}",
        crate::telemetry::error_chain(&error.without_url())
    )
}
