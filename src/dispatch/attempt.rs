//! One delivery attempt: the POST, signed the two ways the service's own receiver accepts
//! (Standard Webhooks and the hex header), and what its answer decides.

use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;

use crate::domain::DeliveryStatus;
use crate::metrics::Metrics;
use crate::retry::{parse_retry_after, RetryPolicy, Verdict};
use crate::signature::{sign_hex, sign_standard, Secret};
use crate::store::{Claimed, Settlement};

/// Longest text of an error kept with an attempt.
const MAX_ERROR_CHARS: usize = 500;

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
}

pub(super) async fn attempt(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    metrics: &Metrics,
    delivery: Claimed,
) -> Settlement {
    let attempted_at = Utc::now();
    let started = Instant::now();
    let answer = post(client, &delivery).await;
    let duration = started.elapsed();
    metrics.delivery_attempt(duration.as_secs_f64());
    let attempts = delivery.attempts + 1;
    let (status, wait) = match Verdict::of(answer.status) {
        Verdict::Delivered => (DeliveryStatus::Delivered, None),
        Verdict::GiveUp => (DeliveryStatus::Failed, None),
        Verdict::Retry => {
            let retry = u32::try_from(attempts).unwrap_or(u32::MAX);
            match policy.wait_before(retry, answer.retry_after) {
                Some(wait) => (DeliveryStatus::Pending, Some(wait)),
                None => (DeliveryStatus::Failed, None),
            }
        }
    };
    Settlement {
        id: delivery.id,
        subscription_id: delivery.subscription_id,
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
        deactivate: answer.status == Some(410),
    }
}

async fn post(client: &reqwest::Client, delivery: &Claimed) -> Answer {
    let secret = match Secret::parse(&delivery.secret) {
        Ok(secret) => secret,
        // The service generated it, so this is a damaged row: the attempt fails like one
        // without an answer (and is retried, in case the row is mended).
        Err(reason) => {
            return Answer {
                status: None,
                retry_after: None,
                error: Some(format!("the subscription's secret is unusable: {reason}")),
            }
        }
    };
    let event_id = delivery.event_id.to_string();
    let request = signed_request(client, &delivery.url, &secret, &event_id, &delivery.body);
    match request.send().await {
        Ok(response) => {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            let status = response.status();
            Answer {
                status: Some(status.as_u16()),
                retry_after,
                error: (!status.is_success()).then(|| status.to_string()),
            }
        }
        Err(error) => Answer {
            status: None,
            retry_after: None,
            error: Some(describe(&error)),
        },
    }
}

/// What went wrong without an answer, in a few words an operator can act on.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {}", crate::telemetry::error_chain(error))
}
