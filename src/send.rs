//! The sender side: sign an event, POST it, and retry with exponential backoff until it is
//! acknowledged, the way the seed's e-commerce system delivers, or the way Shopify or
//! WooCommerce deliver an order webhook. The exact same bytes go out on every attempt; only
//! the Standard Webhooks timestamp (and so its signature) and a platform's per-attempt
//! delivery id are renewed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use sha2::Digest;

use crate::domain::platform::Platform;
use crate::retry::{parse_retry_after, RetryPolicy, Verdict};
use crate::signature::{sign_hex, sign_platform, sign_standard, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// `<header>: sha256=<hex HMAC-SHA256 of the body>`.
    Hex,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// As Shopify: `X-Shopify-Hmac-Sha256` and its topic, shop, and event id headers.
    Shopify,
    /// As WooCommerce: `X-WC-Webhook-Signature` and its topic, source and delivery headers.
    #[value(name = "woocommerce")]
    WooCommerce,
}

impl Scheme {
    fn platform(self) -> Option<Platform> {
        match self {
            Scheme::Hex | Scheme::Standard => None,
            Scheme::Shopify => Some(Platform::Shopify),
            Scheme::WooCommerce => Some(Platform::WooCommerce),
        }
    }
}

/// The flags of `send`. No `Debug`: it holds the signing secret.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The JSON event to send: a file (see examples/), or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Where to POST it [default: the scheme's endpoint on http://127.0.0.1:8080:
    /// /webhooks/order_events, /webhooks/shopify or /webhooks/woocommerce].
    #[arg(long)]
    pub url: Option<String>,
    /// Signing secret [default: the first of WEBHOOK_SECRETS, or of SHOPIFY_WEBHOOK_SECRETS or
    /// WOOCOMMERCE_WEBHOOK_SECRETS for a platform].
    #[arg(long)]
    pub secret: Option<String>,
    /// How to sign: `hex` (an HMAC-SHA256 header) or `standard` (Standard Webhooks headers,
    /// whose `webhook-id` is the event's `id` or `event_id`, else derived from its bytes: the
    /// same on every attempt and every run, so a resend is recognised as a duplicate).
    /// `shopify` and `woocommerce` sign and label the order as the platform does.
    #[arg(long, value_enum, default_value = "hex")]
    pub scheme: Scheme,
    /// A platform's topic: `orders/create`, `orders/updated`, `orders/cancelled` (Shopify);
    /// `order.created`, `order.updated`, `order.deleted` (WooCommerce).
    #[arg(long, required_if_eq_any([("scheme", "shopify"), ("scheme", "woocommerce")]))]
    pub topic: Option<String>,
    /// A platform's shop: Shopify's shop domain, or WooCommerce's site URL.
    #[arg(long)]
    pub shop: Option<String>,
    /// Header that carries the hex signature.
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

