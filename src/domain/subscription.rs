//! Subscriptions to the service's own announcements (contract section 8): where to POST, which
//! kinds of change, and the secret that signs them. Parsed from untrusted JSON here, once.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::fields::{FieldError, Fields};
use super::ShipmentChange;

/// Longest accepted subscription URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Random bytes in a generated secret (the Standard Webhooks minimum is 24).
const SECRET_BYTES: usize = 32;
const UNKNOWN: &str = "is not a field of a subscription";

/// A subscription as the API serves it: never with its secret. `Debug` shows its URL without
/// user-info.
#[derive(Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<ShipmentChange>,
    pub description: Option<String>,
    pub active: bool,
    /// Why it was deactivated, while it is inactive.
    pub deactivated_reason: Option<DeactivationReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a subscription stopped receiving deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivationReason {
    /// Nothing delivered for `DELIVERY_DISABLE_AFTER` since its first failure.
    Failing,
    /// The receiver answered 410 Gone.
    Gone,
    /// An operator turned it off.
    Operator,
}

impl DeactivationReason {
    pub const ALL: [DeactivationReason; 3] = [
        DeactivationReason::Failing,
        DeactivationReason::Gone,
        DeactivationReason::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeactivationReason::Failing => "failing",
            DeactivationReason::Gone => "gone",
            DeactivationReason::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<DeactivationReason> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &without_userinfo(&self.url))
            .field("event_types", &self.event_types)
            .field("active", &self.active)
            .field("deactivated_reason", &self.deactivated_reason)
            .finish_non_exhaustive()
    }
}

/// The body of `POST /subscriptions`.
#[derive(Clone, PartialEq)]
pub struct NewSubscription {
    pub url: String,
    pub event_types: Vec<ShipmentChange>,
    pub description: Option<String>,
}

impl std::fmt::Debug for NewSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSubscription")
            .field("url", &without_userinfo(&self.url))
            .field("event_types", &self.event_types)
            .finish_non_exhaustive()
    }
}

/// The body of `PATCH /subscriptions/{id}`: each field absent (unchanged) or given.
#[derive(Clone, Default, PartialEq)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<ShipmentChange>>,
    pub active: Option<bool>,
}

impl std::fmt::Debug for SubscriptionPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionPatch")
            .field("url", &self.url.as_deref().map(without_userinfo))
            .field("event_types", &self.event_types)
            .field("active", &self.active)
            .finish()
    }
}

impl SubscriptionPatch {
    /// What the patch makes of the reason the subscription is inactive: an operator turning
    /// it off is the reason; turning it on clears any. `None`: unchanged.
    pub fn deactivation(&self) -> Option<Option<DeactivationReason>> {
        self.active
            .map(|active| (!active).then_some(DeactivationReason::Operator))
    }
}

/// The URL without its user-info, for logs, records and `Debug`: a password in a subscription
/// URL is the receiver's to know, and nobody else's.
pub fn without_userinfo(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<not a URL>".to_owned(),
    }
}

impl NewSubscription {
    pub fn parse(body: &Value) -> Result<NewSubscription, Vec<FieldError>> {
        let mut fields = Fields::default();
        let Some(object) =
            fields.object_of_known(body, &["url", "event_types", "description"], UNKNOWN)
        else {
            return Err(fields.errors);
        };
        let url = url(&mut fields, object.get("url"));
        let event_types = match object.get("event_types") {
            None | Some(Value::Null) => Some(ShipmentChange::ALL.to_vec()),
            value => event_types(&mut fields, value),
        };
        let description = fields.optional_text(object.get("description"), "description");
        let new = url
            .zip(event_types)
            .map(|(url, event_types)| NewSubscription {
                url,
                event_types,
                description,
            });
        fields.finish(new)
    }
}

impl SubscriptionPatch {
    pub fn parse(body: &Value) -> Result<SubscriptionPatch, Vec<FieldError>> {
        let mut fields = Fields::default();
        let Some(object) = fields.object_of_known(body, &["url", "event_types", "active"], UNKNOWN)
        else {
            return Err(fields.errors);
        };
        if object.is_empty() {
            fields.reject(
                "body",
                "must change at least one of url, event_types, active",
            );
        }
        let patch = SubscriptionPatch {
            url: object
                .get("url")
                .and_then(|value| url(&mut fields, Some(value))),
            event_types: object
                .get("event_types")
                .and_then(|value| event_types(&mut fields, Some(value))),
            active: object.get("active").and_then(|value| match value {
                Value::Bool(active) => Some(*active),
                _ => {
                    fields.reject("active", "must be true or false");
                    None
                }
            }),
        };
        fields.finish(Some(patch))
    }
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes, as Standard Webhooks
/// writes them.
pub fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    format!("whsec_{}", BASE64.encode(bytes))
}

