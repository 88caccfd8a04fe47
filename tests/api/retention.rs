//! Retention (contract section 9): with `RETENTION` of seconds, records that are not part of
//! an order's history, closed orders' histories and settled deliveries go, each by its rule;
//! shipments, open orders' histories (a parked cancellation included) and pending deliveries
//! stay; later events of a closed order are too late. `prune` does a pass by hand.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{
    lifecycle_event, order_event, post_signed_to, run_command, spawn_app, spawn_app_with, test_env,
    wait_until, Backend, ServiceProcess, TestApp, TestDb,
};
use crate::on_both_backends;
use crate::subscriber::{Answer, Subscriber};

on_both_backends!(
    records_outside_any_history_go_and_open_orders_fold_as_before,
    a_closed_orders_history_goes_and_its_later_events_are_too_late,
    settled_deliveries_go_with_their_outbound_event_and_pending_ones_stay,
    prune_counts_then_removes_what_retention_lets_go,
);

async fn items(app: &TestApp, path: &str) -> Vec<Value> {
    app.get_json(path).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn post(app: &TestApp, event: &Value) -> (u16, Value) {
    let response = app.post_event(event).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn patch(app: &TestApp, shipment: &str, body: Value) {
    assert_eq!(app.patch_shipment(shipment, &body).await.status(), 200);
}

fn with_id(mut event: Value, id: &str) -> Value {
    event["id"] = json!(id);
    event
}

async fn records_outside_any_history_go_and_open_orders_fold_as_before(backend: Backend) {
    let app = spawn_app_with(backend, &[("RETENTION", "2s")]).await;
    let created = with_id(order_event("ORD-OPEN"), "evt-created");
    let twin = with_id(order_event("ORD-OPEN"), "evt-twin");
    let unhandled = json!({"event_type": "order.shipped", "data": {"order_id": "ORD-OPEN"}});
    assert_eq!(post(&app, &created).await.1["status"], "processed");
    assert_eq!(post(&app, &twin).await.1["status"], "duplicate");
    assert_eq!(post(&app, &unhandled).await.1["status"], "ignored");

    wait_until(30, "the records to go", || async {
        items(&app, "/events?order_id=ORD-OPEN").await.len() == 1
    })
    .await;

    let history = items(&app, "/events?order_id=ORD-OPEN").await;
    assert_eq!(history[0]["event_id"], "evt-created");
    assert_eq!(history[0]["outcome"], "processed");
    let (status, updated) = post(&app, &lifecycle_event("order.updated", "ORD-OPEN", None)).await;
    assert_eq!((status, &updated["status"]), (200, &json!("updated")));
    assert_eq!(app.shipment_of("ORD-OPEN").await["version"], 2);
    // The twin's record is gone, and the order's creation still makes it a duplicate.
    assert_eq!(post(&app, &twin).await.1["status"], "duplicate");
    assert_eq!(app.db.count_shipments().await, 1);
    let metrics = app.metrics().await;
    let removed: u64 = metrics
        .lines()
        .find(|line| line.starts_with("retention_removed_rows_total{table=\"processed_events\"}"))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
        .unwrap();
    assert!(removed >= 2, "{metrics}");
}

async fn a_closed_orders_history_goes_and_its_later_events_are_too_late(backend: Backend) {
    let app = spawn_app_with(backend, &[("RETENTION", "2s")]).await;
    let shipped = app.create_shipment("ORD-SHIPPED").await;
    patch(&app, &shipped, json!({"status": "packed"})).await;
    patch(
        &app,
        &shipped,
        json!({"status": "shipped", "carrier": "DHL", "tracking_number": "JD1"}),
    )
    .await;
    let cancelled = app.create_shipment("ORD-CANCELLED").await;
    post(
        &app,
        &lifecycle_event("order.cancelled", "ORD-CANCELLED", None),
    )
    .await;
    app.create_shipment("ORD-PENDING").await;
    let (status, _) = post(
        &app,
        &lifecycle_event("order.cancelled", "ORD-PARKED", Some(2)),
    )
    .await;
    assert_eq!(status, 202);

    wait_until(30, "the closed orders' histories to go", || async {
        items(&app, "/events?order_id=ORD-SHIPPED").await.is_empty()
            && items(&app, "/events?order_id=ORD-CANCELLED")
                .await
                .is_empty()
    })
    .await;

    let kept = app.get_json(&format!("/shipments/{shipped}")).await;
    assert_eq!(
        (&kept["status"], &kept["carrier"]),
        (&json!("shipped"), &json!("DHL"))
    );
    let revision = app.get_json(&format!("/shipments/{cancelled}")).await["revision"].clone();
    // A removed event redelivered, and a new event: too late, no effect.
    let (status, answer) = post(&app, &order_event("ORD-SHIPPED")).await;
    assert_eq!((status, &answer["status"]), (200, &json!("too_late")));
    assert_eq!(answer["shipment_id"], json!(shipped));
    let (status, answer) = post(
        &app,
        &lifecycle_event("order.updated", "ORD-CANCELLED", Some(9)),
    )
    .await;
    assert_eq!((status, &answer["status"]), (200, &json!("too_late")));
    let after = app.get_json(&format!("/shipments/{cancelled}")).await;
    assert_eq!(
        (&after["status"], &after["revision"]),
        (&json!("cancelled"), &revision)
    );
    // Open orders keep their history; the parked cancellation still decides its order.
    assert_eq!(items(&app, "/events?order_id=ORD-PENDING").await.len(), 1);
    assert_eq!(items(&app, "/events?order_id=ORD-PARKED").await.len(), 1);
    let (status, _) = post(&app, &order_event("ORD-PARKED")).await;
    assert_eq!(status, 201);
    assert_eq!(app.shipment_of("ORD-PARKED").await["status"], "cancelled");
    assert_eq!(app.db.count_shipments().await, 4);
}

async fn settled_deliveries_go_with_their_outbound_event_and_pending_ones_stay(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("RETENTION", "2s"), ("DELIVERY_MAX_RETRIES", "50")],
    )
    .await;
    let delivered = Subscriber::start();
    let refused = Subscriber::start();
    refused.answer_always(Answer::Status(400));
    app.subscribe(&delivered.url).await;
    app.subscribe(&refused.url).await;
    app.create_shipment("ORD-SETTLED").await;
    wait_until(30, "both deliveries settled", || async {
        let all = items(&app, "/deliveries").await;
        all.len() == 2 && all.iter().all(|d| d["status"] != "pending")
    })
    .await;
    let down = Subscriber::start();
    down.answer_always(Answer::Status(503));
    app.subscribe(&down.url).await;
    app.create_shipment("ORD-WAITING").await;

    wait_until(30, "the settled outbound event to go", || async {
        app.db.scalar("SELECT COUNT(*) FROM outbox_events").await == 1
    })
    .await;

    let left = items(&app, "/deliveries").await;
    assert_eq!(
        left.len(),
        3,
        "the waiting change's deliveries stay: {left:?}"
    );
    assert!(left.iter().all(|d| d["event_id"] == left[0]["event_id"]));
    assert!(left.iter().any(|d| d["status"] == "pending"));
    let attempts = app
        .db
        .scalar(
            "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id",
        )
        .await;
    assert_eq!(
        attempts,
        app.db
            .scalar("SELECT COUNT(*) FROM delivery_attempts")
            .await,
        "no attempt outlives its delivery"
    );
}