/// The most of an answer's body `send` reads.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

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
    let platform = args.scheme.platform();
    let variable = match platform {
        None => "WEBHOOK_SECRETS",
        Some(Platform::Shopify) => "SHOPIFY_WEBHOOK_SECRETS",
        Some(Platform::WooCommerce) => "WOOCOMMERCE_WEBHOOK_SECRETS",
    };
    let secret = match &args.secret {
        Some(secret) => secret.clone(),
        None => std::env::var(variable)
            .ok()
            .and_then(|list| {
                list.split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(str::to_owned)
            })
            .with_context(|| format!("no secret: pass --secret or set {variable}"))?,
    };
    let url = args.url.clone().unwrap_or_else(|| {
        let path = platform.map_or("order_events", Platform::as_str);
        format!("http://127.0.0.1:8080/webhooks/{path}")
    });
    let topic = args.topic.clone().unwrap_or_default();
    let secret = Secret::parse(&secret).map_err(|reason| anyhow::anyhow!("--secret: {reason}"))?;
    let webhook_id = webhook_id(&body, args.topic.as_deref());
    // A redirect is an answer to report, not a place to send the event to.
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let mut retry = 0;
    loop {
        let mut request = client
            .post(&url)
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
            Scheme::Shopify => {
                let shop = args.shop.as_deref().unwrap_or("example.myshopify.com");
                request
                    .header("X-Shopify-Topic", &topic)
                    .header("X-Shopify-Hmac-Sha256", sign_platform(&secret, &body))
                    .header("X-Shopify-Shop-Domain", shop)
                    .header("X-Shopify-API-Version", "2025-10")
                    // The same event on every attempt; a new webhook delivery each time.
                    .header("X-Shopify-Event-Id", &webhook_id)
                    .header("X-Shopify-Webhook-Id", uuid::Uuid::new_v4().to_string())
                    .header("X-Shopify-Triggered-At", chrono::Utc::now().to_rfc3339())
            }
            Scheme::WooCommerce => {
                let source = args.shop.as_deref().unwrap_or("https://shop.example/");
                let (resource, event) = topic.split_once('.').unwrap_or((&topic, ""));
                request
                    .header("X-WC-Webhook-Source", source)
                    .header("X-WC-Webhook-Topic", &topic)
                    .header("X-WC-Webhook-Resource", resource)
                    .header("X-WC-Webhook-Event", event)
                    .header("X-WC-Webhook-Signature", sign_platform(&secret, &body))
                    .header("X-WC-Webhook-ID", "1")
                    .header(
                        "X-WC-Webhook-Delivery-ID",
                        rand::random::<u32>().to_string(),
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
            Attempt::Retry {
                reason,
                retry_after,
            } => {
                retry += 1;
                let Some(delay) = args.policy.wait_before(retry, retry_after) else {
                    bail!(
                        "{label}: {reason}; giving up after {} retries",
                        args.policy.max_retries
                    )
                };
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
    let answer = read_capped(response).await;
    match Verdict::of(Some(status.as_u16())) {
        Verdict::Delivered => Attempt::Delivered(status, answer),
        Verdict::Retry => Attempt::Retry {
            reason: status.to_string(),
            retry_after,
        },
        Verdict::GiveUp => Attempt::GiveUp(format!("{status} {answer}")),
    }
}

/// The Standard Webhooks id (or Shopify event id) of `body` under `topic`: the receiver's
/// idempotency key, so the same for every attempt and every run that sends these bytes. The
/// event's own id when it carries one.
fn webhook_id(body: &[u8], topic: Option<&str>) -> String {
    let event = serde_json::from_slice::<serde_json::Value>(body).ok();
    let given = ["id", "event_id"].into_iter().find_map(|name| {
        event
            .as_ref()?
            .get(name)?
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
    });
    given.unwrap_or_else(|| {
        let mut digest = sha2::Sha256::new();
        if let Some(topic) = topic {
            digest.update(format!("{topic}\n"));
        }
        digest.update(body);
        format!("msg_{}", hex::encode(&digest.finalize()[..16]))
    })
}

/// The answer's body, at most [`MAX_ANSWER_BYTES`] of it: what a receiver says is shown, not
/// stored, and a receiver cannot make the sender read without end.
async fn read_capped(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES - body.len())]);
        if body.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
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
    use super::webhook_id;

    #[test]
    fn the_webhook_id_is_the_events_own_or_the_same_for_the_same_bytes() {
        assert_eq!(
            webhook_id(br#"{"id": "evt-1", "event_id": "e"}"#, None),
            "evt-1"
        );
        assert_eq!(webhook_id(br#"{"event_id": "evt-2"}"#, None), "evt-2");
        let derived = webhook_id(br#"{"event_type": "order.cancelled"}"#, None);
        assert!(derived.starts_with("msg_"), "{derived}");
        assert_eq!(
            derived,
            webhook_id(br#"{"event_type": "order.cancelled"}"#, None)
        );
        assert_ne!(
            derived,
            webhook_id(br#"{"event_type":"order.cancelled"}"#, None)
        );
        assert!(webhook_id(b"not json", None).starts_with("msg_"));
        // A platform's topic is part of the event: one order's body under two topics is two.
        let order = br#"{"id": 820982911946154508}"#;
        assert_eq!(
            webhook_id(order, Some("orders/create")),
            webhook_id(order, Some("orders/create"))
        );
        assert_ne!(
            webhook_id(order, Some("orders/create")),
            webhook_id(order, Some("orders/updated"))
        );
    }
}
