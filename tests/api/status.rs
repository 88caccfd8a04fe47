//! `shipping-service status`: counts an operator reads at a terminal, from the database the
//! configuration names.

use std::process::Command;

use crate::helpers::{lifecycle_event, order_event, spawn_app, test_env, Backend};
use crate::on_both_backends;

on_both_backends!(
    status_counts_shipments_events_and_deliveries,
    status_and_migrate_need_only_the_database,
);

async fn status_counts_shipments_events_and_deliveries(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post_event(&order_event("ORD-S1")).await;
    app.post_event(&order_event("ORD-S2")).await;
    let mut twin = order_event("ORD-S2");
    twin["id"] = serde_json::json!("evt-twin");
    app.post_event(&twin).await;
    app.post_event(&lifecycle_event("order.cancelled", "ORD-S1", None))
        .await;

    let env = test_env(&app.db);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_shipping-service"))
            .arg("status")
            .env_clear()
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let line = |label: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(label))
            .map(|line| line.split_whitespace().last().unwrap().to_owned())
    };
    // Shipments first: ORD-S2 is pending; no subscription, so no deliveries.
    assert_eq!(line("pending").as_deref(), Some("1"), "{text}");
    assert!(text.contains("failed       0"), "{text}");
    assert_eq!(line("cancelled").as_deref(), Some("1"), "{text}");
    assert_eq!(line("processed").as_deref(), Some("2"), "{text}");
    assert_eq!(line("duplicate").as_deref(), Some("1"), "{text}");
    assert_eq!(line("updated").as_deref(), Some("1"), "{text}");
    // Each table's rows, and its oldest record (none for an empty table).
    let tables = text.split("tables (rows, oldest record):").nth(1).unwrap();
    let table = |name: &str| {
        tables
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .map(|line| line.split_whitespace().skip(1).collect::<Vec<_>>())
            .unwrap()
    };
    assert_eq!(table("processed_events")[0], "4", "{text}");
    assert!(table("processed_events")[1].starts_with("20"), "{text}");
    assert_eq!(table("shipments")[0], "2", "{text}");
    assert_eq!(table("outbox_events"), ["0", "-"], "{text}");
    assert!(
        text.contains("subscriptions (active, or why not):"),
        "{text}"
    );
}

/// `status` and `migrate` read the database and nothing else: no secret, no token. `status`
/// on a database that does not exist says so and creates nothing.
async fn status_and_migrate_need_only_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let run = |command: &'static str, url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_shipping-service"))
                .arg(command)
                .env_clear()
                .env("DATABASE_URL", url)
                .output()
                .unwrap()
        })
    };

    let migrate = run("migrate", app.db.url.clone()).await.unwrap();
    let status = run("status", app.db.url.clone()).await.unwrap();

    assert!(migrate.status.success(), "{migrate:?}");
    assert!(status.status.success(), "{status:?}");
    if backend == Backend::Sqlite {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("data/missing.db");
        let url = format!("sqlite://{}", missing.display());
        let output = run("status", url).await.unwrap();
        assert!(!output.status.success());
        let error = String::from_utf8(output.stderr).unwrap();
        assert!(
            error.contains(&format!(
                "there is no SQLite database at {}",
                missing.display()
            )),
            "{error}"
        );
        assert!(!missing.parent().unwrap().exists(), "nothing was created");
    }
}
