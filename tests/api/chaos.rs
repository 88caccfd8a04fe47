//! The guarantee under faults: real service processes are SIGKILLed and restarted, or lose
//! their database, while senders that retry until they get a 2xx deliver every event one to
//! three times. The verdict is on the end state only: exactly one shipment per order, every
//! acknowledged event id recorded, and (for whole order histories delivered in a shuffled
//! order) every shipment equal to the fold of its order's events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{
    check_deadline, lifecycle_event, order_event, post_signed_to, spawn_app, test_env, Backend,
    ServiceProcess, TestDb, TOKEN,
};

const ORDERS: usize = 1000;
const SENDERS: usize = 16;
/// Pause between a sender's attempts: pacing only, no verdict depends on it.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long one delivery may keep failing before the test gives up on the service.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// What the senders share: work, the live instances, and what they were told.
#[derive(Default)]
struct Run {
    queue: Mutex<VecDeque<Vec<u8>>>,
    addresses: RwLock<Vec<String>>,
    /// Every acknowledged event id, with the answer's status.
    acknowledged: Mutex<Vec<(String, String)>>,
    unavailable: AtomicUsize,
}

impl Run {
    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }
}

/// Every order one to three times; a quarter of the repeats under a second event id; copies
/// of one order next to each other in the queue so that they are in flight together.
fn deliveries() -> VecDeque<Vec<u8>> {
    let mut queue = VecDeque::new();
    for order in 0..ORDERS {
        let copies = 1 + order % 3;
        for copy in 0..copies {
            let mut event = order_event(&format!("ORD-CHAOS-{order}"));
            if order % 4 == 0 {
                event["id"] = json!(format!("evt-{order}-{}", copy.min(1)));
            }
            queue.push_back(serde_json::to_vec(&event).unwrap());
        }
    }
    queue
}

