//! Where deliveries may go (contract section 10): only public addresses unless an operator
//! allowed a network; never through a redirect; never with a password in a log line or a
//! record; a fair share of attempts per subscription; and a subscription that only fails is
//! deactivated, until an operator turns it on again.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, check_deadline, order_event, post_signed_to, run_command, spawn_app,
    spawn_app_with, test_env, wait_until, Backend, ServiceProcess, TestApp, TestDb, TOKEN,
};
use crate::subscriber::{Answer, Subscriber};
use crate::{before_the_database, on_both_backends};

before_the_database!(a_subscription_to_a_refused_address_is_422);

on_both_backends!(
    a_name_that_resolves_to_the_loopback_is_never_connected_to,
    an_allowed_network_is_delivered_to_through_its_name,
    a_redirect_fails_the_attempt_and_is_not_followed,
    a_slow_subscriber_holds_at_most_its_share_of_attempts,
    a_subscription_failing_too_long_is_deactivated_until_turned_on,
);

async fn a_subscription_to_a_refused_address_is_422(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_ALLOW_NETS", "")]).await;
    let (allowed, _) = app.subscribe("https://8.8.8.8/hooks").await;
    for url in [
        "http://127.0.0.1/x",
        "http://127.1.2.3:8080/x",
        "http://10.0.0.1/x",
        "http://172.16.5.4/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
        "http://240.0.0.1/x",
        "http://2130706433/x",
        "http://[::1]/x",
        "http://[::]/x",
        "http://[fe80::1]/x",
        "http://[fd00::1]/x",
        "http://[ff02::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://[64:ff9b::a9fe:a9fe]/x",
        "http://user:pw@10.1.1.1/x",
    ] {
        let created = app
            .call(Method::POST, "/subscriptions", Some(&json!({"url": url})))
            .await;
        let problem = assert_problem(created, 422).await;
        assert_eq!(problem["errors"][0]["field"], "url", "{url}");
        let changed = app
            .call(
                Method::PATCH,
                &format!("/subscriptions/{allowed}"),
                Some(&json!({"url": url})),
            )
            .await;
        assert_problem(changed, 422).await;
    }
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM subscriptions").await, 1);
}

/// A listener on the loopback that counts the connections it accepts.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Listener {
    fn start() -> Listener {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in socket.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Listener { port, accepted }
    }
}