/// The rows `prune` printed for `table`.
fn printed(output: &std::process::Output, table: &str) -> Option<u64> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.split_whitespace().next() == Some(table))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
}

async fn prune_counts_then_removes_what_retention_lets_go(backend: Backend) {
    let app = spawn_app(backend).await;
    post(&app, &with_id(order_event("ORD-PRUNE"), "evt-1")).await;
    post(&app, &with_id(order_event("ORD-PRUNE"), "evt-2")).await;
    post(&app, &json!({"event_type": "order.noted", "data": {}})).await;
    // A closed order: its history goes, its creation and the operator's move.
    let moved = app.create_shipment("ORD-MOVED").await;
    patch(&app, &moved, json!({"status": "cancelled"})).await;
    let url = app.db.url.clone();
    let env = [("DATABASE_URL", url.as_str()), ("RETENTION", "1s")];

    wait_until(30, "the records to pass the horizon", || async {
        let output = run_command(&["prune", "--dry-run"], &env).await;
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("would remove"));
        printed(&output, "processed_events") == Some(3)
            && printed(&output, "shipment_moves") == Some(1)
    })
    .await;
    assert_eq!(app.db.count_events().await, 4, "a dry run removes nothing");

    let pruned = run_command(&["prune"], &env).await;
    let again = run_command(&["prune"], &env).await;
    let off = run_command(
        &["prune"],
        &[("DATABASE_URL", url.as_str()), ("RETENTION", "off")],
    )
    .await;

    assert!(pruned.status.success(), "{pruned:?}");
    assert_eq!(printed(&pruned, "processed_events"), Some(3));
    assert_eq!(printed(&pruned, "shipment_moves"), Some(1));
    assert_eq!(printed(&pruned, "outbox_events"), Some(0));
    assert_eq!(printed(&again, "processed_events"), Some(0));
    assert_eq!(app.db.count_events().await, 1);
    assert_eq!(
        app.db.scalar("SELECT COUNT(*) FROM shipment_moves").await,
        0
    );
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stderr).contains("RETENTION is off"));
}

