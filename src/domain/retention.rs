//! What the service forgets, and when (contract section 9). `RETENTION` is how long it keeps
//! what no promise needs any more: records that are not part of an order's history, the whole
//! history of a closed order, settled deliveries. Past the horizon those go; nothing an open
//! order, a pending delivery or a subscription needs ever does.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{DeliveryStatus, QuarantineStatus, ShipmentStatus};

/// How long records no promise needs are kept; `None` keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(Option<Duration>);

/// Below this a sender's redeliveries may outlive the records that recognise them: the seed's
/// sender retries for 31 s, then queues by hand, which can take hours.
const SHORT: Duration = Duration::from_secs(24 * 60 * 60);
/// A pass runs at least this often.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

impl Retention {
    pub const OFF: Retention = Retention(None);

    /// `off`, or a duration such as `30d` or `12h`.
    pub fn parse(text: &str) -> Result<Retention, String> {
        if text == "off" {
            return Ok(Retention::OFF);
        }
        match humantime::parse_duration(text) {
            Ok(keep) if !keep.is_zero() => Ok(Retention(Some(keep))),
            _ => Err("must be off or a duration such as 30d, 12h or 90s".into()),
        }
    }

    pub fn keep(self) -> Option<Duration> {
        self.0
    }

    /// Records last touched before this may go; `None` while everything is kept.
    pub fn horizon(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let keep = chrono::Duration::from_std(self.0?).ok()?;
        now.checked_sub_signed(keep)
    }

    /// Shorter than a sender may take to redeliver an event by hand.
    pub fn is_short(self) -> bool {
        self.0.is_some_and(|keep| keep < SHORT)
    }

    /// How long a pass waits for the next: at least once a minute, and twice per `RETENTION`
    /// so that nothing outlives it by more than half of it.
    pub fn pause(self) -> Duration {
        self.0
            .map_or(LONGEST_PAUSE, |keep| (keep / 2).min(LONGEST_PAUSE))
            .max(Duration::from_millis(200))
    }
}

impl ShipmentStatus {
    /// Statuses in which a shipment is closed: the parcel has left, or the order is cancelled.
    /// Once a closed shipment has seen no event and no move for `RETENTION`, its order's
    /// history may go; later events of the order are then too late.
    pub const CLOSED: [ShipmentStatus; 3] = [
        ShipmentStatus::Shipped,
        ShipmentStatus::Delivered,
        ShipmentStatus::Cancelled,
    ];
}

// The rules of what goes, each a predicate on what a record says and the horizon (records last
// touched before it may go). Each backend's SQL in `store/retention.rs` finds the records these
// accept, in bulk; `tests/api/retention.rs` checks a pass against them.

/// A recorded event that is not part of its order's history (a duplicate, an ignored type, an
/// event that came too late) is kept only to recognise its redeliveries.
pub fn forgets_record(
    in_history: bool,
    received_at: DateTime<Utc>,
    horizon: DateTime<Utc>,
) -> bool {
    !in_history && received_at < horizon
}

/// A closed order's history (every event recorded for it) goes once neither its shipment (a
/// change, an operator's move) nor its order (an event) has been touched since the horizon.
/// The shipment stays, and later events of the order are too late.
pub fn forgets_history(
    status: ShipmentStatus,
    updated_at: DateTime<Utc>,
    last_event_at: Option<DateTime<Utc>>,
    horizon: DateTime<Utc>,
) -> bool {
    ShipmentStatus::CLOSED.contains(&status)
        && updated_at < horizon
        && last_event_at.is_none_or(|at| at < horizon)
}

/// An announcement goes, with its deliveries and their attempts, once its deliveries are made,
/// it was written before the horizon, and every delivery is settled (delivered or failed) and
/// untouched since. A pending delivery keeps it, however old.
pub fn forgets_announcement(
    fanned_out: bool,
    created_at: DateTime<Utc>,
    deliveries: &[(DeliveryStatus, DateTime<Utc>)],
    horizon: DateTime<Utc>,
) -> bool {
    fanned_out
        && created_at < horizon
        && deliveries
            .iter()
            .all(|(status, updated_at)| status.is_settled() && *updated_at < horizon)
}

/// A quarantined event goes once an operator resolved it (replayed or discarded) before the
/// horizon; a held one waits for them.
pub fn forgets_quarantined(
    status: QuarantineStatus,
    resolved_at: Option<DateTime<Utc>>,
    horizon: DateTime<Utc>,
) -> bool {
    status.is_resolved() && resolved_at.is_some_and(|at| at < horizon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_keeps_everything_and_a_duration_sets_the_horizon() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Retention::parse("off").unwrap().horizon(now), None);
        let day = Retention::parse("1d").unwrap();
        assert_eq!(
            day.horizon(now).unwrap().to_rfc3339(),
            "2026-12-01T12:00:00+00:00"
        );
        for bad in ["", "0s", "soon", "-1d", "30"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn each_rule_lets_go_only_what_no_promise_needs() {
        let horizon = at("2026-12-01T00:00:00Z");
        let (before, after) = (at("2026-11-30T00:00:00Z"), at("2026-12-02T00:00:00Z"));
        assert!(forgets_record(false, before, horizon));
        assert!(!forgets_record(true, before, horizon), "history stays");
        assert!(!forgets_record(false, after, horizon));

        assert!(forgets_history(
            ShipmentStatus::Delivered,
            before,
            Some(before),
            horizon
        ));
        assert!(forgets_history(
            ShipmentStatus::Cancelled,
            before,
            None,
            horizon
        ));
        assert!(
            !forgets_history(ShipmentStatus::Packed, before, None, horizon),
            "open"
        );
        assert!(
            !forgets_history(ShipmentStatus::Shipped, after, None, horizon),
            "moved lately"
        );
        assert!(
            !forgets_history(ShipmentStatus::Shipped, before, Some(after), horizon),
            "an event lately"
        );

        let delivered = (DeliveryStatus::Delivered, before);
        assert!(forgets_announcement(
            true,
            before,
            &[delivered, (DeliveryStatus::Failed, before)],
            horizon
        ));
        assert!(forgets_announcement(true, before, &[], horizon));
        assert!(
            !forgets_announcement(false, before, &[], horizon),
            "not fanned out"
        );
        assert!(!forgets_announcement(
            true,
            before,
            &[delivered, (DeliveryStatus::Pending, before)],
            horizon
        ));
        assert!(!forgets_announcement(
            true,
            before,
            &[(DeliveryStatus::Failed, after)],
            horizon
        ));

        assert!(forgets_quarantined(
            QuarantineStatus::Discarded,
            Some(before),
            horizon
        ));
        assert!(!forgets_quarantined(
            QuarantineStatus::Held,
            Some(before),
            horizon
        ));
        assert!(!forgets_quarantined(
            QuarantineStatus::Replayed,
            Some(after),
            horizon
        ));
    }

    #[test]
    fn short_retentions_are_noticed_and_passes_keep_up_with_them() {
        assert!(Retention::parse("90s").unwrap().is_short());
        assert!(!Retention::parse("30d").unwrap().is_short());
        assert!(!Retention::OFF.is_short());
        assert_eq!(
            Retention::parse("30d").unwrap().pause(),
            Duration::from_secs(60)
        );
        assert_eq!(Retention::OFF.pause(), Duration::from_secs(60));
        assert_eq!(
            Retention::parse("2s").unwrap().pause(),
            Duration::from_secs(1)
        );
    }
}
