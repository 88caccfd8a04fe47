//! The outbound half against a small model, with generated scripts (as the fold is proven):
//! operators create, deactivate, reactivate and delete subscriptions, move shipments, retry
//! and recover deliveries, while orders arrive, subscribers fail in every way (500, 429 with
//! Retry-After, answers past the timeout, 410, slow, connection refused), the service is
//! SIGKILLed and, on PostgreSQL, two instances share the queue and the database drops every
//! connection. When the script ends every subscription is made healthy, active and recovered,
//! and the end state is compared with the model:
//! - every change written while a subscription was active (and stayed so) reached it, and for
//!   each shipment the first receipts came in revision order;
//! - nothing reached a deleted subscription after its DELETE was answered;
//! - nothing is left `pending`, and no attempt is recorded without its delivery;
//! - no change arrived twice unless an instance was killed or the database dropped its
//!   connections (those are counted and bounded).
//!
//! `DISPATCH_MODEL_SEED=<n>` replays one script; otherwise each run draws its own, printed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    check_deadline, lifecycle_event, order_event, post_signed_to, test_env, Backend,
    ServiceProcess, TestDb, TOKEN,
};
use crate::on_both_backends;
use crate::subscriber::{Answer, Subscriber};

on_both_backends!(the_outbound_half_matches_its_model);

const STEPS: usize = 40;
/// Deliveries one instance holds at most: what a kill may have sent and not settled.
const HELD_PER_INSTANCE: usize = 128;

/// One step of a script.
#[derive(Debug, Clone)]
enum Step {
    Order,
    Update,
    Move,
    Subscribe(Behaviour),
    Deactivate,
    Reactivate,
    Delete,
    Retry,
    Recover,
    Behave(Behaviour),
    Kill,
    DropConnections,
}

/// How a subscriber answers for a while.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    Fails,
    TooMany,
    PastTimeout,
    Slow,
    Gone,
    Refused,
}

impl Behaviour {
    fn draw(rng: &mut StdRng) -> Behaviour {
        use Behaviour::*;
        [Ok, Ok, Fails, TooMany, PastTimeout, Slow, Gone, Refused][rng.gen_range(0..8)]
    }

    /// Whether deliveries to it can end `failed`.
    fn fails(self) -> bool {
        !matches!(self, Behaviour::Ok | Behaviour::Slow)
    }

    fn answer(self) -> Answer {
        match self {
            Behaviour::Ok | Behaviour::Refused => Answer::Status(200),
            Behaviour::Fails => Answer::Status(500),
            Behaviour::TooMany => Answer::TooMany(1),
            Behaviour::PastTimeout => Answer::Late(Duration::from_millis(1500), 503),
            Behaviour::Slow => Answer::Slow(Duration::from_millis(300)),
            Behaviour::Gone => Answer::Status(410),
        }
    }
}

fn script(rng: &mut StdRng, backend: Backend) -> Vec<Step> {
    let mut steps = vec![Step::Subscribe(Behaviour::Ok), Step::Order];
    while steps.len() < STEPS {
        let step = match rng.gen_range(0..20) {
            0..=4 => Step::Order,
            5..=6 => Step::Update,
            7..=8 => Step::Move,
            9 => Step::Subscribe(Behaviour::draw(rng)),
            10 => Step::Deactivate,
            11 => Step::Reactivate,
            12 => Step::Delete,
            13 => Step::Retry,
            14 => Step::Recover,
            15..=16 => Step::Behave(Behaviour::draw(rng)),
            17 => Step::Kill,
            18 if backend == Backend::Postgres => Step::DropConnections,
            _ => Step::Order,
        };
        steps.push(step);
    }
    steps
}

/// A subscription as the model knows it.
struct Sub {
    id: String,
    subscriber: Subscriber,
    deleted_at: Option<Instant>,
    /// Whether a 410 may have deactivated it: what came meanwhile was never its to receive.
    ever_gone: bool,
    /// Whether a delivery of it may have failed (a failing subscriber, a deactivation): an
    /// operator's recover then sends it after later changes, as the contract allows, so its
    /// order is only checked for subscriptions that never failed.
    ever_failed: bool,
    /// The last outbound event written before it last became active: every change written
    /// after is its to receive, unless it was deleted or deactivated since.
    active_since: Option<i64>,
}