/// Two instances prune the same rows at once (PostgreSQL lets one pass run at a time): every
/// row goes once, neither fails, and webhooks are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_pruning_at_once_remove_each_row_once() {
    const TWINS: usize = 1200;
    let app = spawn_app(Backend::Postgres).await;
    post(&app, &order_event("ORD-TWINS")).await;
    let twins = futures_util::stream::iter(0..TWINS).map(|n| {
        let (client, address) = (app.client.clone(), app.address.clone());
        async move {
            let body = serde_json::to_vec(&with_id(order_event("ORD-TWINS"), &format!("t{n}")));
            post_signed_to(&client, &address, &body.unwrap())
                .await
                .unwrap()
        }
    });
    let answers: Vec<_> = twins.buffer_unordered(16).collect().await;
    assert!(answers.iter().all(|answer| answer.status() == 200));
    let url = app.db.url.clone();
    let env = [("DATABASE_URL", url.as_str()), ("RETENTION", "1s")];
    wait_until(30, "the twins to pass the horizon", || async {
        let output = run_command(&["prune", "--dry-run"], &env).await;
        printed(&output, "processed_events") == Some(TWINS as u64)
    })
    .await;

    let during = order_event("ORD-DURING");
    let (first, second, during) = tokio::join!(
        run_command(&["prune"], &env),
        run_command(&["prune"], &env),
        post(&app, &during)
    );

    assert!(first.status.success() && second.status.success());
    let removed: u64 = [&first, &second]
        .into_iter()
        .filter_map(|output| printed(output, "processed_events"))
        .sum();
    assert_eq!(removed, TWINS as u64, "{first:?} {second:?}");
    assert_eq!(during.0, 201);
    assert_eq!(app.db.count_events().await, 2);
}

