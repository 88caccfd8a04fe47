//! The life of one outbound delivery (contract section 8): pending until an attempt delivers it
//! or it fails for good; a failed one may be queued again by an operator.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    /// The only status an operator may queue a delivery again from: a pending one is still
    /// being tried, and a delivered one has arrived.
    pub const REQUEUEABLE: DeliveryStatus = DeliveryStatus::Failed;

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether no more attempts will be made on their own.
    pub fn is_settled(self) -> bool {
        self != DeliveryStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_name_and_only_failed_is_requeued() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
        assert_eq!(DeliveryStatus::REQUEUEABLE, DeliveryStatus::Failed);
        assert!(!DeliveryStatus::Pending.is_settled());
    }
}