struct Run {
    env: HashMap<String, String>,
    processes: Vec<ServiceProcess>,
    client: reqwest::Client,
    rng: StdRng,
    seed: u64,
}

impl Run {
    fn address(&mut self) -> String {
        let n = self.rng.gen_range(0..self.processes.len());
        self.processes[n].address.clone()
    }

    /// Posts a signed webhook until an instance acknowledges it, as a sender retries.
    async fn post(&mut self, event: &Value) {
        let body = serde_json::to_vec(event).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let address = self.address();
            if let Ok(response) = post_signed_to(&self.client, &address, &body).await {
                if response.status().is_success() {
                    return;
                }
            }
            check_deadline(
                deadline,
                &format!("an acknowledged event (seed {})", self.seed),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An operator's call, repeated while the database is away (503) or an instance is.
    async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let address = self.address();
            let mut request = self
                .client
                .request(method.clone(), format!("{address}{path}"))
                .bearer_auth(TOKEN);
            if let Some(body) = &body {
                request = request.json(body);
            }
            if let Ok(response) = request.send().await {
                let status = response.status().as_u16();
                if status != 503 {
                    return (status, response.json().await.unwrap_or(Value::Null));
                }
            }
            check_deadline(
                deadline,
                &format!("an operator's call (seed {})", self.seed),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn restart(&mut self, n: usize) {
        let env = self.env.clone();
        let fresh = tokio::task::spawn_blocking(move || ServiceProcess::start(&env))
            .await
            .unwrap();
        std::mem::replace(&mut self.processes[n], fresh).kill();
    }
}

/// A URL where nothing listens: a connection is refused.
fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hooks", listener.local_addr().unwrap())
}

async fn the_outbound_half_matches_its_model(backend: Backend) {
    let seed = std::env::var("DISPATCH_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("dispatch model, {backend:?}: DISPATCH_MODEL_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let steps = script(&mut rng, backend);
    if std::env::var("DISPATCH_MODEL_SEED").is_ok() {
        eprintln!("{steps:?}");
    }
    let db = TestDb::create(backend).await;
    let mut env = test_env(&db);
    env.insert("DELIVERY_TIMEOUT".into(), "1s".into());
    env.insert("DELIVERY_MAX_RETRIES".into(), "2".into());
    let instances = if backend == Backend::Postgres { 2 } else { 1 };
    let mut processes = Vec::new();
    for _ in 0..instances {
        let env = env.clone();
        processes.push(
            tokio::task::spawn_blocking(move || ServiceProcess::start(&env))
                .await
                .unwrap(),
        );
    }
    let mut run = Run {
        env,
        processes,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        rng,
        seed,
    };
    let mut subs: Vec<Sub> = Vec::new();
    let mut orders: Vec<(String, String)> = Vec::new();
    let mut interruptions = 0;

    for step in &steps {
        match step {
            Step::Order => {
                let order = format!("ORD-MODEL-{}", orders.len());
                run.post(&order_event(&order)).await;
                let (_, listing) = run
                    .call(Method::GET, &format!("/shipments?order_id={order}"), None)
                    .await;
                let shipment = listing["items"][0]["id"].as_str().unwrap().to_owned();
                orders.push((order, shipment));
            }
            Step::Update if !orders.is_empty() => {
                let (order, _) = orders[run.rng.gen_range(0..orders.len())].clone();
                let mut event = lifecycle_event("order.updated", &order, None);
                event["data"]["customer_id"] = json!(format!("C-{}", run.rng.gen::<u16>()));
                run.post(&event).await;
            }
            Step::Move if !orders.is_empty() => {
                let (_, shipment) = orders[run.rng.gen_range(0..orders.len())].clone();
                let to = ["packed", "shipped", "delivered"][run.rng.gen_range(0..3)];
                // An illegal move is a 409 and changes nothing: the model needs no more.
                run.call(
                    Method::PATCH,
                    &format!("/shipments/{shipment}"),
                    Some(json!({ "status": to })),
                )
                .await;
            }
            Step::Subscribe(behaviour) => {
                let subscriber = Subscriber::start();
                subscriber.answer_always(behaviour.answer());
                let url = match behaviour {
                    Behaviour::Refused => refusing_url(),
                    _ => subscriber.url.clone(),
                };
                let (status, created) = run
                    .call(Method::POST, "/subscriptions", Some(json!({ "url": url })))
                    .await;
                assert_eq!(status, 201, "seed {seed}");
                subscriber.trust(created["secret"].as_str().unwrap());
                subs.push(Sub {
                    id: created["id"].as_str().unwrap().to_owned(),
                    subscriber,
                    deleted_at: None,
                    ever_gone: matches!(behaviour, Behaviour::Gone),
                    ever_failed: behaviour.fails(),
                    active_since: Some(last_change(&db).await),
                });
            }
            Step::Deactivate | Step::Reactivate if !subs.is_empty() => {
                let n = run.rng.gen_range(0..subs.len());
                if subs[n].deleted_at.is_some() {
                    continue;
                }
                let active = matches!(step, Step::Reactivate);
                // Deactivation fails what it had pending.
                subs[n].ever_failed |= !active;
                let (status, patched) = run
                    .call(
                        Method::PATCH,
                        &format!("/subscriptions/{}", subs[n].id),
                        Some(json!({ "active": active })),
                    )
                    .await;
                assert_eq!(status, 200, "seed {seed}");
                subs[n].active_since = if active && patched["active"] == true {
                    Some(last_change(&db).await)
                } else {
                    None
                };
            }
            Step::Delete if subs.len() > 1 => {
                let n = run.rng.gen_range(0..subs.len());
                if subs[n].deleted_at.is_some() {
                    continue;
                }
                let (status, _) = run
                    .call(
                        Method::DELETE,
                        &format!("/subscriptions/{}", subs[n].id),
                        None,
                    )
                    .await;
                assert_eq!(status, 204, "seed {seed}");
                subs[n].deleted_at = Some(Instant::now());
            }
            Step::Retry => {
                let (_, failed) = run
                    .call(Method::GET, "/deliveries?status=failed&limit=5", None)
                    .await;
                if let Some(delivery) = failed["items"].as_array().and_then(|items| items.first()) {
                    let id = delivery["id"].as_str().unwrap().to_owned();
                    let (status, _) = run
                        .call(Method::POST, &format!("/deliveries/{id}/retry"), None)
                        .await;
                    // Queued, or refused: its subscription is inactive, or it moved on.
                    assert!(matches!(status, 200 | 404 | 409), "seed {seed}: {status}");
                }
            }
            Step::Recover if !subs.is_empty() => {
                let id = subs[run.rng.gen_range(0..subs.len())].id.clone();
                let (status, _) = run
                    .call(
                        Method::POST,
                        &format!("/subscriptions/{id}/recover"),
                        Some(json!({"since": "2000-01-01T00:00:00Z"})),
                    )
                    .await;
                assert!(matches!(status, 200 | 404 | 409), "seed {seed}: {status}");
            }
            Step::Behave(behaviour) if !subs.is_empty() => {
                let n = run.rng.gen_range(0..subs.len());
                subs[n].subscriber.answer_always(behaviour.answer());
                subs[n].ever_gone |= matches!(behaviour, Behaviour::Gone);
                subs[n].ever_failed |= behaviour.fails();
            }
            Step::Kill => {
                let n = run.rng.gen_range(0..run.processes.len());
                run.restart(n).await;
                interruptions += 1;
            }
            Step::DropConnections => {
                db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .await;
                interruptions += 1;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(run.rng.gen_range(0..60))).await;
    }

    // Settle: every subscriber healthy, every subscription that is left active and recovered.
    let live: Vec<&Sub> = subs.iter().filter(|s| s.deleted_at.is_none()).collect();
    for sub in &live {
        sub.subscriber.answer_always(Answer::Status(200));
        let path = format!("/subscriptions/{}", sub.id);
        let url = sub.subscriber.url.clone();
        let (status, _) = run
            .call(
                Method::PATCH,
                &path,
                Some(json!({ "active": true, "url": url })),
            )
            .await;
        assert_eq!(status, 200, "seed {seed}");
        let (status, _) = run
            .call(
                Method::POST,
                &format!("{path}/recover"),
                Some(json!({"since": "2000-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(status, 200, "seed {seed}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = db
            .scalar(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered') \
                      + (SELECT COUNT(*) FROM outbox_events WHERE NOT fanned_out)",
            )
            .await;
        if left == 0 {
            break;
        }
        check_deadline(deadline, &format!("every delivery delivered (seed {seed})"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The end state against the model.
    let changes = db.scalar("SELECT COUNT(*) FROM outbox_events").await;
    let mut duplicates = 0;
    for sub in &live {
        let received = sub.subscriber.received();
        let ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
        duplicates += received.len() - ids.len();
        assert!(received.iter().all(|r| r.verified), "seed {seed}");
        let owed = db
            .strings(&format!(
                "SELECT {} FROM deliveries WHERE subscription_id = {}",
                uuid_text(&db, "event_id"),
                uuid_literal(&db, &sub.id)
            ))
            .await;
        for event in &owed {
            assert!(
                ids.contains(event.as_str()),
                "seed {seed}: {event} never arrived"
            );
        }
        if let (Some(since), false) = (&sub.active_since, sub.ever_gone) {
            let written_since = db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM outbox_events o WHERE o.seq > {since} \
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = o.id \
                     AND d.subscription_id = {})",
                    uuid_literal(&db, &sub.id)
                ))
                .await;
            assert_eq!(
                written_since, 0,
                "seed {seed}: a change written while active got no delivery"
            );
        }
        let mut last: HashMap<&str, i64> = HashMap::new();
        let mut seen = HashSet::new();
        for delivery in received.iter().filter(|_| !sub.ever_failed) {
            if !seen.insert(delivery.webhook_id.as_str()) {
                continue;
            }
            let shipment = delivery.body["data"]["id"].as_str().unwrap();
            let revision = delivery.body["data"]["revision"].as_i64().unwrap();
            let before = last.insert(shipment, revision).unwrap_or(0);
            assert!(
                revision > before,
                "seed {seed}: revision {revision} after {before}"
            );
        }
    }
    assert!(changes > 0);
    for sub in subs.iter().filter(|s| s.deleted_at.is_some()) {
        let deleted = sub.deleted_at.unwrap();
        // Another instance drops what it holds for a deleted subscription at its next poll.
        let grace = if instances > 1 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        let late = sub
            .subscriber
            .arrivals()
            .iter()
            .filter(|at| **at > deleted + grace)
            .count();
        assert_eq!(
            late, 0,
            "seed {seed}: attempts reached a deleted subscription"
        );
    }
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM delivery_attempts a WHERE NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)"
        )
        .await,
        0,
        "seed {seed}: an attempt without its delivery"
    );
    assert!(
        duplicates <= interruptions * HELD_PER_INSTANCE,
        "seed {seed}: {duplicates} duplicates after {interruptions} kills or drops"
    );
    eprintln!(
        "dispatch model, {backend:?}, seed {seed}: {} steps, {} changes, {} subscriptions \
         ({} deleted), {interruptions} kills or drops, {duplicates} duplicates",
        steps.len(),
        changes,
        subs.len(),
        subs.len() - live.len()
    );
}

/// The seq of the last outbound event written so far.
async fn last_change(db: &TestDb) -> i64 {
    db.scalar("SELECT COALESCE(MAX(seq), 0) FROM outbox_events")
        .await
}

/// A UUID column as hyphenated text (SQLite keeps UUIDs as 16-byte blobs).
fn uuid_text(db: &TestDb, column: &str) -> String {
    match db.backend {
        Backend::Postgres => format!("CAST({column} AS TEXT)"),
        Backend::Sqlite => {
            let part = |from, len| format!("substr(hex({column}), {from}, {len})");
            format!(
                "lower({} || '-' || {} || '-' || {} || '-' || {} || '-' || {})",
                part(1, 8),
                part(9, 4),
                part(13, 4),
                part(17, 4),
                part(21, 12)
            )
        }
    }
}

/// A UUID as a literal of the database's column type.
fn uuid_literal(db: &TestDb, id: &str) -> String {
    match db.backend {
        Backend::Postgres => format!("'{id}'"),
        Backend::Sqlite => format!("x'{}'", id.replace('-', "")),
    }
}
