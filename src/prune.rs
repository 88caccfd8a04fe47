//! The retention pass: in the background of every `serve` (at least once a minute, and twice
//! per `RETENTION`), and once by hand with `shipping-service prune [--dry-run]`. It asks the
//! domain where the horizon is and the store removes what lies behind it; on PostgreSQL one
//! instance prunes at a time.

use crate::domain::Retention;
use crate::metrics::Metrics;
use crate::store::{Pass, Removed, Store};

/// Runs passes until the task is dropped; nothing to do while everything is kept.
pub async fn run(store: Store, retention: Retention, metrics: Metrics) {
    for (table, _) in Removed::default().by_table() {
        metrics.rows_removed(table, 0);
    }
    loop {
        tokio::time::sleep(retention.pause()).await;
        let Some(horizon) = retention.horizon(chrono::Utc::now()) else {
            return;
        };
        let span = if crate::telemetry::traces::enabled() {
            tracing::info_span!("retention pass", rows_removed = tracing::field::Empty)
        } else {
            tracing::Span::none()
        };
        let pass = store.prune(horizon, Pass::Remove);
        match tracing::Instrument::instrument(pass, span.clone()).await {
            Ok(Some(removed)) => {
                span.record("rows_removed", removed.total());
                for (table, rows) in removed.by_table() {
                    metrics.rows_removed(table, rows);
                }
                if removed.total() > 0 {
                    tracing::info!(
                        processed_events = removed.processed_events,
                        closed_orders = removed.closed_orders,
                        shipment_moves = removed.shipment_moves,
                        outbox_events = removed.outbox_events,
                        deliveries = removed.deliveries,
                        delivery_attempts = removed.delivery_attempts,
                        "retention pass removed what RETENTION lets go"
                    );
                }
            }
            Ok(None) => tracing::debug!("another instance is pruning"),
            Err(error) => tracing::warn!(
                error = crate::telemetry::error_chain(&error),
                "the retention pass failed; the next one tries again"
            ),
        }
    }
}

/// One pass now, for `shipping-service prune`: what it removed (or, dry, would remove).
/// `None` when another instance is pruning.
pub async fn once(
    store: &Store,
    retention: Retention,
    pass: Pass,
) -> anyhow::Result<Option<Removed>> {
    let Some(horizon) = retention.horizon(chrono::Utc::now()) else {
        anyhow::bail!("RETENTION is off: everything is kept, nothing to prune");
    };
    Ok(store.prune(horizon, pass).await?)
}
