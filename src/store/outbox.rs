//! Writing outbound events, the transactional outbox: every writer of a shipment change
//! (the batch writers of both backends, an operator's move) inserts its announcements and
//! their deliveries with the statements built here, in the transaction of the change.

use super::dialect::Dialect;

/// `INSERT INTO outbox_events` of the rows `select` yields, in the columns `id, shipment_id,
/// event_type, body, created_at, traceparent, tracestate` (a `SELECT` without a `WHERE`), marked
/// fanned out: the
/// writer makes their deliveries ([`insert_deliveries`]) in the same transaction. Outbound
/// events are written only while someone listens: a change made while no subscription is
/// active is announced to nobody, and costs no outbox row.
pub(super) fn insert_outbound(select: &str) -> String {
    format!(
        "INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at, traceparent, \
                                    tracestate, fanned_out) \
         SELECT *, true FROM ({select}) AS o \
         WHERE EXISTS (SELECT 1 FROM subscriptions WHERE active)"
    )
}

/// The deliveries of the outbound events that `events` yields (a `SELECT` of `id,
/// shipment_id, event_type, created_at, seq`): one for each active subscription that wants
/// the event's type, pending from the change's time, made in the order the events were
/// written (a shipment's later change gets a later delivery). The one place that says which
/// subscription is owed what.
pub(super) fn insert_deliveries(dialect: Dialect, events: &str) -> String {
    let wants = match dialect {
        Dialect::Sqlite => {
            "EXISTS (SELECT 1 FROM json_each(s.event_types) AS t WHERE t.value = e.event_type)"
        }
        Dialect::Postgres => "s.event_types ? e.event_type",
    };
    let new_id = dialect.new_uuid();
    format!(
        "INSERT INTO deliveries (id, event_id, subscription_id, shipment_id, status, attempts, \
                                 next_attempt_at, created_at, updated_at) \
         SELECT {new_id}, e.id, s.id, e.shipment_id, 'pending', 0, e.created_at, e.created_at, \
                e.created_at \
         FROM ({events}) AS e JOIN subscriptions s ON s.active AND {wants} \
         ORDER BY e.seq, s.id"
    )
}