async fn the_only_delivery(app: &TestApp, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listing = app.get_json("/deliveries").await;
        let found = &listing["items"][0];
        if found["status"] == status {
            return app
                .get_json(&format!("/deliveries/{}", found["id"].as_str().unwrap()))
                .await;
        }
        check_deadline(deadline, "the delivery to settle");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn a_name_that_resolves_to_the_loopback_is_never_connected_to(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_ALLOW_NETS", "")]).await;
    let listener = Listener::start();
    app.subscribe(&format!("http://localhost:{}/hooks", listener.port))
        .await;

    app.create_shipment("ORD-LOCAL").await;
    let delivery = the_only_delivery(&app, "failed").await;

    assert_eq!(delivery["attempt_count"], 1, "refused at once, no retries");
    assert_eq!(delivery["attempts"][0]["error"], "address not allowed");
    assert_eq!(listener.accepted.load(Ordering::SeqCst), 0);
}

async fn an_allowed_network_is_delivered_to_through_its_name(backend: Backend) {
    let app = spawn_app_with(backend, &[("DELIVERY_ALLOW_NETS", "127.0.0.0/8,::1/128")]).await;
    let subscriber = Subscriber::start();
    let url = subscriber.url.replace("127.0.0.1", "localhost");
    let (_, secret) = app.subscribe(&url).await;
    subscriber.trust(&secret);

    app.create_shipment("ORD-ALLOWED").await;

    let received = subscriber
        .wait_for("the delivery", |received| !received.is_empty())
        .await;
    assert!(received[0].verified);
}

async fn a_redirect_fails_the_attempt_and_is_not_followed(backend: Backend) {
    let app = spawn_app(backend).await;
    let target = Subscriber::start();
    let redirecting = Subscriber::start();
    let target_port = target.url.split(':').nth(2).unwrap();
    let target_port: u16 = target_port.split('/').next().unwrap().parse().unwrap();
    redirecting.answer_always(Answer::Redirect(target_port));
    app.subscribe(&redirecting.url).await;

    app.create_shipment("ORD-REDIRECT").await;
    let delivery = the_only_delivery(&app, "failed").await;

    assert_eq!(delivery["attempt_count"], 1);
    assert_eq!(delivery["attempts"][0]["status_code"], 302);
    assert_eq!(target.attempts(), 0, "the redirect's target saw nothing");
}

async fn a_slow_subscriber_holds_at_most_its_share_of_attempts(backend: Backend) {
    const SHIPMENTS: usize = 100;
    let app = spawn_app(backend).await;
    let slow = Subscriber::start();
    slow.answer_always(Answer::Slow(std::time::Duration::from_secs(8)));
    let fast = Subscriber::start();
    app.subscribe(&slow.url).await;
    let (_, secret) = app.subscribe(&fast.url).await;
    fast.trust(&secret);

    for n in 0..SHIPMENTS {
        app.create_shipment(&format!("ORD-SHARE-{n}")).await;
    }
    fast.wait_for("every delivery to the fast subscriber", |received| {
        received.len() >= SHIPMENTS
    })
    .await;

    let most = slow.most_in_flight();
    assert!(
        (1..=8).contains(&most),
        "the slow one had at most its share: {most}"
    );
    assert_eq!(fast.received().len(), SHIPMENTS);
}

async fn a_subscription_failing_too_long_is_deactivated_until_turned_on(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("DELIVERY_DISABLE_AFTER", "2s"),
            ("DELIVERY_MAX_RETRIES", "20"),
        ],
    )
    .await;
    let failing = Subscriber::start();
    failing.answer_always(Answer::Status(503));
    let (id, _) = app.subscribe(&failing.url).await;
    let path = format!("/subscriptions/{id}");

    app.create_shipment("ORD-FAILING").await;
    wait_until(60, "the subscription to be deactivated", || async {
        app.get_json(&path).await["active"] == false
    })
    .await;

    let deactivated = app.get_json(&path).await;
    assert_eq!(deactivated["deactivated_reason"], "failing");
    let status = run_command(&["status"], &[("DATABASE_URL", app.db.url.as_str())]).await;
    let printed = String::from_utf8(status.stdout).unwrap();
    let section = printed
        .split("subscriptions (active, or why not):")
        .nth(1)
        .unwrap();
    assert!(
        section
            .lines()
            .any(|line| line.split_whitespace().eq(["failing", "1"])),
        "{printed}"
    );
    let attempts = failing.attempts();
    assert!(
        attempts >= 2,
        "deactivated after failing for a while: {attempts}"
    );
    let on = app
        .call(Method::PATCH, &path, Some(&json!({"active": true})))
        .await;
    let on: Value = on.json().await.unwrap();
    assert_eq!(
        (&on["active"], &on["deactivated_reason"]),
        (&json!(true), &Value::Null)
    );
    let off = app
        .call(Method::PATCH, &path, Some(&json!({"active": false})))
        .await;
    let off: Value = off.json().await.unwrap();
    assert_eq!(off["deactivated_reason"], "operator");
}

/// A password in a subscription URL reaches the receiver and nowhere else: not the service's
/// log (at debug), not the attempts it records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_url_appears_in_no_log_line_and_no_attempt() {
    let db = TestDb::create(Backend::Sqlite).await;
    let mut env = test_env(&db);
    env.insert("RUST_LOG".into(), "debug".into());
    let env_for_start = env.clone();
    let service = tokio::task::spawn_blocking(move || ServiceProcess::start(&env_for_start))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let created: Value = client
        .post(format!("{}/subscriptions", service.address))
        .bearer_auth(TOKEN)
        .json(&json!({"url": format!("http://alice:s3cretpw@127.0.0.1:{closed}/hooks")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["id"].is_string());
    let body = serde_json::to_vec(&order_event("ORD-PASSWORD")).unwrap();
    post_signed_to(&client, &service.address, &body)
        .await
        .unwrap();

    let get = |path: String| {
        let client = client.clone();
        async move {
            let answer = client.get(path).bearer_auth(TOKEN).send().await.unwrap();
            answer.json::<Value>().await.unwrap()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let attempts = loop {
        let listing = get(format!("{}/deliveries", service.address)).await;
        if let Some(id) = listing["items"][0]["id"].as_str() {
            let delivery = get(format!("{}/deliveries/{id}", service.address)).await;
            if !delivery["attempts"].as_array().unwrap().is_empty() {
                break delivery["attempts"].clone();
            }
        }
        check_deadline(deadline, "a failed attempt");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    let recorded = attempts.to_string();
    assert!(recorded.contains("connection failed"), "{recorded}");
    assert!(!recorded.contains("s3cretpw"), "{recorded}");
    let log = service.log();
    assert!(log.iter().any(|line| line.contains("subscription created")));
    let leaks: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("s3cretpw"))
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");
}
