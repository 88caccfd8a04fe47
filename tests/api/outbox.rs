//! Every change of a shipment is announced to every subscription, at least once, in order per
//! shipment, signed so that a receiver of the contract's section 3 accepts it; failures are
//! retried with the seed's policy, and operators can see and replay deliveries.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, check_deadline, lifecycle_event, spawn_app, spawn_app_with, wait_until,
    Backend, TestApp,
};
use crate::on_both_backends;
use crate::subscriber::{Answer, Subscriber};

on_both_backends!(
    every_change_is_delivered_in_order_and_signed_both_ways,
    a_failing_subscriber_is_retried_honouring_retry_after,
    a_failing_subscriber_is_tried_a_share_at_a_time,
    deliveries_keep_their_connections,
    a_new_subscription_is_served_while_the_others_are_paused,
    a_client_error_fails_at_once_and_retry_delivers_it,
    gone_deactivates_the_subscription,
    after_its_retries_a_delivery_fails_and_recover_queues_it_again,
    a_timeout_is_retried,
    dispatch_off_delivers_nothing,
);

async fn subscribed(app: &TestApp) -> (Subscriber, String) {
    let subscriber = Subscriber::start();
    let (id, secret) = app.subscribe(&subscriber.url).await;
    subscriber.trust(&secret);
    (subscriber, id)
}

async fn patch(app: &TestApp, shipment: &str, body: Value) -> reqwest::Response {
    app.patch_shipment(shipment, &body).await
}

