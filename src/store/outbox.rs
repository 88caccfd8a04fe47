//! Writing outbound events, the transactional outbox: every writer of a shipment change
//! (the batch writers of both backends, an operator's move) inserts its announcements with the
//! statement built here, in the transaction of the change.

/// `INSERT INTO outbox_events` of the rows `select` yields, in the columns `id, shipment_id,
/// event_type, body, created_at` (a `SELECT` without a `WHERE`). Outbound events are written
/// only while someone listens: a change made while no subscription is active is announced to
/// nobody, and costs no outbox row and no dispatcher round.
pub(super) fn insert_outbound(select: &str) -> String {
    format!(
        "INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at) \
         {select} WHERE EXISTS (SELECT 1 FROM subscriptions WHERE active)"
    )
}