/// Delivers from the queue until it is empty, each body retried until a 2xx.
async fn sender(run: Arc<Run>, client: reqwest::Client, seed: usize) {
    let mut attempt = seed;
    loop {
        let Some(body) = run.queue.lock().unwrap().pop_front() else {
            return;
        };
        let deadline = std::time::Instant::now() + GIVE_UP_AFTER;
        loop {
            check_deadline(deadline, "a delivery to be acknowledged");
            attempt += 1;
            let address = {
                let addresses = run.addresses.read().unwrap();
                addresses.get(attempt % addresses.len().max(1)).cloned()
            };
            let Some(address) = address else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let response = post_signed_to(&client, &address, &body).await;
            if let Ok(response) = response {
                let status = response.status().as_u16();
                match status {
                    200..=202 => {
                        if let Ok(receipt) = response.json::<Value>().await {
                            let id = receipt["event_id"].as_str().unwrap().to_owned();
                            let answer = receipt["status"].as_str().unwrap().to_owned();
                            run.acknowledged.lock().unwrap().push((id, answer));
                            break;
                        }
                    }
                    500.. => {
                        run.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => panic!("a valid delivery got {status}"),
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

fn start_senders(run: &Arc<Run>) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (0..SENDERS)
        .map(|n| tokio::spawn(sender(run.clone(), client.clone(), n)))
        .collect()
}

async fn wait_for_acknowledged(run: &Run, count: usize) {
    let deadline = std::time::Instant::now() + GIVE_UP_AFTER;
    while run.acknowledged() < count && !run.queue.lock().unwrap().is_empty() {
        check_deadline(deadline, "acknowledgements");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Which acknowledged events must still be recorded at the end.
#[derive(Clone, Copy)]
enum Kept {
    /// All of them: nothing was old enough for retention.
    Every,
    /// Those of an order's history: the other records may have passed `RETENTION`.
    History,
}

async fn assert_exactly_once(db: &TestDb, run: &Run, orders: usize, kept: Kept) {
    assert_eq!(
        db.count_shipments().await,
        orders as i64,
        "one shipment per order"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT order_id) FROM shipments")
            .await,
        orders as i64
    );
    let recorded: HashSet<String> = db
        .strings("SELECT event_id FROM processed_events")
        .await
        .into_iter()
        .collect();
    let acknowledged = run.acknowledged.lock().unwrap();
    let history = ["processed", "updated", "stale", "parked"];
    let missing: Vec<&(String, String)> = acknowledged
        .iter()
        .filter(|(_, answer)| matches!(kept, Kept::Every) || history.contains(&answer.as_str()))
        .filter(|(id, _)| !recorded.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not recorded: {missing:?}"
    );
}

async fn start(env: &std::collections::HashMap<String, String>) -> ServiceProcess {
    let env = env.clone();
    tokio::task::spawn_blocking(move || ServiceProcess::start(&env))
        .await
        .unwrap()
}

/// `instances` processes share the database; each is killed and restarted `kills` times
/// while senders deliver `queue`. Returns once every delivery was acknowledged.
async fn kill_and_restart_under_load(
    backend: Backend,
    instances: usize,
    kills: usize,
    queue: VecDeque<Vec<u8>>,
    overrides: &[(&str, &str)],
) -> (TestDb, Arc<Run>) {
    let db = TestDb::create(backend).await;
    let mut env = test_env(&db);
    for (name, value) in overrides {
        env.insert(name.to_string(), value.to_string());
    }
    let run = Arc::new(Run {
        queue: Mutex::new(queue),
        ..Run::default()
    });
    let total = run.queue.lock().unwrap().len();
    let mut processes = Vec::new();
    for _ in 0..instances {
        processes.push(start(&env).await);
    }
    *run.addresses.write().unwrap() = processes.iter().map(|p| p.address.clone()).collect();
    let senders = start_senders(&run);

    let rounds = instances * kills;
    for round in 0..rounds {
        wait_for_acknowledged(&run, (round + 1) * total / (rounds + 1)).await;
        let victim = round % instances;
        // SIGKILL with requests in flight, then a restart on the same database.
        let dead = processes.remove(victim);
        run.addresses
            .write()
            .unwrap()
            .retain(|a| *a != dead.address);
        dead.kill();
        processes.insert(victim, start(&env).await);
        run.addresses
            .write()
            .unwrap()
            .push(processes[victim].address.clone());
    }
    for sender in senders {
        sender.await.unwrap();
    }

    assert_eq!(run.acknowledged(), total);
    (db, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_killed_and_restarted_apply_every_order_once() {
    let (db, run) =
        kill_and_restart_under_load(Backend::Postgres, 2, 2, deliveries(), BESIDE_A_PASS).await;
    assert_exactly_once(&db, &run, ORDERS, Kept::History).await;
}

/// A retention pass every second beside the senders, removing records older than two.
const BESIDE_A_PASS: &[(&str, &str)] = &[("RETENTION", "2s")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_instance_killed_and_restarted_applies_every_order_once() {
    let (db, run) =
        kill_and_restart_under_load(Backend::Sqlite, 1, 3, deliveries(), BESIDE_A_PASS).await;
    assert_exactly_once(&db, &run, ORDERS, Kept::History).await;
}

const HISTORIES: usize = 200;

/// Each order's whole history, every event versioned as a sender numbers them: created,
/// two updates, and in one order of five a cancellation between them. Every event is sent
/// once or twice, a quarter of the creations have a twin under another id, and the whole
/// queue is shuffled. Returns the queue and, per order, the shipment its history folds to
/// (`customer|status|version|cancel_reason`), worked out here from the contract's rule.
fn shuffled_histories() -> (VecDeque<Vec<u8>>, HashMap<String, String>) {
    let mut events = Vec::new();
    let mut expected = HashMap::new();
    for n in 0..HISTORIES {
        let order = format!("ORD-LIFE-{n}");
        let customer = |version: i64| format!("C-{n}-v{version}");
        let state = |event_type: &str, version: i64| {
            let mut event = lifecycle_event(event_type, &order, Some(version));
            event["data"]["customer_id"] = json!(customer(version));
            event
        };
        let mut history = vec![state("order.created", 1), state("order.updated", 2)];
        if n % 5 == 0 {
            let mut cancel = lifecycle_event("order.cancelled", &order, Some(3));
            cancel["data"]["reason"] = json!(format!("reason {n}"));
            history.push(cancel);
            history.push(state("order.updated", 4));
            // The first cancellation decides, with the state from before it.
            expected.insert(
                order.clone(),
                format!("{}|cancelled|3|reason {n}", customer(2)),
            );
        } else {
            history.push(state("order.updated", 3));
            expected.insert(order.clone(), format!("{}|pending|3|", customer(3)));
        }
        if n % 4 == 0 {
            let mut twin = state("order.created", 1);
            twin["id"] = json!(format!("twin-{n}"));
            history.push(twin);
        }
        for (index, event) in history.into_iter().enumerate() {
            let copies = 1 + (n + index) % 2;
            for _ in 0..copies {
                events.push(serde_json::to_vec(&event).unwrap());
            }
        }
    }
    events.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    (events.into(), expected)
}

async fn assert_every_shipment_is_its_fold(db: &TestDb, expected: &HashMap<String, String>) {
    let rows = db
        .strings(
            "SELECT order_id || '=' || customer_id || '|' || status || '|' || version || '|' \
                    || COALESCE(cancel_reason, '') FROM shipments",
        )
        .await;
    let actual: HashMap<String, String> = rows
        .into_iter()
        .map(|row| {
            let (order, shipment) = row.split_once('=').unwrap();
            (order.to_owned(), shipment.to_owned())
        })
        .collect();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(order, shipment)| actual.get(*order) != Some(shipment))
        .map(|(order, shipment)| (order, shipment, actual.get(order)))
        .collect();
    assert!(wrong.is_empty(), "(order, expected, actual): {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shuffled_histories_through_two_instances_with_kills_end_as_their_fold() {
    let (queue, expected) = shuffled_histories();
    let (db, run) = kill_and_restart_under_load(Backend::Postgres, 2, 1, queue, &[]).await;
    assert_exactly_once(&db, &run, HISTORIES, Kept::Every).await;
    assert_every_shipment_is_its_fold(&db, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shuffled_histories_through_a_killed_instance_end_as_their_fold() {
    let (queue, expected) = shuffled_histories();
    let (db, run) = kill_and_restart_under_load(Backend::Sqlite, 1, 2, queue, &[]).await;
    assert_exactly_once(&db, &run, HISTORIES, Kept::Every).await;
    assert_every_shipment_is_its_fold(&db, &expected).await;
}

/// PostgreSQL goes away under load (new connections refused, the service's terminated) and
/// comes back; the service answers 503 meanwhile and recovers without a restart. Not run on
/// SQLite: an embedded database has no server to lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load_gives_503s_then_recovers_with_every_order_once() {
    let app = spawn_app(Backend::Postgres).await;
    let run = Arc::new(Run {
        queue: Mutex::new(deliveries()),
        ..Run::default()
    });
    *run.addresses.write().unwrap() = vec![app.address.clone()];
    let senders = start_senders(&run);
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&crate::helpers::admin_url())
        .await
        .unwrap();

    for threshold in [300, 900] {
        wait_for_acknowledged(&run, threshold).await;
        let before = run.unavailable.load(Ordering::Relaxed);
        sqlx::query(&format!(
            r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false"#
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        // Keep the database away until senders have seen it (no timing in the verdict).
        let deadline = std::time::Instant::now() + GIVE_UP_AFTER;
        while run.unavailable.load(Ordering::Relaxed) < before + SENDERS {
            check_deadline(deadline, "senders to see the outage");
            sqlx::query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .execute(&mut admin)
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sqlx::query(&format!(
            r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS true"#
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
    for sender in senders {
        sender.await.unwrap();
    }

    assert!(run.unavailable.load(Ordering::Relaxed) >= 2 * SENDERS);
    assert_exactly_once(&app.db, &run, ORDERS, Kept::Every).await;
}

/// Two instances that start at the same moment on a fresh database both migrate and serve
/// (sqlx serialises PostgreSQL migrations on an advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_starting_together_both_serve() {
    let db = TestDb::create(Backend::Postgres).await;
    let env = test_env(&db);

    let (first, second) = tokio::join!(start(&env), start(&env));

    let client = reqwest::Client::new();
    for process in [&first, &second] {
        let ready = client
            .get(format!("{}/readyz", process.address))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    let applied = db
        .scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .await;
    assert_eq!(applied, migrations as i64, "each migration applied once");
}

/// Two instances take turns on one order, an operator between them. Each turn after the first
/// finds the order changed since its instance last wrote it: the guard on the order's head
/// refuses the write from memory, the order is read again, and the answer still comes at the
/// first attempt (no order is held by the other instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_taking_turns_on_one_order_never_wait_for_each_other() {
    let db = TestDb::create(Backend::Postgres).await;
    let env = test_env(&db);
    let (first, second) = tokio::join!(start(&env), start(&env));
    let client = reqwest::Client::new();
    let order = "ORD-TURNS";
    let post = |process: &ServiceProcess, event: Value| {
        let (client, address) = (client.clone(), process.address.clone());
        async move {
            let body = serde_json::to_vec(&event).unwrap();
            let response = post_signed_to(&client, &address, &body).await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (status, created) = post(&first, lifecycle_event("order.created", order, Some(1))).await;
    assert_eq!(status, 201);
    let (status, _) = post(&second, lifecycle_event("order.updated", order, Some(2))).await;
    assert_eq!(status, 200);
    let (status, _) = post(&first, lifecycle_event("order.updated", order, Some(3))).await;
    assert_eq!(status, 200);
    let moved = client
        .patch(format!(
            "{}/shipments/{}",
            second.address,
            created["shipment_id"].as_str().unwrap()
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"status": "packed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let (status, _) = post(&first, lifecycle_event("order.cancelled", order, Some(4))).await;
    assert_eq!(status, 200);
    assert_eq!(
        db.strings("SELECT status FROM shipments").await,
        ["cancelled"],
        "every turn applied"
    );
    assert!(
        writer_races(&client, &first.address).await >= 2,
        "the first instance wrote twice over changes it had not seen"
    );
}

/// Batches an instance applied again after another writer changed their orders first.
async fn writer_races(client: &reqwest::Client, address: &str) -> u64 {
    let text = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("writer_races_total "))
        .expect("writer_races_total is exported")
        .parse()
        .unwrap()
}

/// Two instances race on two orders' updates: senders post versions 2..=UPDATES of both orders
/// to both instances at once, so each instance keeps writing over changes the other made, and
/// batches hold both orders in either order. Every answer is a 2xx, every event is recorded
/// once, each shipment ends at its highest version, and the races were real (the instances
/// counted writes their guard refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_racing_on_the_same_orders_end_at_their_fold() {
    const UPDATES: i64 = 150;
    const SENDERS_PER_INSTANCE: i64 = 4;
    const ORDERS: [&str; 2] = ["ORD-RACE-A", "ORD-RACE-B"];
    let db = TestDb::create(Backend::Postgres).await;
    let env = test_env(&db);
    let (first, second) = tokio::join!(start(&env), start(&env));
    let client = reqwest::Client::new();
    let post = |address: String, event: Value| {
        let client = client.clone();
        async move {
            let body = serde_json::to_vec(&event).unwrap();
            post_signed_to(&client, &address, &body)
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for order in ORDERS {
        let created = lifecycle_event("order.created", order, Some(1));
        assert_eq!(post(first.address.clone(), created).await, 201);
    }

    let senders = (0..2 * SENDERS_PER_INSTANCE).map(|sender| {
        let address = [&first, &second][(sender % 2) as usize].address.clone();
        let post = &post;
        async move {
            let mut statuses = Vec::new();
            let mut version = 2 + sender;
            while version <= UPDATES {
                // One sender takes the orders in turn, the next the other way round.
                let mut orders = ORDERS;
                if (sender + version) % 2 == 0 {
                    orders.reverse();
                }
                let posts = orders.map(|order| {
                    let mut event = lifecycle_event("order.updated", order, Some(version));
                    event["data"]["customer_id"] = json!(format!("{order}-v{version}"));
                    post(address.clone(), event)
                });
                statuses.extend(futures_util::future::join_all(posts).await);
                version += 2 * SENDERS_PER_INSTANCE;
            }
            statuses
        }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();

    assert_eq!(statuses.len(), 2 * (UPDATES as usize - 1));
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(
        db.strings("SELECT customer_id || '|' || version FROM shipments ORDER BY order_id")
            .await,
        ORDERS.map(|order| format!("{order}-v{UPDATES}|{UPDATES}"))
    );
    assert_eq!(
        db.strings("SELECT count(DISTINCT event_id)::text FROM processed_events")
            .await,
        [(2 * UPDATES).to_string()]
    );
    let races =
        writer_races(&client, &first.address).await + writer_races(&client, &second.address).await;
    assert!(
        races > 0,
        "the instances never wrote over each other's changes"
    );
}