/// Loading an order reads its history and never its other records, however many it has: an
/// instance that starts on an order with hundreds of duplicate records applies an update
/// reading a handful of `processed_events` rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loading_an_order_reads_its_history_not_its_other_records() {
    const TWINS: usize = 600;
    let db = TestDb::create(Backend::Postgres).await;
    let env = test_env(&db);
    let client = reqwest::Client::new();
    let first = ServiceProcess::start(&env);
    db.execute("ALTER TABLE processed_events SET (autovacuum_enabled = false)")
        .await;
    let body = |event: Value| serde_json::to_vec(&event).unwrap();
    post_signed_to(&client, &first.address, &body(order_event("ORD-BUSY")))
        .await
        .unwrap();
    let twins = futures_util::stream::iter(0..TWINS).map(|n| {
        let (client, address) = (client.clone(), first.address.clone());
        let twin = body(with_id(order_event("ORD-BUSY"), &format!("twin-{n}")));
        async move { post_signed_to(&client, &address, &twin).await.unwrap() }
    });
    let answers: Vec<_> = twins.buffer_unordered(16).collect().await;
    assert!(answers.iter().all(|answer| answer.status() == 200));
    // A clean exit: the server publishes each connection's statistics as it closes.
    assert!(first.terminate());
    let rows_read = "SELECT (COALESCE(idx_tup_fetch, 0) + COALESCE(seq_tup_read, 0))::int8 \
                     FROM pg_stat_user_tables WHERE relname = 'processed_events'";
    let before = db.settled_statistic(rows_read).await;

    let second = ServiceProcess::start(&env);
    let update = body(lifecycle_event("order.updated", "ORD-BUSY", None));
    let answer = post_signed_to(&client, &second.address, &update)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(second.terminate());
    let read = db.settled_statistic(rows_read).await - before;

    assert_eq!(db.count_events().await, TWINS as i64 + 2);
    assert!(
        (1..=5).contains(&read),
        "an update of an order with one event and {TWINS} records read {read} event rows"
    );
}

/// Removed rows' space is reused: where the server's autovacuum is off (as on this project's
/// CI), a pass that removed rows vacuums and analyses the tables it changed; where it is on,
/// the pass leaves them to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_pass_vacuums_what_it_removed_where_autovacuum_is_off() {
    let app = spawn_app(Backend::Postgres).await;
    post(&app, &with_id(order_event("ORD-VACUUM"), "evt-1")).await;
    post(&app, &with_id(order_event("ORD-VACUUM"), "evt-2")).await;
    let url = app.db.url.clone();
    let env = [("DATABASE_URL", url.as_str()), ("RETENTION", "1s")];
    wait_until(30, "the duplicate to pass the horizon", || async {
        let output = run_command(&["prune", "--dry-run"], &env).await;
        printed(&output, "processed_events") == Some(1)
    })
    .await;
    let vacuumed = "SELECT COUNT(*) FROM pg_stat_user_tables \
                    WHERE relname = 'processed_events' \
                      AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL";
    assert_eq!(app.db.scalar(vacuumed).await, 0);

    let pruned = run_command(&["prune"], &env).await;

    assert_eq!(printed(&pruned, "processed_events"), Some(1), "{pruned:?}");
    let autovacuum_off = app
        .db
        .scalar("SELECT COUNT(*) FROM pg_settings WHERE name = 'autovacuum' AND setting = 'off'")
        .await
        == 1;
    assert_eq!(app.db.scalar(vacuumed).await, i64::from(autovacuum_off));
    let untouched = "SELECT COUNT(*) FROM pg_stat_user_tables \
                     WHERE relname = 'deliveries' AND last_vacuum IS NOT NULL";
    assert_eq!(
        app.db.scalar(untouched).await,
        0,
        "only the tables it changed"
    );
}

