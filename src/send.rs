//! The sender side: sign an event, POST it, and retry with exponential backoff until it is
//! acknowledged, the way the seed's e-commerce system delivers. The exact same bytes go out on
//! every attempt; only the Standard Webhooks timestamp (and so its signature) is renewed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;

use crate::signature::{sign_hex, sign_standard, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// `<header>: sha256=<hex>` (the seed's scheme).
    Hex,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The JSON event to send: a file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/order_events")]
    pub url: String,
    /// Signing secret [default: the first of WEBHOOK_SECRETS].
    #[arg(long)]
    pub secret: Option<String>,
    #[arg(long, value_enum, default_value = "hex")]
    pub scheme: Scheme,
    /// Header of the hex scheme.
    #[arg(
        long,
        env = "WEBHOOK_SIGNATURE_HEADER",
        default_value = "X-Ecomm-Signature"
    )]
    pub header: String,
    #[command(flatten)]
    pub policy: RetryPolicy,
    /// Time limit of each attempt.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// When to try again. The defaults give the seed's schedule: 1, 2, 4, 8, 16 s.
#[derive(Debug, Clone, clap::Args)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub initial_delay: Duration,
    /// Each delay is the previous one times this.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Retries after the first attempt.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Upper bound of any delay, `Retry-After` included.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_delay: Duration,
    /// Wait a random 50–100 % of each delay, so that many senders do not retry in step.
    #[arg(long)]
    pub jitter: bool,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), before any `Retry-After`.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.initial_delay.as_secs_f64() * self.factor.powi(exponent);
        let capped = Duration::try_from_secs_f64(seconds)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        if self.jitter {
            capped.mul_f64(rand::random::<f64>().mul_add(0.5, 0.5))
        } else {
            capped
        }
    }
}

/// What one attempt got back.
enum Attempt {
    Delivered(StatusCode, String),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    GiveUp(String),
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let body = read_input(&args.input)?;
    let secret = match &args.secret {
        Some(secret) => secret.clone(),
        None => std::env::var("WEBHOOK_SECRETS")
            .ok()
            .and_then(|list| {
                list.split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(str::to_owned)
            })
            .context("no secret: pass --secret or set WEBHOOK_SECRETS")?,
    };
    let secret = Secret::parse(&secret).map_err(|reason| anyhow::anyhow!("--secret: {reason}"))?;
    // The id must stay the same across retries: it is the receiver's idempotency key.
    let webhook_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|event| {
            event
                .get("id")
                .and_then(|id| id.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let client = reqwest::Client::builder().timeout(args.timeout).build()?;

    let mut retry = 0;
    loop {
        let mut request = client
            .post(&args.url)
            .header("Content-Type", "application/json")
            .body(body.clone());
        request = match args.scheme {
            Scheme::Hex => request.header(&args.header, sign_hex(&secret, &body)),
            Scheme::Standard => {
                let now = unix_now();
                request
                    .header("webhook-id", &webhook_id)
                    .header("webhook-timestamp", now.to_string())
                    .header(
                        "webhook-signature",
                        sign_standard(&secret, &webhook_id, now, &body),
                    )
            }
        };
        let attempt = classify(request.send().await).await;
        let label = format!("attempt {}", retry + 1);
        match attempt {
            Attempt::Delivered(status, answer) => {
                eprintln!("{label}: {status}");
                println!("{answer}");
                return Ok(());
            }
            Attempt::GiveUp(reason) => bail!("{label}: {reason}; not retrying"),
            Attempt::Retry { reason, .. } if retry >= args.policy.max_retries => {
                bail!(
                    "{label}: {reason}; giving up after {} retries",
                    args.policy.max_retries
                )
            }
            Attempt::Retry {
                reason,
                retry_after,
            } => {
                retry += 1;
                let computed = args.policy.delay(retry);
                let delay = retry_after
                    .map_or(computed, |asked| asked.max(computed))
                    .min(args.policy.max_delay);
                eprintln!(
                    "{label}: {reason}; retrying in {}",
                    humantime::format_duration(delay)
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn classify(result: reqwest::Result<reqwest::Response>) -> Attempt {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            let kind = if error.is_timeout() {
                "timed out"
            } else {
                "connection failed"
            };
            return Attempt::Retry {
                reason: format!("{kind}: {}", root_cause(&error)),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    let answer = response.text().await.unwrap_or_default();
    if status.is_success() {
        Attempt::Delivered(status, answer)
    } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        Attempt::Retry {
            reason: status.to_string(),
            retry_after,
        }
    } else {
        Attempt::GiveUp(format!("{status} {answer}"))
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    match value.trim().parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => {
            let at = httpdate::parse_http_date(value.trim()).ok()?;
            Some(at.duration_since(now).unwrap_or_default())
        }
    }
}

fn read_input(input: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if input.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
            .context("reading standard input")?;
        Ok(body)
    } else {
        std::fs::read(input).with_context(|| format!("reading {}", input.display()))
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_retries: 5,
            max_delay: Duration::from_secs(60),
            jitter: false,
        }
    }

    #[test]
    fn the_defaults_give_the_seed_schedule() {
        let delays: Vec<u64> = (1..=5)
            .map(|retry| policy().delay(retry).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn delays_are_capped_and_jitter_stays_below_the_delay() {
        assert_eq!(policy().delay(10), Duration::from_secs(60));
        assert_eq!(policy().delay(u32::MAX), Duration::from_secs(60));
        let jittered = RetryPolicy {
            jitter: true,
            ..policy()
        }
        .delay(3);
        assert!(jittered >= Duration::from_secs(2) && jittered <= Duration::from_secs(4));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