async fn every_change_is_delivered_in_order_and_signed_both_ways(backend: Backend) {
    let app = spawn_app(backend).await;
    let (subscriber, _) = subscribed(&app).await;

    let shipment = app.create_shipment("ORD-OUT").await;
    let mut update = lifecycle_event("order.updated", "ORD-OUT", None);
    update["data"]["customer_id"] = json!("CUST-NEW");
    app.post_event(&update).await;
    assert_eq!(
        patch(&app, &shipment, json!({"status": "packed"}))
            .await
            .status(),
        200
    );
    let shipped = json!({"status": "shipped", "carrier": "DHL", "tracking_number": "JD01"});
    assert_eq!(patch(&app, &shipment, shipped).await.status(), 200);

    let received = subscriber
        .wait_for("four announcements", |received| received.len() >= 4)
        .await;

    let seen: Vec<(String, i64)> = received
        .iter()
        .map(|r| {
            (
                r.body["type"].as_str().unwrap().to_owned(),
                r.body["data"]["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("shipment.created".to_owned(), 1),
            ("shipment.updated".to_owned(), 2),
            ("shipment.status_changed".to_owned(), 3),
            ("shipment.status_changed".to_owned(), 4),
        ]
    );
    for delivery in &received {
        assert!(delivery.verified, "both signatures verify: {delivery:?}");
        assert_eq!(delivery.webhook_id, delivery.body["id"].as_str().unwrap());
    }
    let current = app.get_json(&format!("/shipments/{shipment}")).await;
    assert_eq!(
        received[3].body["data"], current,
        "data is the shipment as served"
    );
    assert_eq!(current["carrier"], "DHL");
    // The dispatcher records a delivery after the subscriber's answer, so a moment later.
    wait_for_delivered(&app, 4).await;
}

async fn a_failing_subscriber_is_retried_honouring_retry_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let (subscriber, _) = subscribed(&app).await;
    subscriber.script(&[Answer::Status(503), Answer::TooMany(2)]);

    app.create_shipment("ORD-RETRY").await;
    let received = subscriber
        .wait_for("the retried delivery", |received| !received.is_empty())
        .await;

    assert_eq!(subscriber.attempts(), 3);
    let listing = app.get_json("/deliveries").await;
    let id = listing["items"][0]["id"].as_str().unwrap().to_owned();
    let delivery = wait_for_status(&app, &id, "delivered").await;
    let codes: Vec<Value> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(503), json!(429), json!(200)]);
    // Delivery ids are UUIDv7 of their creation time: made together, they share index pages.
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let (seconds, _) = uuid.get_timestamp().expect("a UUIDv7").to_unix();
    let created: chrono::DateTime<chrono::Utc> =
        delivery["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    assert!(
        (created.timestamp() - seconds as i64).abs() <= 1,
        "{id} {created}"
    );
    let times: Vec<chrono::DateTime<chrono::Utc>> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["attempted_at"].as_str().unwrap().parse().unwrap())
        .collect();
    // The schedule's second delay is 2 s; Retry-After asked for 2 s as well, no less.
    assert!(times[2] - times[1] >= chrono::Duration::milliseconds(1900));
    assert_eq!(received[0].body["type"], "shipment.created");
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let delivery = app.get_json(&format!("/deliveries/{id}")).await;
        if delivery["status"] == status {
            return delivery;
        }
        crate::helpers::check_deadline(deadline, status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails unless exactly `count` deliveries are recorded as delivered within the deadline.
async fn wait_for_delivered(app: &TestApp, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listing = app.get_json("/deliveries?status=delivered").await;
        let delivered = listing["items"].as_array().unwrap().len();
        assert!(
            delivered <= count,
            "{delivered} delivered, expected {count}"
        );
        if delivered == count {
            return;
        }
        crate::helpers::check_deadline(deadline, "the deliveries recorded as delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn only_delivery(app: &TestApp) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listing = app.get_json("/deliveries").await;
        if let Some(id) = listing["items"][0]["id"].as_str() {
            return id.to_owned();
        }
        crate::helpers::check_deadline(deadline, "a delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Attempts reuse their subscription's connections, though its answers have a body: no more
/// are opened than attempts run at once, however many deliveries go through them.
async fn deliveries_keep_their_connections(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_CONCURRENCY_PER_SUBSCRIPTION", "2")]).await;
    let (subscriber, _) = subscribed(&app).await;
    let orders: Vec<String> = (1..=40).map(|n| format!("ORD-KEPT-{n}")).collect();
    futures_util::future::join_all(orders.iter().map(|order| app.create_shipment(order))).await;
    subscriber
        .wait_for("forty announcements", |received| received.len() >= 40)
        .await;
    // Twice the attempts in flight: a connection may still be on its way back to the pool
    // when the next attempt starts.
    assert!(
        subscriber.connections() <= 4,
        "{} connections for 40 deliveries, at most 2 at a time",
        subscriber.connections()
    );
}

/// While every subscription the dispatcher knows is paused, changes start no round; one made
/// for a subscription created meanwhile is still delivered, without waiting for the others.
async fn a_new_subscription_is_served_while_the_others_are_paused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (failing, _) = subscribed(&app).await;
    failing.answer_always(Answer::Status(500));
    app.create_shipment("ORD-HELD-0").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while failing.attempts() == 0 {
        check_deadline(deadline, "a first failed attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (subscriber, _) = subscribed(&app).await;
    app.create_shipment("ORD-HELD-1").await;
    let received = subscriber
        .wait_for("the new subscription's announcement", |received| {
            !received.is_empty()
        })
        .await;
    assert_eq!(received[0].body["data"]["order_id"], "ORD-HELD-1");
    assert!(failing.received().is_empty());
}

/// A subscriber that fails is tried again one share of its deliveries at a time between its
/// pauses (250 ms, then 500 ms, doubling), not with every delivery that came due meanwhile;
/// once one gets through, the rest follow.
async fn a_failing_subscriber_is_tried_a_share_at_a_time(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_CONCURRENCY_PER_SUBSCRIPTION", "2")]).await;
    let (subscriber, _) = subscribed(&app).await;
    subscriber.answer_always(Answer::Status(500));
    app.create_shipment("ORD-PROBE-0").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed_at = loop {
        if let Some(first) = subscriber.arrivals().first() {
            break *first;
        }
        check_deadline(deadline, "a first attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Once its result is written the subscription is failing, and what comes due waits.
    wait_until(30, "the first attempt's result written", || async {
        app.get_json("/deliveries").await["items"][0]["attempt_count"] == 1
    })
    .await;
    let orders: Vec<String> = (1..=40).map(|n| format!("ORD-PROBE-{n}")).collect();
    futures_util::future::join_all(orders.iter().map(|order| app.create_shipment(order))).await;
    let window = failed_at + Duration::from_secs(2);
    tokio::time::sleep_until(window.into()).await;
    let early = subscriber
        .arrivals()
        .iter()
        .filter(|at| **at < window)
        .count();
    // The first attempt, then rounds of two at 250 ms, 750 ms and 1.75 s at the earliest.
    assert!(early <= 7, "{early} attempts in the first two seconds");

    subscriber.answer_always(Answer::Status(200));
    subscriber
        .wait_for("every order announced", |received| {
            let ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
            ids.len() == orders.len() + 1
        })
        .await;
}

async fn a_client_error_fails_at_once_and_retry_delivers_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (subscriber, _) = subscribed(&app).await;
    subscriber.script(&[Answer::Status(400)]);

    app.create_shipment("ORD-400").await;
    let id = only_delivery(&app).await;
    let failed = wait_for_status(&app, &id, "failed").await;

    assert_eq!(failed["attempt_count"], 1, "a 4xx is not retried");
    assert_eq!(subscriber.attempts(), 1);
    let retried = app
        .call(Method::POST, &format!("/deliveries/{id}/retry"), None)
        .await;
    assert_eq!(retried.status(), 200);
    wait_for_status(&app, &id, "delivered").await;
    assert_eq!(subscriber.received().len(), 1);
    // Only a failed delivery can be retried.
    let again = app
        .call(Method::POST, &format!("/deliveries/{id}/retry"), None)
        .await;
    assert_problem(again, 409).await;
}

async fn gone_deactivates_the_subscription(backend: Backend) {
    let app = spawn_app(backend).await;
    let (subscriber, subscription) = subscribed(&app).await;
    subscriber.script(&[Answer::Status(410)]);

    app.create_shipment("ORD-GONE").await;
    let id = only_delivery(&app).await;
    wait_for_status(&app, &id, "failed").await;

    let after = app
        .get_json(&format!("/subscriptions/{subscription}"))
        .await;
    assert_eq!(after["active"], false);
    assert_eq!(after["deactivated_reason"], "gone");
}

async fn after_its_retries_a_delivery_fails_and_recover_queues_it_again(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_MAX_RETRIES", "1")]).await;
    let (subscriber, subscription) = subscribed(&app).await;
    subscriber.script(&[Answer::Status(500), Answer::Status(500)]);
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);

    app.create_shipment("ORD-RECOVER").await;
    let id = only_delivery(&app).await;
    let failed = wait_for_status(&app, &id, "failed").await;
    assert_eq!(
        failed["attempt_count"], 2,
        "the first attempt and one retry"
    );

    let recovered: Value = app
        .call(
            Method::POST,
            &format!("/subscriptions/{subscription}/recover"),
            Some(&json!({"since": before.to_rfc3339()})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recovered, json!({"queued": 1}));
    wait_for_status(&app, &id, "delivered").await;
    assert!(subscriber.received()[0].verified);
}

async fn a_timeout_is_retried(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_TIMEOUT", "1s")]).await;
    let (subscriber, _) = subscribed(&app).await;
    subscriber.script(&[Answer::Slow(Duration::from_secs(3))]);

    app.create_shipment("ORD-SLOW").await;
    let id = only_delivery(&app).await;
    let delivered = wait_for_status(&app, &id, "delivered").await;

    let attempts = delivered["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts[0]["error"].as_str().unwrap().contains("timed out"));
    assert_eq!(attempts[1]["status_code"], 200);
}

/// Nothing arriving cannot be waited for; what a dispatching instance does in the same time
/// can. Beside the instance with `DISPATCH=off`, a control instance with the dispatcher on
/// (its own database and subscriber) gets the same changes; once the control has delivered
/// and recorded both rounds, the instance that is off has made no delivery at all.
async fn dispatch_off_delivers_nothing(backend: Backend) {
    let off = spawn_app_with(backend, &[("DISPATCH", "off")]).await;
    let control = spawn_app(backend).await;
    let (off_subscriber, _) = subscribed(&off).await;
    let (control_subscriber, _) = subscribed(&control).await;

    for (round, order) in ["ORD-OFF-1", "ORD-OFF-2"].into_iter().enumerate() {
        off.create_shipment(order).await;
        control.create_shipment(order).await;
        control_subscriber
            .wait_for("the control's delivery", |received| received.len() > round)
            .await;
        wait_for_delivered(&control, round + 1).await;
    }

    assert_eq!(off_subscriber.attempts(), 0);
    assert_eq!(
        off.db
            .scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts = 0")
            .await,
        2,
        "owed with the change, for a dispatching instance, never attempted here"
    );
    assert_eq!(
        off.db
            .scalar("SELECT COUNT(*) FROM delivery_attempts")
            .await,
        0
    );
}