/// The SQL a pass runs lets go exactly what the domain's rules accept
/// (`domain::retention::forgets_record` and `forgets_history`, the latter for an order's events
/// and its operators' moves), over orders in every state:
/// open and closed (by an operator's move), with duplicates and ignored records, some of each
/// last touched long before the horizon and some just now. Drawn from a seed, printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_pass_removes_what_the_domains_rules_accept() {
    use chrono::{DateTime, Utc};
    use rand::{Rng, SeedableRng};
    use shipping_service::domain::retention::{forgets_history, forgets_record};
    use shipping_service::domain::ShipmentStatus;
    use sqlx::Connection;

    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let app = spawn_app(Backend::Postgres).await;
    for n in 0..16 {
        let order = format!("ORD-RULE-{n}");
        let (_, created) = post(&app, &with_id(order_event(&order), &format!("c-{n}"))).await;
        let shipment = created["shipment_id"].as_str().unwrap().to_owned();
        if rng.gen_bool(0.5) {
            post(&app, &with_id(order_event(&order), &format!("twin-{n}"))).await;
        }
        if rng.gen_bool(0.3) {
            let unhandled = json!({"event_type": "order.noted", "id": format!("note-{n}"),
                                   "data": {"order_id": order}});
            post(&app, &unhandled).await;
        }
        if rng.gen_bool(0.5) {
            post(&app, &lifecycle_event("order.updated", &order, None)).await;
        }
        match rng.gen_range(0..3) {
            0 => {}
            1 => patch(&app, &shipment, json!({"status": "cancelled"})).await,
            _ => {
                patch(&app, &shipment, json!({"status": "packed"})).await;
                patch(&app, &shipment, json!({"status": "shipped"})).await;
            }
        }
    }
    // Some records and shipments were last touched two hours ago: far past a one-hour horizon,
    // as the others are far inside it.
    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let events: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM processed_events")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for (seq,) in events {
        if rng.gen_bool(0.6) {
            sqlx::query("UPDATE processed_events SET received_at = received_at - interval '2 hours' WHERE seq = $1")
                .bind(seq).execute(&mut conn).await.unwrap();
        }
    }
    let shipments: Vec<(String,)> = sqlx::query_as("SELECT order_id FROM shipments")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for (order,) in shipments {
        if rng.gen_bool(0.6) {
            sqlx::query("UPDATE shipments SET updated_at = updated_at - interval '2 hours' WHERE order_id = $1")
                .bind(order).execute(&mut conn).await.unwrap();
        }
    }

    let horizon = Utc::now() - chrono::Duration::hours(1);
    let records: Vec<(i64, Option<String>, bool, DateTime<Utc>)> =
        sqlx::query_as("SELECT seq, order_id, in_history, received_at FROM processed_events")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let orders: Vec<(String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT order_id, status, updated_at FROM shipments")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let forgotten_orders: Vec<&str> = orders
        .iter()
        .filter(|(order, status, updated_at)| {
            let last_event = records
                .iter()
                .filter(|(_, of, _, _)| of.as_deref() == Some(order.as_str()))
                .map(|(_, _, _, at)| *at)
                .max();
            forgets_history(
                ShipmentStatus::parse(status).unwrap(),
                *updated_at,
                last_event,
                horizon,
            )
        })
        .map(|(order, _, _)| order.as_str())
        .collect();
    let mut expected: Vec<i64> = records
        .iter()
        .filter(|(_, order, in_history, received_at)| {
            let order_forgotten = order
                .as_deref()
                .is_some_and(|o| forgotten_orders.contains(&o));
            !forgets_record(*in_history, *received_at, horizon) && !order_forgotten
        })
        .map(|(seq, ..)| *seq)
        .collect();
    expected.sort();
    let moves_of =
        "SELECT s.order_id FROM shipment_moves m JOIN shipments s ON s.id = m.shipment_id \
                    ORDER BY m.seq";
    let moves: Vec<String> = sqlx::query_scalar(moves_of)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let expected_moves: Vec<&String> = moves
        .iter()
        .filter(|order| !forgotten_orders.contains(&order.as_str()))
        .collect();

    let url = app.db.url.clone();
    let pruned = run_command(
        &["prune"],
        &[("DATABASE_URL", url.as_str()), ("RETENTION", "1h")],
    )
    .await;
    assert!(pruned.status.success(), "{pruned:?}");
    let mut kept: Vec<i64> = sqlx::query_scalar("SELECT seq FROM processed_events ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    kept.sort();
    assert_eq!(kept, expected, "seed {seed}");
    let kept_moves: Vec<String> = sqlx::query_scalar(moves_of)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        kept_moves.iter().collect::<Vec<_>>(),
        expected_moves,
        "seed {seed}"
    );
    assert!(
        expected.len() < records.len() && !expected.is_empty(),
        "the draw removed some and kept some"
    );
}
