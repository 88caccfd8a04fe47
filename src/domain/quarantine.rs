//! Quarantine (contract section 11): an authentic event the service cannot apply (not JSON, a
//! field missing or invalid, a limit broken) is kept, as it came, until an operator replays it
//! (as it is, or corrected) or discards it. The same bytes again are the same entry.

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

    /// A replay runs the event again: a held one for the first time, a replayed one again
    /// (a duplicate, by its event id). A discarded one was let go.
    pub fn can_replay(self) -> bool {
        self != QuarantineStatus::Discarded
    }

    /// Only what is still held can be let go; what was replayed was applied.
    pub fn can_discard(self) -> bool {
        self != QuarantineStatus::Replayed
    }

    /// Whether an operator has decided about it, so that retention may let it go.
    pub fn is_resolved(self) -> bool {
        self != QuarantineStatus::Held
    }
}

/// The key of a body: the same bytes, delivered again, are the same entry.
pub fn body_key(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_and_replayed_entries_replay_and_only_replayed_ones_cannot_be_discarded() {
        use QuarantineStatus::*;
        assert!(Held.can_replay() && Replayed.can_replay() && !Discarded.can_replay());
        assert!(Held.can_discard() && Discarded.can_discard() && !Replayed.can_discard());
        assert!(!Held.is_resolved() && Replayed.is_resolved() && Discarded.is_resolved());
        for status in QuarantineStatus::ALL {
            assert_eq!(QuarantineStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn the_same_bytes_have_the_same_key_and_others_another() {
        assert_eq!(body_key(b"{\"a\":1}"), body_key(b"{\"a\":1}"));
        assert_ne!(body_key(b"{\"a\":1}"), body_key(b"{\"a\": 1}"));
    }
}
