//! The validator every untrusted JSON body goes through: webhook events, operators' changes,
//! subscriptions. It collects every bad field instead of stopping at the first, so a client
//! can fix its body in one go, and it holds the limits every stored text obeys, so they are the
//! same everywhere.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Longest text we store, in bytes (UTF-8): keeps rows small, refuses payloads built to bloat
/// the database, and keeps every indexed value far below PostgreSQL's btree row limit (about
/// 2,700 bytes), the same on both backends, so no authentic event is refused by the database.
pub const MAX_TEXT_BYTES: usize = 1024;

/// One bad field of a body, named by its path (`data.items[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: &'static str,
}

#[derive(Default)]
pub struct Fields {
    pub errors: Vec<FieldError>,
}

/// Whether a text may be stored as an identifier: not blank, no NUL, within the limit.
pub fn is_storable(text: &str) -> bool {
    !text.trim().is_empty() && !text.contains('\0') && text.len() <= MAX_TEXT_BYTES
}

impl Fields {
    pub fn reject(&mut self, field: impl Into<String>, message: &'static str) {
        self.errors.push(FieldError {
            field: field.into(),
            message,
        });
    }

    /// `value` when no field was rejected, else every error.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(self.errors),
        }
    }

    /// The body as an object whose fields are all among `known`; others are named as
    /// `unknown` says.
    pub fn object_of_known<'v>(
        &mut self,
        body: &'v Value,
        known: &[&str],
        unknown: &'static str,
    ) -> Option<&'v Map<String, Value>> {
        let Some(object) = body.as_object() else {
            self.reject("body", "must be a JSON object");
            return None;
        };
        for name in object.keys().filter(|name| !known.contains(&name.as_str())) {
            self.reject(name.clone(), unknown);
        }
        Some(object)
    }

    /// A required text, within the limits of every stored text.
    pub fn text(&mut self, value: Option<&Value>, field: &str) -> Option<String> {
        let message = match value {
            None | Some(Value::Null) => "is required",
            Some(Value::String(text)) if text.trim().is_empty() => "must not be empty",
            Some(Value::String(text)) if text.contains('\0') => "must not contain NUL characters",
            Some(Value::String(text)) if text.len() > MAX_TEXT_BYTES => {
                "must be at most 1024 bytes (UTF-8)"
            }
            Some(Value::String(text)) => return Some(text.clone()),
            Some(_) => "must be a string",
        };
        self.reject(field, message);
        None
    }

    pub fn optional_text(&mut self, value: Option<&Value>, field: &str) -> Option<String> {
        match value {
            None | Some(Value::Null) => None,
            present => self.text(present, field),
        }
    }

    /// A text that may also be `null` (cleared): `None` when absent.
    pub fn clearable_text(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
    ) -> Option<Option<String>> {
        match object.get(name)? {
            Value::Null => Some(None),
            value => self.text(Some(value), name).map(Some),
        }
    }

    pub fn object<'v>(
        &mut self,
        value: Option<&'v Value>,
        field: &str,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Some(Value::Object(object)) => Some(object),
            None | Some(Value::Null) => {
                self.reject(field, "is required");
                None
            }
            Some(_) => {
                self.reject(field, "must be an object");
                None
            }
        }
    }

    pub fn timestamp(&mut self, value: Option<&Value>, field: &str) -> Option<DateTime<Utc>> {
        let text = self.text(value, field)?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                self.reject(field, "must be an RFC 3339 date-time");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_limits_count_bytes() {
        let mut fields = Fields::default();
        // 341 three-byte characters fit; 342 do not.
        assert!(fields.text(Some(&json!("€".repeat(341))), "a").is_some());
        assert!(fields.text(Some(&json!("€".repeat(342))), "b").is_none());
        assert!(fields.text(Some(&json!(" ")), "c").is_none());
        assert!(fields.text(Some(&json!("a\u{0}b")), "d").is_none());
        assert!(fields.text(Some(&json!(7)), "e").is_none());
        let named: Vec<&str> = fields.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["b", "c", "d", "e"]);
    }

    #[test]
    fn unknown_fields_and_non_objects_are_named() {
        let mut fields = Fields::default();
        let body = json!({"url": "x", "colour": 1});
        assert!(fields
            .object_of_known(&body, &["url"], "is not a field of a thing")
            .is_some());
        assert!(fields
            .object_of_known(&json!([]), &["url"], "is not a field")
            .is_none());
        let named: Vec<&str> = fields.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["colour", "body"]);
    }

    #[test]
    fn a_clearable_text_is_absent_cleared_or_given() {
        let mut fields = Fields::default();
        let body = json!({"carrier": null, "tracking_number": "JD1"});
        let object = body.as_object().unwrap();
        assert_eq!(fields.clearable_text(object, "carrier"), Some(None));
        assert_eq!(
            fields.clearable_text(object, "tracking_number"),
            Some(Some("JD1".into()))
        );
        assert_eq!(fields.clearable_text(object, "absent"), None);
        assert!(fields.errors.is_empty());
    }
}
