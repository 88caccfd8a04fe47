//! Quarantine (contract section 11): an authentic event the service cannot apply (not JSON, a
//! field missing or invalid, a limit broken) is kept, as it came, until an operator replays it
//! (as it is, or corrected) or discards it. The same bytes again, under the
//! same signed id, are the same entry.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// What became of a quarantined event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineStatus {
    /// Kept, not applied: waiting for an operator.
    Held,
    /// Applied by an operator's replay (as it came, or corrected).
    Replayed,
    /// Let go by an operator.
    Discarded,
}

impl QuarantineStatus {
    pub const ALL: [QuarantineStatus; 3] = [
        QuarantineStatus::Held,
        QuarantineStatus::Replayed,
        QuarantineStatus::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineStatus::Held => "held",
            QuarantineStatus::Replayed => "replayed",
            QuarantineStatus::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Option<QuarantineStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Only a held event is replayed: a replayed one was applied once (and a correction
    /// applied again could be another event), a discarded one was let go.
    pub fn can_replay(self) -> bool {
        self == QuarantineStatus::Held
    }

    /// A held event can be let go (discarding a discarded one again changes nothing); what was
    /// replayed was applied, and stays replayed.
    pub fn can_discard(self) -> bool {
        self != QuarantineStatus::Replayed
    }

    /// Whether an operator has decided about it, so that retention may let it go.
    pub fn is_resolved(self) -> bool {
        self != QuarantineStatus::Held
    }
}

/// The key of an entry: the same bytes under the same signed event id (or with none),
/// delivered again, are the same entry; under another signed id they are another event. (With
/// no id the key is the body's digest alone, as it always was.)
pub fn entry_key(body: &[u8], webhook_id: Option<&str>) -> String {
    let mut digest = Sha256::new();
    if let Some(id) = webhook_id {
        // The id's length first: no id and body can be cut another way into the same bytes.
        digest.update(format!("webhook-id:{}:", id.len()));
        digest.update(id);
        digest.update(b":");
    }
    digest.update(body);
    hex::encode(digest.finalize())
}

/// A body as it is shown to people (the API, the console): as text when it is UTF-8, else its
/// bytes in base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShownBody {
    Text(String),
    Base64(String),
}

impl ShownBody {
    pub fn of(bytes: Vec<u8>) -> ShownBody {
        use base64::Engine;
        match String::from_utf8(bytes) {
            Ok(text) => ShownBody::Text(text),
            Err(error) => ShownBody::Base64(
                base64::engine::general_purpose::STANDARD.encode(error.into_bytes()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_and_replayed_entries_replay_and_only_replayed_ones_cannot_be_discarded() {
        use QuarantineStatus::*;
        assert!(Held.can_replay() && !Replayed.can_replay() && !Discarded.can_replay());
        assert!(Held.can_discard() && Discarded.can_discard() && !Replayed.can_discard());
        assert!(!Held.is_resolved() && Replayed.is_resolved() && Discarded.is_resolved());
        for status in QuarantineStatus::ALL {
            assert_eq!(QuarantineStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn a_body_shows_as_text_when_it_is_utf8_else_as_base64() {
        assert_eq!(ShownBody::of(b"{}".to_vec()), ShownBody::Text("{}".into()));
        assert_eq!(
            ShownBody::of(vec![0xff, 0x00]),
            ShownBody::Base64("/wA=".into())
        );
    }

    #[test]
    fn the_same_bytes_under_the_same_id_have_the_same_key_and_others_another() {
        let body = b"{\"a\":1}";
        assert_eq!(entry_key(body, None), entry_key(body, None));
        assert_ne!(entry_key(body, None), entry_key(b"{\"a\": 1}", None));
        assert_eq!(
            entry_key(body, Some("msg_1")),
            entry_key(body, Some("msg_1"))
        );
        assert_ne!(
            entry_key(body, Some("msg_1")),
            entry_key(body, Some("msg_2"))
        );
        assert_ne!(entry_key(body, Some("msg_1")), entry_key(body, None));
        assert_eq!(entry_key(body, None), hex::encode(Sha256::digest(body)));
    }
}
