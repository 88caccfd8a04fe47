//! An order's whole life (contract section 3a): created, updated and cancelled, in any arrival
//! order, each event applied once and the shipment always the fold of what was recorded.

use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, lifecycle_event, order_event, post_signed_to, problem_fields, spawn_app,
    spawn_app_with, test_env, Backend, ServiceProcess, TestApp, TestDb,
};
use crate::on_both_backends;

on_both_backends!(
    an_update_changes_the_shipment_and_raises_its_revision,
    a_cancellation_before_the_creation_parks_then_the_shipment_appears_cancelled,
    an_update_before_the_creation_creates_the_shipment_with_the_newer_state,
    an_old_update_after_a_newer_one_is_stale,
    a_later_cancellation_does_not_undo_the_first,
    a_redelivered_update_is_a_duplicate_of_the_same_shipment,
    an_order_history_can_be_read_back,
    bad_lifecycle_events_are_422_and_store_nothing,
    the_readme_examples_answer_as_the_readme_says,
);

async fn post(app: &TestApp, event: &Value) -> (u16, Value) {
    let response = app.post_event(event).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn with_customer(mut event: Value, customer: &str) -> Value {
    event["data"]["customer_id"] = json!(customer);
    event
}

async fn an_update_changes_the_shipment_and_raises_its_revision(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, created) = post(&app, &lifecycle_event("order.created", "ORD-U", None)).await;
    let mut update = with_customer(lifecycle_event("order.updated", "ORD-U", None), "CUST-NEW");
    update["data"]["shipping_address"]["city"] = json!("Newtown");

    let (status, receipt) = post(&app, &update).await;

    assert_eq!(status, 200);
    assert_eq!(receipt["status"], "updated");
    assert_eq!(receipt["shipment_id"], created["shipment_id"]);
    let shipment = app.shipment_of("ORD-U").await;
    assert_eq!(shipment["customer_id"], "CUST-NEW");
    assert_eq!(shipment["shipping_address"]["city"], "Newtown");
    assert_eq!(shipment["version"], 2, "placed after the creation");
    assert_eq!(shipment["revision"], 2);
    assert_eq!(shipment["status"], "pending");
    assert_eq!(shipment["cancel_reason"], Value::Null);
    assert_eq!(shipment["carrier"], Value::Null);
    assert_eq!(shipment["tracking_number"], Value::Null);
    assert_eq!(app.db.count_shipments().await, 1);
}

async fn a_cancellation_before_the_creation_parks_then_the_shipment_appears_cancelled(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut cancel = lifecycle_event("order.cancelled", "ORD-C", Some(2));
    cancel["data"]["reason"] = json!("customer request");

    let (status, parked) = post(&app, &cancel).await;

    assert_eq!(status, 202);
    assert_eq!(
        parked,
        json!({"status": "parked", "event_id": "order.cancelled:ORD-C:v2"})
    );
    assert_eq!(app.db.count_shipments().await, 0);

    let (status, created) = post(&app, &lifecycle_event("order.created", "ORD-C", None)).await;

    assert_eq!(status, 201);
    assert_eq!(created["status"], "processed");
    let shipment = app.shipment_of("ORD-C").await;
    assert_eq!(shipment["id"], created["shipment_id"]);
    assert_eq!(shipment["status"], "cancelled", "never shipped");
    assert_eq!(shipment["cancel_reason"], "customer request");
    assert_eq!(shipment["version"], 2);
    assert_eq!(shipment["customer_id"], "CUST987");
    // The parked cancellation, redelivered, now names the shipment.
    let (status, again) = post(&app, &cancel).await;
    assert_eq!((status, &again["status"]), (200, &json!("duplicate")));
    assert_eq!(again["shipment_id"], created["shipment_id"]);
}

async fn an_update_before_the_creation_creates_the_shipment_with_the_newer_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let update = with_customer(
        lifecycle_event("order.updated", "ORD-E", Some(2)),
        "CUST-V2",
    );

    let (status, first) = post(&app, &update).await;
    let (late_status, late) = post(&app, &lifecycle_event("order.created", "ORD-E", None)).await;

    assert_eq!((status, &first["status"]), (201, &json!("processed")));
    assert_eq!((late_status, &late["status"]), (200, &json!("stale")));
    assert_eq!(late["shipment_id"], first["shipment_id"]);
    let shipment = app.shipment_of("ORD-E").await;
    assert_eq!(shipment["customer_id"], "CUST-V2");
    assert_eq!(shipment["version"], 2);
    assert_eq!(
        shipment["revision"], 1,
        "the stale creation changed nothing"
    );
}

