//! The outbound half under operators and a second instance: nothing left `pending` that will
//! not be attempted, no subscription's results lost because of another's, results fenced by
//! their claim, leases that add no index entries on PostgreSQL, no deadlock between instances,
//! and retention that never removes what a writer recorded while it waited.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use shipping_service::domain::DeliveryStatus;
use shipping_service::store::{Open, Settlement, Store};
use sqlx::Connection;

use crate::helpers::{
    lifecycle_event, post_signed_to, run_command, spawn_app, spawn_app_with, start_instance,
    wait_until, Backend, TestApp,
};
use crate::subscriber::{Answer, Subscriber};
use crate::{on_both_backends, on_postgres};

on_both_backends!(
    a_subscription_gone_leaves_no_delivery_pending,
    deactivating_a_subscription_fails_what_it_had_pending_and_recover_waits_for_activation,
    deleting_a_subscription_mid_flight_costs_the_others_nothing,
    a_result_whose_claim_was_lost_changes_nothing,
);

on_postgres!(
    a_claims_lease_adds_no_index_entry,
    two_instances_updating_the_same_orders_never_deadlock,
    retention_keeps_an_event_recorded_while_it_waited,
);

async fn subscribe(app: &TestApp, subscriber: &Subscriber) -> String {
    let (id, secret) = app.subscribe(&subscriber.url).await;
    subscriber.trust(&secret);
    id
}

async fn pending(app: &TestApp) -> Vec<Value> {
    app.get_json("/deliveries?status=pending").await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn move_to(app: &TestApp, shipment: &str, status: &str) {
    let response = app
        .call(
            Method::PATCH,
            &format!("/shipments/{shipment}"),
            Some(&json!({ "status": status })),
        )
        .await;
    assert_eq!(response.status(), 200, "move to {status}");
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn a_subscription_gone_leaves_no_delivery_pending(backend: Backend) {
    let app = spawn_app(backend).await;
    let subscriber = Subscriber::start();
    subscriber.answer_always(Answer::Late(Duration::from_millis(500), 410));
    let subscription = subscribe(&app, &subscriber).await;
    let shipment = app.create_shipment("ORD-GONE").await;

    // Two later changes queue behind the first, whose attempt answers 410.
    move_to(&app, &shipment, "packed").await;
    move_to(&app, &shipment, "cancelled").await;

    wait_until(30, "nothing left pending", || async {
        pending(&app).await.is_empty()
    })
    .await;
    let subscription = app
        .get_json(&format!("/subscriptions/{subscription}"))
        .await;
    assert_eq!(
        (&subscription["active"], &subscription["deactivated_reason"]),
        (&json!(false), &json!("gone"))
    );
    let failed = app.get_json("/deliveries?status=failed").await;
    let failed = failed["items"].as_array().unwrap();
    assert_eq!(failed.len(), 3, "{failed:?}");
    let said_why = failed
        .iter()
        .filter(|delivery| delivery["last_error"] == "subscription inactive (gone)")
        .count();
    assert_eq!(said_why, 2, "the two never attempted say why: {failed:?}");
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "deliveries_pending "), 0.0);
    assert_eq!(subscriber.attempts(), 1);
}

async fn deactivating_a_subscription_fails_what_it_had_pending_and_recover_waits_for_activation(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let subscriber = Subscriber::start();
    // Every attempt is told to come back in an hour: the deliveries stay pending, and once
    // their first results are written no attempt is in flight while the operator acts.
    subscriber.answer_always(Answer::TooMany(3600));
    let subscription = subscribe(&app, &subscriber).await;
    for n in 0..3 {
        app.create_shipment(&format!("ORD-OFF-{n}")).await;
    }
    wait_until(30, "every delivery's first attempt written", || async {
        let waiting = pending(&app).await;
        waiting.len() == 3 && waiting.iter().all(|d| d["attempt_count"] == 1)
    })
    .await;
    let path = format!("/subscriptions/{subscription}");
    let recover = format!("{path}/recover");
    let since = json!({"since": "2000-01-01T00:00:00Z"});

    let off = app
        .call(Method::PATCH, &path, Some(&json!({"active": false})))
        .await;
    assert_eq!(off.status(), 200);
    let left_pending = pending(&app).await;
    let refused = app.call(Method::POST, &recover, Some(&since)).await;
    let on = app
        .call(Method::PATCH, &path, Some(&json!({"active": true})))
        .await;
    assert_eq!(on.status(), 200);
    subscriber.answer_always(Answer::Status(200));
    let recovered: Value = app
        .call(Method::POST, &recover, Some(&since))
        .await
        .json()
        .await
        .unwrap();

    assert!(left_pending.is_empty(), "{left_pending:?}");
    assert_eq!(refused.status(), 409, "recover of an inactive subscription");
    assert_eq!(recovered["queued"], 3);
    subscriber
        .wait_for("the three delivered", |received| received.len() >= 3)
        .await;
}

