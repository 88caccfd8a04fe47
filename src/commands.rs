//! The subcommands that run once against a database and end (`migrate`, `status`, `prune`),
//! and what they print for a person at a terminal.

use std::fmt::Write;

use crate::config::DatabaseConfig;
use crate::domain::Retention;
use crate::prune;
use crate::store::{Counting, Open, Pass, Removed, StatusReport, Store};

pub async fn migrate(database: DatabaseConfig) -> anyhow::Result<()> {
    let store = Store::connect(
        &database.url.0,
        database.max_connections,
        Open::CreateIfMissing,
    )
    .await?;
    store.migrate().await?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}

pub async fn status(database: DatabaseConfig) -> anyhow::Result<()> {
    let store = Store::connect(&database.url.0, database.max_connections, Open::Existing).await?;
    let report = store.status(Counting::Exact).await?;
    store.close().await;
    print!("{}", status_text(&store.describe(), &report));
    Ok(())
}

pub async fn prune(
    database: DatabaseConfig,
    retention: Retention,
    dry_run: bool,
) -> anyhow::Result<()> {
    let store = Store::connect(&database.url.0, database.max_connections, Open::Existing).await?;
    let pass = if dry_run { Pass::DryRun } else { Pass::Remove };
    let removed = prune::once(&store, retention, pass).await;
    store.close().await;
    print!("{}", prune_text(removed?.as_ref(), dry_run));
    Ok(())
}

/// `status`'s report: counts by kind, then each table's rows and oldest record.
fn status_text(database: &str, report: &StatusReport) -> String {
    let mut text = format!("database: {database}\n");
    let mut section = |title: &str, rows: &[(String, i64)]| {
        let _ = writeln!(text, "{title}:");
        for (name, count) in rows {
            let _ = writeln!(text, "  {name:<12} {count}");
        }
    };
    section("shipments by status", &report.shipments);
    section("events of the last hour by outcome", &report.recent_events);
    section(
        "deliveries",
        &[
            ("pending".into(), report.pending_deliveries),
            ("failed".into(), report.failed_deliveries),
        ],
    );
    section("subscriptions (active, or why not)", &report.subscriptions);
    section("quarantine", &[("held".into(), report.quarantine_held)]);
    text.push_str("tables (rows, oldest record):\n");
    for table in &report.tables {
        let oldest = table
            .oldest
            .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339());
        let _ = writeln!(text, "  {:<18} {:>10}  {oldest}", table.table, table.rows);
    }
    text
}

/// `prune`'s report: rows by table; `None` when another instance held the pass.
fn prune_text(removed: Option<&Removed>, dry_run: bool) -> String {
    let Some(removed) = removed else {
        return "another instance is pruning now; nothing done\n".into();
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut text = format!("{verb} (rows by table):\n");
    for (table, rows) in removed.by_table() {
        let _ = writeln!(text, "  {table:<18} {rows}");
    }
    let _ = writeln!(
        text,
        "closed orders whose history goes: {}",
        removed.closed_orders
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TableStats;

    #[test]
    fn status_lists_every_count_under_its_heading() {
        let report = StatusReport {
            approximate: false,
            shipments: vec![("pending".into(), 3)],
            recent_events: vec![("processed".into(), 3), ("duplicate".into(), 1)],
            pending_deliveries: 2,
            failed_deliveries: 0,
            subscriptions: vec![("active".into(), 1)],
            quarantine_held: 4,
            tables: vec![TableStats {
                table: "shipments",
                rows: 3,
                estimated: false,
                oldest: None,
            }],
        };
        assert_eq!(
            status_text("sqlite://x.db", &report),
            "database: sqlite://x.db\n\
             shipments by status:\n  pending      3\n\
             events of the last hour by outcome:\n  processed    3\n  duplicate    1\n\
             deliveries:\n  pending      2\n  failed       0\n\
             subscriptions (active, or why not):\n  active       1\n\
             quarantine:\n  held         4\n\
             tables (rows, oldest record):\n  shipments                   3  -\n"
        );
    }

    #[test]
    fn prune_says_what_it_removed_or_would() {
        let removed = Removed {
            processed_events: 5,
            closed_orders: 2,
            ..Removed::default()
        };
        let text = prune_text(Some(&removed), true);
        assert!(text.starts_with("would remove (rows by table):\n  processed_events   5\n"));
        assert!(text.ends_with("closed orders whose history goes: 2\n"));
        assert!(prune_text(Some(&removed), false).starts_with("removed"));
        assert!(prune_text(None, false).starts_with("another instance"));
    }
}