async fn an_old_update_after_a_newer_one_is_stale(backend: Backend) {
    let app = spawn_app(backend).await;
    post(&app, &lifecycle_event("order.created", "ORD-O", None)).await;
    let newer = with_customer(
        lifecycle_event("order.updated", "ORD-O", Some(3)),
        "CUST-V3",
    );
    let older = with_customer(
        lifecycle_event("order.updated", "ORD-O", Some(2)),
        "CUST-V2",
    );

    let (_, applied) = post(&app, &newer).await;
    let (status, stale) = post(&app, &older).await;

    assert_eq!(applied["status"], "updated");
    assert_eq!((status, &stale["status"]), (200, &json!("stale")));
    let shipment = app.shipment_of("ORD-O").await;
    assert_eq!(shipment["customer_id"], "CUST-V3");
    assert_eq!(shipment["version"], 3);
}

async fn a_later_cancellation_does_not_undo_the_first(backend: Backend) {
    let app = spawn_app(backend).await;
    post(&app, &lifecycle_event("order.created", "ORD-X", None)).await;
    let mut first = lifecycle_event("order.cancelled", "ORD-X", Some(2));
    first["data"]["reason"] = json!("first");
    let mut second = lifecycle_event("order.cancelled", "ORD-X", Some(4));
    second["data"]["reason"] = json!("second");
    let after = with_customer(
        lifecycle_event("order.updated", "ORD-X", Some(3)),
        "CUST-V3",
    );

    let answers = [
        post(&app, &second).await.1["status"].clone(),
        post(&app, &after).await.1["status"].clone(),
        post(&app, &first).await.1["status"].clone(),
    ];

    // The update at 3 comes before the cancellation at 4 and so still sets its state; the
    // cancellation at 2 then decides, with the state from before it.
    assert_eq!(
        answers,
        [json!("updated"), json!("updated"), json!("updated")]
    );
    let shipment = app.shipment_of("ORD-X").await;
    assert_eq!(shipment["status"], "cancelled");
    assert_eq!(shipment["cancel_reason"], "first");
    assert_eq!(shipment["version"], 2);
    assert_eq!(
        shipment["customer_id"], "CUST987",
        "the state before the cancellation"
    );
}

async fn a_redelivered_update_is_a_duplicate_of_the_same_shipment(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, created) = post(&app, &lifecycle_event("order.created", "ORD-R", None)).await;
    let update = with_customer(lifecycle_event("order.updated", "ORD-R", None), "CUST-R");

    let (_, first) = post(&app, &update).await;
    let (status, again) = post(&app, &update).await;

    assert_eq!(first["status"], "updated");
    assert_eq!((status, &again["status"]), (200, &json!("duplicate")));
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(again["shipment_id"], created["shipment_id"]);
    assert_eq!(app.shipment_of("ORD-R").await["revision"], 2);
    assert_eq!(app.db.count_events().await, 2);
}

async fn an_order_history_can_be_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    post(&app, &lifecycle_event("order.created", "ORD-H", None)).await;
    post(&app, &lifecycle_event("order.updated", "ORD-H", Some(3))).await;
    post(&app, &lifecycle_event("order.updated", "ORD-H", Some(2))).await;
    post(&app, &lifecycle_event("order.created", "ORD-OTHER", None)).await;

    let history = app.get_json("/events?order_id=ORD-H").await;
    let stale = app.get_json("/events?outcome=stale").await;

    let rows: Vec<(Value, Value)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| (event["version"].clone(), event["outcome"].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (json!(2), json!("stale")),
            (json!(3), json!("updated")),
            (json!(1), json!("processed"))
        ],
        "newest first"
    );
    assert_eq!(stale["items"].as_array().unwrap().len(), 1);
    assert_eq!(stale["items"][0]["event_id"], "order.updated:ORD-H:v2");
}