async fn deleting_a_subscription_mid_flight_costs_the_others_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let slow = Subscriber::start();
    slow.answer_always(Answer::Slow(Duration::from_secs(4)));
    let fast = Subscriber::start();
    let slow_id = subscribe(&app, &slow).await;
    subscribe(&app, &fast).await;
    for n in 0..30 {
        app.create_shipment(&format!("ORD-DEL-{n}")).await;
    }
    wait_until(30, "the slow subscriber's attempts in flight", || async {
        slow.in_flight() >= 4
    })
    .await;

    let deleted = app
        .call(Method::DELETE, &format!("/subscriptions/{slow_id}"), None)
        .await;
    let answered = Instant::now();
    assert_eq!(deleted.status(), 204);
    for n in 30..60 {
        app.create_shipment(&format!("ORD-DEL-{n}")).await;
    }

    let received = fast
        .wait_for("every change at the fast subscriber", |received| {
            received
                .iter()
                .map(|r| &r.webhook_id)
                .collect::<HashSet<_>>()
                .len()
                >= 60
        })
        .await;
    wait_until(30, "the slow attempts to come back", || async {
        slow.in_flight() == 0
    })
    .await;
    let distinct: HashSet<&String> = received.iter().map(|r| &r.webhook_id).collect();
    assert_eq!(received.len(), distinct.len(), "a change delivered twice");
    let after = slow.arrivals().iter().filter(|at| **at > answered).count();
    assert_eq!(after, 0, "an attempt started after the DELETE was answered");
    assert!(metric(&app.metrics().await, "deliveries_stale_results_total ") >= 1.0);
    assert_eq!(
        app.db
            .scalar(
                "SELECT COUNT(*) FROM delivery_attempts a WHERE NOT EXISTS \
                       (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)"
            )
            .await,
        0,
        "every recorded attempt belongs to a delivery"
    );
}

/// A lease changes no indexed column, and each page of deliveries keeps room for it: every
/// lease is a HOT update, written beside its row without an entry in any index.
async fn a_claims_lease_adds_no_index_entry(backend: Backend) {
    let app = spawn_app_with(backend, &[("DISPATCH", "off")]).await;
    app.subscribe("http://127.0.0.1:9/hooks").await;
    for n in 0..100 {
        app.create_shipment(&format!("ORD-HOT-{n}")).await;
    }
    let store = Store::connect(&app.db.url, Some(2), Open::Existing)
        .await
        .unwrap();
    let claimed = store
        .claim_deliveries(100, Duration::from_secs(60), 100, &HashMap::new())
        .await
        .unwrap()
        .deliveries;
    assert_eq!(claimed.len(), 100);

    let updates = "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'";
    wait_until(30, "the leases in the statistics", || async {
        app.db.scalar(updates).await >= 100
    })
    .await;
    let hot = "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'";
    assert_eq!(app.db.scalar(hot).await, 100);
}

async fn a_result_whose_claim_was_lost_changes_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("DISPATCH", "off")]).await;
    app.subscribe("http://127.0.0.1:9/hooks").await;
    app.create_shipment("ORD-FENCE").await;
    let store = Store::connect(&app.db.url, Some(2), Open::Existing)
        .await
        .unwrap();
    while store.fan_out().await.unwrap() {}
    let claim = || async {
        store
            .claim_deliveries(10, Duration::from_millis(1), 8, &HashMap::new())
            .await
            .unwrap()
            .deliveries
    };
    let first = claim().await;
    assert_eq!(first.len(), 1);
    // The first lease runs out and another claim takes the delivery over.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = claim().await;
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].claim, second[0].claim);
    let result = |claimed: &shipping_service::store::Claimed, status| Settlement {
        id: claimed.id,
        subscription_id: claimed.subscription_id,
        claim: claimed.claim,
        status,
        attempts: claimed.attempts + 1,
        next_attempt_at: chrono::Utc::now(),
        attempted_at: chrono::Utc::now(),
        status_code: Some(200),
        error: None,
        duration: Duration::from_millis(3),
        gone: false,
    };
    let far = chrono::DateTime::<chrono::Utc>::MIN_UTC;

    let late = store
        .settle(&[result(&first[0], DeliveryStatus::Failed)], far)
        .await
        .unwrap();
    let held = store
        .settle(&[result(&second[0], DeliveryStatus::Delivered)], far)
        .await
        .unwrap();
    let later = store
        .settle(&[result(&first[0], DeliveryStatus::Failed)], far)
        .await
        .unwrap();

    assert!(late.stale.contains(&first[0].id));
    assert!(held.stale.is_empty());
    assert!(later.stale.contains(&first[0].id));
    let delivery = app.get_json(&format!("/deliveries/{}", first[0].id)).await;
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1);
}

