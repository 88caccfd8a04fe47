//! The outbox through crashes: 1,000 changes (500 orders created, then updated) through two
//! service processes on one PostgreSQL, each SIGKILLed once while it is delivering. Every
//! change reaches the subscriber at least once, and for each shipment the first receipt of
//! each change comes in the order of its revisions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{
    check_deadline, lifecycle_event, post_signed_to, test_env, Backend, ServiceProcess, TestDb,
    TOKEN,
};
use crate::subscriber::{Answer, Subscriber};

const ORDERS: usize = 500;

async fn start(env: &HashMap<String, String>) -> ServiceProcess {
    let env = env.clone();
    tokio::task::spawn_blocking(move || ServiceProcess::start(&env))
        .await
        .unwrap()
}

/// Posts `body` to one of `addresses` until one answers 2xx.
async fn deliver(client: &reqwest::Client, addresses: &[String], body: Vec<u8>, seed: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for attempt in seed.. {
        let address = &addresses[attempt % addresses.len()];
        if let Ok(response) = post_signed_to(client, address, &body).await {
            if response.status().is_success() {
                return;
            }
        }
        check_deadline(deadline, "an acknowledged change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_dispatchers_killed_during_dispatch_lose_no_change() {
    let db = TestDb::create(Backend::Postgres).await;
    let env = test_env(&db);
    let subscriber = Subscriber::start();
    // Slow enough that both processes are still delivering when they are killed.
    subscriber.answer_always(Answer::Slow(Duration::from_millis(100)));
    let mut processes = vec![start(&env).await, start(&env).await];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let created: Value = client
        .post(format!("{}/subscriptions", processes[0].address))
        .bearer_auth(TOKEN)
        .json(&json!({"url": subscriber.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    subscriber.trust(created["secret"].as_str().unwrap());
    let addresses: Vec<String> = processes.iter().map(|p| p.address.clone()).collect();

    for event_type in ["order.created", "order.updated"] {
        let bodies = (0..ORDERS).map(|n| {
            let mut event = lifecycle_event(event_type, &format!("ORD-DISPATCH-{n}"), None);
            event["data"]["customer_id"] = json!(format!("C-{event_type}"));
            serde_json::to_vec(&event).unwrap()
        });
        join_all(
            bodies
                .enumerate()
                .map(|(n, body)| deliver(&client, &addresses, body, n)),
        )
        .await;
    }
    for (victim, threshold) in [(0, 200), (1, 500)] {
        subscriber
            .wait_for("deliveries before a kill", |received| {
                received.len() >= threshold
            })
            .await;
        processes.remove(victim).kill();
        processes.insert(victim, start(&env).await);
    }

    let written: HashSet<String> = db
        .strings("SELECT CAST(id AS TEXT) FROM outbox_events")
        .await
        .into_iter()
        .collect();
    assert_eq!(written.len(), 2 * ORDERS, "one announcement per change");
    let received = subscriber
        .wait_for("every change", |received| {
            let ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
            written.iter().all(|id| ids.contains(id.as_str()))
        })
        .await;
    let mut first_revisions: HashMap<String, Vec<i64>> = HashMap::new();
    let mut seen = HashSet::new();
    for delivery in &received {
        assert!(delivery.verified);
        if seen.insert(delivery.webhook_id.clone()) {
            first_revisions
                .entry(delivery.body["data"]["id"].as_str().unwrap().to_owned())
                .or_default()
                .push(delivery.body["data"]["revision"].as_i64().unwrap());
        }
    }
    assert_eq!(first_revisions.len(), ORDERS);
    for (shipment, revisions) in &first_revisions {
        assert_eq!(revisions, &[1, 2], "in order for shipment {shipment}");
    }
    eprintln!(
        "{} deliveries for {} changes: {} duplicates from attempts whose answer was lost",
        received.len(),
        written.len(),
        received.len() - written.len()
    );
}