/// In reject mode (`INVALID_EVENTS=reject`); quarantine mode keeps such events (quarantine.rs).
async fn bad_lifecycle_events_are_422_and_store_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("INVALID_EVENTS", "reject")]).await;
    let mut zero = lifecycle_event("order.updated", "ORD-B", None);
    zero["data"]["version"] = json!(0);
    let mut fraction = lifecycle_event("order.cancelled", "ORD-B", None);
    fraction["data"]["version"] = json!(1.5);
    let bare_update = json!({"event_type": "order.updated", "timestamp": "2023-10-27T10:00:00Z",
                             "data": {"order_id": "ORD-B", "items": []}});
    let mut reason = lifecycle_event("order.cancelled", "ORD-B", None);
    reason["data"]["reason"] = json!(["not", "a", "string"]);
    let cases = [
        (zero, vec!["data.version"]),
        (fraction, vec!["data.version"]),
        (
            bare_update,
            vec!["data.customer_id", "data.items", "data.shipping_address"],
        ),
        (reason, vec!["data.reason"]),
    ];

    for (event, expected) in cases {
        let problem = assert_problem(app.post_event(&event).await, 422).await;
        assert_eq!(problem_fields(&problem), expected);
    }
    assert_eq!(app.db.count_events().await, 0);
    assert_eq!(app.db.count_shipments().await, 0);
}

async fn the_readme_examples_answer_as_the_readme_says(backend: Backend) {
    let app = spawn_app(backend).await;
    let example = |name: &str| {
        std::fs::read(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let mut answers = Vec::new();

    for name in [
        "order-cancelled.json",
        "order-created.json",
        "order-updated.json",
        "order-created.json",
    ] {
        let response = app.post_signed(&example(name)).await;
        let status = response.status().as_u16();
        let receipt: Value = response.json().await.unwrap();
        answers.push((status, receipt["status"].as_str().unwrap().to_owned()));
    }

    let expected = [
        (202, "parked"),
        (201, "processed"),
        // Version 2 comes before the cancellation (3), so its state is the one kept.
        (200, "updated"),
        (200, "duplicate"),
    ];
    assert_eq!(
        answers,
        expected.map(|(code, status)| (code, status.to_owned()))
    );
    let shipment = app.shipment_of("ORD12345").await;
    assert_eq!(shipment["status"], "cancelled");
    assert_eq!(shipment["version"], 3);
    assert_eq!(shipment["items"], json!([{"sku": "SKU001", "quantity": 3}]));
}

/// Loading a batch's orders reads those orders' rows, however many are stored, even before
/// autovacuum has analysed the tables (a new database, a bulk import, the first minute of
/// load): without statistics PostgreSQL's planner guessed thousands of rows per key and hashed
/// every shipment for each batch. Shown by the heap rows read from `shipments` by an instance
/// that starts on the stored orders and updates some of them, several to a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loading_an_order_reads_only_its_own_rows_before_the_tables_are_analysed() {
    const STORED: usize = 12_000;
    const UPDATED: usize = 64;
    let db = TestDb::create(Backend::Postgres).await;
    let env = test_env(&db);
    let client = reqwest::Client::new();
    let first = ServiceProcess::start(&env);
    db.execute("ALTER TABLE shipments SET (autovacuum_enabled = false)")
        .await;
    db.execute("ALTER TABLE processed_events SET (autovacuum_enabled = false)")
        .await;
    let senders = (0..16).map(|sender| {
        let (client, address) = (client.clone(), first.address.clone());
        async move {
            for n in (sender..STORED).step_by(16) {
                let body = serde_json::to_vec(&order_event(&format!("ORD-STORED-{n}"))).unwrap();
                let response = post_signed_to(&client, &address, &body).await.unwrap();
                assert_eq!(response.status(), 201);
            }
        }
    });
    futures_util::future::join_all(senders).await;
    // A clean exit: the server publishes each connection's statistics as it closes.
    assert!(first.terminate());
    let rows_read = "SELECT (COALESCE(idx_tup_fetch, 0) + COALESCE(seq_tup_read, 0))::int8 \
                     FROM pg_stat_user_tables WHERE relname = 'shipments'";
    let before = db.settled_statistic(rows_read).await;

    let second = ServiceProcess::start(&env);
    let updates = (0..16).map(|sender| {
        let (client, address) = (client.clone(), second.address.clone());
        async move {
            for n in (sender..UPDATED).step_by(16) {
                let update = lifecycle_event("order.updated", &format!("ORD-STORED-{n}"), None);
                let body = serde_json::to_vec(&update).unwrap();
                let response = post_signed_to(&client, &address, &body).await.unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    });
    futures_util::future::join_all(updates).await;
    assert!(second.terminate());
    let read = db.settled_statistic(rows_read).await - before;

    assert_eq!(db.count_shipments().await, STORED as i64);
    assert!(
        (UPDATED as i64..=4 * UPDATED as i64).contains(&read),
        "{UPDATED} updates read {read} shipment rows of {STORED} stored"
    );
}