fn url(fields: &mut Fields, value: Option<&Value>) -> Option<String> {
    let text = fields.text(value, "url")?;
    let parsed = reqwest::Url::parse(&text).ok();
    let message = match parsed {
        _ if text.len() > MAX_URL_BYTES => "must be at most 2048 bytes",
        None => "must be an absolute URL",
        Some(url) if !matches!(url.scheme(), "http" | "https") => "must be an http or https URL",
        Some(url) if url.host().is_none() => "must name a host",
        Some(_) => return Some(text),
    };
    fields.reject("url", message);
    None
}

fn event_types(fields: &mut Fields, value: Option<&Value>) -> Option<Vec<ShipmentChange>> {
    const MESSAGE: &str =
        "must be a non-empty list of shipment.created, shipment.updated, shipment.status_changed";
    let parsed: Option<Vec<ShipmentChange>> = value
        .and_then(Value::as_array)
        .filter(|list| !list.is_empty())
        .and_then(|list| {
            list.iter()
                .map(|item| item.as_str().and_then(ShipmentChange::parse))
                .collect()
        });
    match parsed {
        Some(mut types) => {
            types.sort_by_key(|change| change.as_str());
            types.dedup();
            Some(types)
        }
        None => {
            fields.reject("event_types", MESSAGE);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(result: Result<impl std::fmt::Debug, Vec<FieldError>>) -> Vec<String> {
        result
            .unwrap_err()
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn a_subscription_wants_every_type_unless_told_otherwise() {
        let all = NewSubscription::parse(&json!({"url": "https://example.com/hook"})).unwrap();
        assert_eq!(all.event_types, ShipmentChange::ALL.to_vec());
        let some = NewSubscription::parse(&json!({"url": "http://127.0.0.1:9/x",
            "event_types": ["shipment.status_changed", "shipment.status_changed"]}))
        .unwrap();
        assert_eq!(some.event_types, [ShipmentChange::StatusChanged]);
    }

    #[test]
    fn only_http_urls_and_known_types_and_fields_are_accepted() {
        for url in ["ftp://example.com", "not a url", "file:///etc/passwd", ""] {
            assert_eq!(
                fields(NewSubscription::parse(&json!({"url": url}))),
                ["url"],
                "{url}"
            );
        }
        assert_eq!(
            fields(NewSubscription::parse(&json!({"url": "https://x.io",
                "event_types": ["order.created"], "colour": 1}))),
            ["colour", "event_types"]
        );
        assert_eq!(
            fields(SubscriptionPatch::parse(&json!({"active": "yes"}))),
            ["active"]
        );
        assert_eq!(fields(SubscriptionPatch::parse(&json!({}))), ["body"]);
    }

    #[test]
    fn debug_output_and_shown_urls_carry_no_password() {
        let new =
            NewSubscription::parse(&json!({"url": "https://alice:s3cret@hooks.example.com/in"}))
                .unwrap();
        let patch =
            SubscriptionPatch::parse(&json!({"url": "https://bob:hunter2@example.com/"})).unwrap();
        let shown = format!("{new:?} {patch:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(
            without_userinfo("https://alice:s3cret@hooks.example.com/in?x=1"),
            "https://hooks.example.com/in?x=1"
        );
        assert_eq!(
            without_userinfo("https://example.com/in"),
            "https://example.com/in"
        );
    }

    #[test]
    fn turning_a_subscription_off_is_the_operators_doing_and_on_clears_it() {
        let off = SubscriptionPatch::parse(&json!({"active": false})).unwrap();
        let on = SubscriptionPatch::parse(&json!({"active": true})).unwrap();
        let other =
            SubscriptionPatch::parse(&json!({"event_types": ["shipment.created"]})).unwrap();
        assert_eq!(off.deactivation(), Some(Some(DeactivationReason::Operator)));
        assert_eq!(on.deactivation(), Some(None));
        assert_eq!(other.deactivation(), None);
    }

    #[test]
    fn a_new_secret_is_a_standard_webhooks_secret() {
        let secret = new_secret();
        assert!(crate::signature::Secret::parse(&secret).is_ok());
        let decoded = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(decoded.len(), 32);
        assert_ne!(secret, new_secret());
    }
}
