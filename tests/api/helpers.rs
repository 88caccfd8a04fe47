//! Starts the real service on a random port against a fresh database and talks HTTP to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use reqwest::Url;
use serde_json::{json, Value};
use shipping_service::config::{Config, LogFormat};
use shipping_service::signature::{sign_hex, sign_standard, Secret};
use shipping_service::startup::App;
use shipping_service::telemetry;
use sqlx::Connection;
use tempfile::TempDir;

pub const SECRET: &str = "s3cr3t_k3y_f0r_w3bh00k_s1gn4tur3";
/// A second accepted secret (rotation), in the Standard Webhooks form.
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const TOKEN: &str = "test-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Emits one test for each named `async fn(Backend)`, on SQLite: for behaviour that happens
/// before the database is involved (signatures, media types, HTTP limits), where a second
/// backend would prove nothing more.
#[macro_export]
macro_rules! before_the_database {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn once() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
        }
    )*};
}

/// Emits a `sqlite` and a `postgres` test for each named `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// Emits a `postgres` test for each named `async fn(Backend)`: for what only several instances
/// on one database can show.
#[macro_export]
macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// A fresh database: a SQLite file in a temporary folder, or `test_<uuid>` on the PostgreSQL
/// server of `TEST_DATABASE_URL`. Dropped (folder or database) with this value.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _folder: Option<TempDir>,
    pg: Option<(String, String)>,
}

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("temporary folder");
                let url = format!("sqlite://{}/shipping.db", folder.path().display());
                TestDb {
                    backend,
                    url,
                    _folder: Some(folder),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = admin_url();
                let name = format!("test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.expect(
                    "PostgreSQL must be running for the postgres tests (TEST_DATABASE_URL)",
                );
                sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let mut url = Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                TestDb {
                    backend,
                    url: url.to_string(),
                    _folder: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }

    /// One number from the database, read over a connection of the test's own.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    /// A statistic of PostgreSQL's (`sql` reads `pg_stat_*`) once every other connection to the
    /// database has ended and its counts have been published: read again until two reads
    /// 200 ms apart agree, so that a stopped service's last work is in it.
    pub async fn settled_statistic(&self, sql: &str) -> i64 {
        let others = "SELECT COUNT(*) FROM pg_stat_activity \
                      WHERE datname = current_database() AND pid <> pg_backend_pid()";
        wait_until(30, "the service's connections to end", || async {
            self.scalar(others).await == 0
        })
        .await;
        let mut last = self.scalar(sql).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let now = self.scalar(sql).await;
            if now == last {
                return now;
            }
            check_deadline(deadline, "the statistics to settle");
            last = now;
        }
    }

    /// Runs one statement over a connection of the test's own.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// One text column of every row.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
            }
        }
    }

    pub async fn count_shipments(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM shipments").await
    }

    pub async fn count_events(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM processed_events").await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on a future: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                    .execute(&mut conn)
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

/// The environment the service is configured from in tests.
pub fn test_env(db: &TestDb) -> HashMap<String, String> {
    [
        ("DATABASE_URL", db.url.as_str()),
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("WEBHOOK_SECRETS", &format!("{SECRET},{WHSEC}")),
        ("API_TOKENS", TOKEN),
        ("LOG_FORMAT", "json"),
        // The tests' subscribers listen on the loopback.
        ("DELIVERY_ALLOW_NETS", "127.0.0.0/8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Runs a subcommand of the real binary (`status`, `prune`, ...) against `db`, with exactly
/// `env` (no secret unless given); killed, failing the test, if it runs past two minutes.
pub async fn run_command(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipping-service"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`shipping-service {}` did not end in two minutes",
                args.join(" ")
            )
        })
        .unwrap()
}

/// Waits until `done` answers `true`, asking every 50 ms, failing after `seconds`.
pub async fn wait_until<F, Fut>(seconds: u64, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !done().await {
        check_deadline(deadline, what);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Logs go nowhere unless `TEST_LOG` is set; the subscriber lives as long as the test binary.
fn init_logs() {
    static GUARD: std::sync::OnceLock<tracing_appender::non_blocking::WorkerGuard> =
        std::sync::OnceLock::new();
    GUARD.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok() {
            telemetry::init(LogFormat::Pretty, std::io::stdout(), None)
        } else {
            telemetry::init(LogFormat::Pretty, std::io::sink(), None)
        }
    });
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the service in this process with extra environment `overrides`.
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(TestDb::create(backend).await, overrides).await
}

/// Starts the service in this process on an existing database.
pub async fn spawn_app_on(db: TestDb, overrides: &[(&str, &str)]) -> TestApp {
    let address = start_instance(&db, overrides).await;
    TestApp {
        address,
        // A service that stops answering fails the test instead of hanging it.
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap(),
        db,
    }
}

/// Starts one more instance of the service in this process on `db`; returns its address.
pub async fn start_instance(db: &TestDb, overrides: &[(&str, &str)]) -> String {
    init_logs();
    let mut env = test_env(db);
    for (name, value) in overrides {
        env.insert(name.to_string(), value.to_string());
    }
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("test configuration");
    let app = App::build(config).await.expect("the service starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    address
}

/// An order event of `event_type` with the seed's data (or only the order id for a
/// cancellation) and, when given, a version.
pub fn lifecycle_event(event_type: &str, order_id: &str, version: Option<i64>) -> Value {
    let mut event = match event_type {
        "order.cancelled" => json!({"event_type": event_type, "timestamp": "2023-10-27T12:00:00Z",
                                    "data": {"order_id": order_id}}),
        _ => {
            let mut event = order_event(order_id);
            event["event_type"] = json!(event_type);
            event
        }
    };
    if let Some(version) = version {
        event["data"]["version"] = json!(version);
    }
    event
}

/// The seed's event for `order_id`, as a sender would serialise it.
pub fn order_event(order_id: &str) -> Value {
    json!({"event_type": "order.created", "timestamp": "2023-10-27T10:00:00Z",
           "data": {"order_id": order_id, "customer_id": "CUST987",
                    "items": [{"sku": "SKU001", "quantity": 2}, {"sku": "SKU005", "quantity": 1}],
                    "shipping_address": {"street": "123 Main St", "city": "Anytown", "zip": "12345"}}})
}

pub fn hex_signature(body: &[u8]) -> String {
    sign_hex(&Secret::parse(SECRET).unwrap(), body)
}

pub fn standard_headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let signature = sign_standard(&Secret::parse(secret).unwrap(), id, timestamp, body);
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

/// POSTs `body` signed with the hex scheme to the service at `address` (`http://host:port`).
pub async fn post_signed_to(
    client: &reqwest::Client,
    address: &str,
    body: &[u8],
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{address}/webhooks/order_events"))
        .header("Content-Type", "application/json")
        .header("X-Ecomm-Signature", hex_signature(body))
        .body(body.to_vec())
        .send()
        .await
}

/// Panics once `deadline` has passed: every wait in a test is bounded, so a broken service
/// fails the test instead of hanging it.
pub fn check_deadline(deadline: std::time::Instant, waiting_for: &str) {
    assert!(
        std::time::Instant::now() < deadline,
        "gave up waiting for {waiting_for}"
    );
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs `body` as JSON with exactly the given extra headers.
    pub async fn post_webhook(
        &self,
        body: impl Into<Vec<u8>>,
        headers: &[(String, String)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/webhooks/order_events"))
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
            .body(body.into())
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs `body` signed with the hex scheme, as the seed's sender does.
    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        post_signed_to(&self.client, &self.address, body)
            .await
            .expect("request sent")
    }

    pub async fn post_event(&self, event: &Value) -> reqwest::Response {
        self.post_signed(&serde_json::to_vec(event).unwrap()).await
    }

    pub async fn get_api(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request sent")
    }

    /// The one shipment of `order_id`, as the API serves it.
    pub async fn shipment_of(&self, order_id: &str) -> Value {
        let listing = self
            .get_json(&format!("/shipments?order_id={order_id}"))
            .await;
        let items = listing["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "one shipment for {order_id}");
        items[0].clone()
    }

    /// Creates `order`'s shipment with the seed's event; returns the shipment's id.
    pub async fn create_shipment(&self, order: &str) -> String {
        let receipt: Value = self
            .post_event(&order_event(order))
            .await
            .json()
            .await
            .unwrap();
        receipt["shipment_id"].as_str().unwrap().to_owned()
    }

    /// A REST call with the bearer token and, when given, a JSON body.
    /// An operator's PATCH of a shipment.
    pub async fn patch_shipment(&self, shipment: &str, body: &Value) -> reqwest::Response {
        self.call(
            reqwest::Method::PATCH,
            &format!("/shipments/{shipment}"),
            Some(body),
        )
        .await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    /// Subscribes `url` to every change; returns the subscription's id and secret.
    pub async fn subscribe(&self, url: &str) -> (String, String) {
        let response = self
            .call(
                reqwest::Method::POST,
                "/subscriptions",
                Some(&json!({"url": url})),
            )
            .await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get_api(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }
}

/// The `field` of each error a 422 problem lists, in its order.
pub fn problem_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("a list of errors")
        .iter()
        .map(|error| error["field"].as_str().expect("a field name"))
        .collect()
}

/// Asserts a problem+json answer with `status`, and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some() && body["title"].as_str().is_some());
    body
}

/// The longest a test waits for a service process to start serving or to exit.
const PROCESS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The service as a real child process, for tests that kill it or read its log.
pub struct ServiceProcess {
    child: Child,
    pub address: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServiceProcess {
    pub fn start(env: &HashMap<String, String>) -> ServiceProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shipping-service"))
            .arg("serve")
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env)
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the service binary");
        // The service logs its port once it is bound. A thread reads the log (and keeps
        // draining it, so the service never blocks on a full pipe); the port comes back over a
        // channel, with a deadline.
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                kept.lock().unwrap().push(line.clone());
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "serving" {
                    let _ = port_tx.send(entry["fields"]["port"].as_u64().unwrap());
                }
            }
        });
        let port = match port_rx.recv_timeout(PROCESS_PATIENCE) {
            Ok(port) => port,
            Err(error) => {
                let _ = child.kill();
                panic!("the service did not start serving: {error}");
            }
        };
        ServiceProcess {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Every line the service has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait (with a deadline) for the process to exit; returns whether it exited
    /// cleanly.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + PROCESS_PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            check_deadline(deadline, "the service to exit after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