async fn two_instances_updating_the_same_orders_never_deadlock(backend: Backend) {
    let app = spawn_app(backend).await;
    let other = start_instance(&app.db, &[]).await;
    let addresses = [app.address.clone(), other];
    const ORDERS: usize = 12;
    const UPDATES: usize = 480;
    for order in 0..ORDERS {
        app.create_shipment(&format!("ORD-LOCK-{order}")).await;
    }
    let deadlocks = || {
        app.db
            .scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    };
    let before = deadlocks().await;

    // 48 senders; update j goes to order j % 12 as its version 2 + j / 12.
    let statuses = join_all((0..48).map(|sender| {
        let client = app.client.clone();
        let addresses = addresses.clone();
        async move {
            let mut statuses = Vec::new();
            for j in (sender..UPDATES).step_by(48) {
                let order = format!("ORD-LOCK-{}", j % ORDERS);
                let mut event =
                    lifecycle_event("order.updated", &order, Some(2 + (j / ORDERS) as i64));
                event["data"]["customer_id"] = json!(format!("C-{j}"));
                let body = serde_json::to_vec(&event).unwrap();
                let response = post_signed_to(&client, &addresses[j % 2], &body).await;
                statuses.push(response.unwrap().status().as_u16());
            }
            statuses
        }
    }))
    .await;

    let statuses: Vec<u16> = statuses.into_iter().flatten().collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let last = 2 + (UPDATES / ORDERS - 1) as i64;
    for order in 0..ORDERS {
        let shipment = app.shipment_of(&format!("ORD-LOCK-{order}")).await;
        assert_eq!(shipment["version"], last);
    }
    // Counters reach the statistics within a second of a backend going idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        deadlocks().await,
        before,
        "a deadlock between the instances"
    );
}

async fn retention_keeps_an_event_recorded_while_it_waited(backend: Backend) {
    let app = spawn_app_with(backend, &[("RETENTION", "off")]).await;
    app.create_shipment("ORD-RACE").await;
    app.post_event(&lifecycle_event("order.cancelled", "ORD-RACE", Some(2)))
        .await;
    // The order is closed; past a one-second horizon it is untouched.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut holder = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let mut hold = holder.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM shipments WHERE order_id = 'ORD-RACE' FOR UPDATE")
        .execute(&mut *hold)
        .await
        .unwrap();

    // A stale event waits for the row; then a retention pass waits behind it.
    let stale_body =
        serde_json::to_vec(&lifecycle_event("order.updated", "ORD-RACE", Some(1))).unwrap();
    let writer = {
        let (client, address, body) = (app.client.clone(), app.address.clone(), stale_body.clone());
        tokio::spawn(async move { post_signed_to(&client, &address, &body).await.unwrap() })
    };
    let waiting = |n: i64| {
        let db = &app.db;
        async move {
            db.scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                       AND wait_event_type = 'Lock'",
            )
            .await
                >= n
        }
    };
    wait_until(30, "the writer waiting for the row", || waiting(1)).await;
    let url = app.db.url.clone();
    let pass = tokio::spawn(async move {
        run_command(&["prune"], &[("DATABASE_URL", &url), ("RETENTION", "1s")]).await
    });
    wait_until(30, "the pass waiting too", || waiting(2)).await;
    hold.commit().await.unwrap();
    let answer: Value = writer.await.unwrap().json().await.unwrap();
    let pass = pass.await.unwrap();

    assert!(pass.status.success(), "{pass:?}");
    assert_eq!(answer["status"], "stale");
    let again: Value = app.post_signed(&stale_body).await.json().await.unwrap();
    assert_eq!(
        again["status"], "duplicate",
        "the stale event's record was kept"
    );
}
