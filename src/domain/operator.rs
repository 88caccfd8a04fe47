//! What an operator may do to a shipment (`PATCH /shipments/{id}`): move it along
//! pending → packed → shipped → delivered, cancel it before it leaves, and record the carrier
//! and tracking number. Pure: the store loads, calls [`ShipmentPatch::apply`], and saves guarded by the
//! revision it read.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::{FieldError, Fields};
use super::{Shipment, ShipmentStatus};

/// A parsed PATCH body: each field absent (unchanged) or given; carrier and tracking number
/// may be cleared with `null`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShipmentPatch {
    pub status: Option<ShipmentStatus>,
    pub carrier: Option<Option<String>>,
    pub tracking_number: Option<Option<String>>,
}

/// A move the operator may not make: the contract's 409, naming both statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a shipment cannot move from {} to {}", from.as_str(), to.as_str())]
pub struct IllegalMove {
    pub from: ShipmentStatus,
    pub to: ShipmentStatus,
}

const FIELDS: [&str; 3] = ["status", "carrier", "tracking_number"];

impl ShipmentPatch {
    pub fn parse(body: &Value) -> Result<ShipmentPatch, Vec<FieldError>> {
        let mut fields = Fields::default();
        let Some(object) = fields.object_of_known(
            body,
            &FIELDS,
            "is not a field of a shipment an operator can change",
        ) else {
            return Err(fields.errors);
        };
        if !FIELDS.iter().any(|name| object.contains_key(*name)) {
            fields.reject(
                "body",
                "must change at least one of status, carrier, tracking_number",
            );
        }
        let status = match object.get("status") {
            None => None,
            Some(value) => {
                let status = value.as_str().and_then(ShipmentStatus::parse);
                if status.is_none() {
                    fields.reject(
                        "status",
                        "must be one of pending, packed, shipped, delivered, cancelled",
                    );
                }
                status
            }
        };
        let patch = ShipmentPatch {
            status,
            carrier: fields.clearable_text(object, "carrier"),
            tracking_number: fields.clearable_text(object, "tracking_number"),
        };
        fields.finish(Some(patch))
    }

    /// The shipment after the patch, `Ok(None)` when it changes nothing (the current status
    /// again is a no-op). A change raises the revision by one.
    pub fn apply(
        &self,
        current: &Shipment,
        now: DateTime<Utc>,
    ) -> Result<Option<(Shipment, Option<ShipmentStatus>)>, IllegalMove> {
        let mut next = current.clone();
        let mut operator_status = None;
        if let Some(to) = self.status.filter(|to| *to != current.status) {
            if !current.status.can_move_to(to) {
                return Err(IllegalMove {
                    from: current.status,
                    to,
                });
            }
            next.status = to;
            operator_status = Some(to);
        }
        if let Some(carrier) = &self.carrier {
            next.carrier.clone_from(carrier);
        }
        if let Some(tracking_number) = &self.tracking_number {
            next.tracking_number.clone_from(tracking_number);
        }
        if next == *current {
            return Ok(None);
        }
        Ok(Some((next.revised(now), operator_status)))
    }
}

impl ShipmentStatus {
    /// The moves an operator may make (contract section 5).
    pub fn can_move_to(self, to: ShipmentStatus) -> bool {
        use ShipmentStatus::*;
        matches!(
            (self, to),
            (Pending, Packed)
                | (Packed, Shipped)
                | (Shipped, Delivered)
                | (Pending | Packed, Cancelled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderState;
    use serde_json::json;
    use ShipmentStatus::*;

    fn shipment(status: ShipmentStatus) -> Shipment {
        let order = OrderState::example("C");
        Shipment {
            id: uuid::Uuid::nil(),
            order_id: "O".into(),
            customer_id: order.customer_id,
            items: order.items,
            shipping_address: order.shipping_address,
            status,
            version: 1,
            revision: 4,
            cancel_reason: None,
            carrier: None,
            tracking_number: None,
            source_event_id: "e".into(),
            ordered_at: DateTime::UNIX_EPOCH,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    fn patch(body: Value) -> ShipmentPatch {
        ShipmentPatch::parse(&body).unwrap()
    }

    #[test]
    fn the_allowed_moves_and_only_those() {
        let allowed = [
            (Pending, Packed),
            (Packed, Shipped),
            (Shipped, Delivered),
            (Pending, Cancelled),
            (Packed, Cancelled),
        ];
        for from in ShipmentStatus::ALL {
            for to in ShipmentStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to)),
                    "{from:?} {to:?}"
                );
            }
        }
    }

    #[test]
    fn a_move_raises_the_revision_and_records_the_operators_status() {
        let (next, operator) = patch(json!({"status": "packed", "carrier": "DHL"}))
            .apply(&shipment(Pending), Utc::now())
            .unwrap()
            .unwrap();
        assert_eq!((next.status, next.revision), (Packed, 5));
        assert_eq!(next.carrier.as_deref(), Some("DHL"));
        assert_eq!(operator, Some(Packed));
    }

    #[test]
    fn the_current_status_again_is_a_no_op_and_an_illegal_move_names_both() {
        let same = patch(json!({"status": "shipped"})).apply(&shipment(Shipped), Utc::now());
        assert_eq!(same, Ok(None));
        let back = patch(json!({"status": "pending"})).apply(&shipment(Shipped), Utc::now());
        assert_eq!(
            back.unwrap_err().to_string(),
            "a shipment cannot move from shipped to pending"
        );
    }

    #[test]
    fn bad_bodies_name_every_field() {
        let fields = |body: Value| -> Vec<String> {
            ShipmentPatch::parse(&body)
                .unwrap_err()
                .into_iter()
                .map(|error| error.field)
                .collect()
        };
        assert_eq!(
            fields(json!({"status": "lost", "carrier": 7, "colour": "red"})),
            ["colour", "status", "carrier"]
        );
        assert_eq!(fields(json!({})), ["body"]);
        assert_eq!(fields(json!([])), ["body"]);
        assert_eq!(
            patch(json!({"tracking_number": null})).tracking_number,
            Some(None)
        );
    }
}
