//! Wires configuration, store and routes into a running HTTP server.

use crate::telemetry::traces;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::web;
use anyhow::Context;
use tracing::Instrument;

use crate::config::Config;
use crate::console;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::prune;
use crate::routes;
use crate::state::AppState;
use crate::store::{Open, Store};

/// How long a stopping server waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct App {
    address: std::net::SocketAddr,
    server: Server,
    store: Store,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    pruner: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Binds `config.listen_addr`, connects to the database and runs migrations. The port
    /// comes first: a taken port stops start-up before the database is touched.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listener = TcpListener::bind(config.listen_addr)
            .with_context(|| format!("LISTEN_ADDR: cannot bind {}", config.listen_addr))?;
        let store = Store::connect(
            &config.database.url.0,
            config.database.max_connections,
            Open::CreateIfMissing,
        )
        .await
        .context("DATABASE_URL: cannot open the database")?;
        store
            .migrate()
            .await
            .context("DATABASE_URL: migrations failed")?;
        tracing::info!(database = %store.describe(), "database opened, migrations applied");
        App::with_listener(config, store, listener)
    }

    /// Serves on an already-bound listener (tests bind port 0 and read the port back).
    pub fn with_listener(
        config: Config,
        store: Store,
        listener: TcpListener,
    ) -> anyhow::Result<App> {
        let address = listener.local_addr()?;
        let metrics = Metrics::default();
        let egress = crate::dispatch::egress::Egress::new(config.delivery.allow_nets.clone());
        let allowed = egress.allowed_networks();
        if allowed.is_empty() {
            tracing::info!("deliveries reach only public addresses");
        } else {
            let networks: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            tracing::info!(
                allowed = %networks.join(", "),
                "deliveries may also reach these networks (DELIVERY_ALLOW_NETS)"
            );
        }
        let dispatcher = config.delivery.dispatch.then(|| {
            let dispatcher = Dispatcher::new(store.clone(), &config.delivery, metrics.clone());
            tokio::spawn(dispatcher.run())
        });
        let pruner = config
            .retention
            .keep()
            .map(|_| tokio::spawn(prune::run(store.clone(), config.retention, metrics.clone())));
        for platform in &config.platforms {
            let name = platform.platform.as_str();
            tracing::info!(path = %format!("/webhooks/{name}"), "orders from {name} are received");
        }
        let state = web::Data::new(AppState {
            store: store.clone(),
            verifier: config.verifier,
            platforms: config.platforms,
            api_tokens: config.api_tokens,
            auth_throttle: crate::throttle::AuthThrottle::new(config.auth_failure_limit),
            console_idle_timeout: config.console_idle_timeout,
            console_secure_cookie: config.console_secure_cookie,
            egress: egress.clone(),
            max_body_bytes: config.max_body_bytes,
            invalid_events: config.invalid_events,
            request_timeout: config.request_timeout,
            metrics,
        });
        // actix counts connections per worker thread.
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .wrap(from_fn(observe))
                .app_data(state.clone())
                .configure(console::configure)
                .configure(routes::configure)
        })
        .workers(workers)
        .max_connections(config.max_connections.div_ceil(workers))
        .keep_alive(config.keep_alive)
        // Headers must arrive within the request timeout (else 408); the webhook handler
        // bounds the body by the same timeout.
        .client_request_timeout(config.request_timeout)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .listen(listener)?
        .run();
        Ok(App {
            address,
            server,
            store,
            dispatcher,
            pruner,
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Which database this serves, for people: never with a password.
    pub fn database(&self) -> String {
        self.store.describe()
    }

    /// Serves until SIGINT or SIGTERM, lets requests in flight finish, stops the dispatcher
    /// (an attempt cut short is attempted again by whoever holds its lease next) and the
    /// retention pass (a transaction cut short removed nothing), then closes the database.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        for task in [self.dispatcher, self.pruner].into_iter().flatten() {
            task.abort();
        }
        self.store.close().await;
        served
    }
}

/// One span per request, carrying a request id (the caller's `X-Request-Id` when it sends one)
/// so that every log line of a request can be found together; and the latency metric.
async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 64)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    // The request's span, for its log lines. With traces on, it is also the server span of its
    // trace (the attributes a webhook's handler adds go to the trace alone, not to the logs);
    // off, it is what it always was, so that the logs pay for nothing they do not show.
    let span = if traces::enabled() {
        let span = tracing::info_span!(
            "request",
            %request_id,
            %method,
            %route,
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let headers = request.headers().iter();
        traces::continue_trace(
            &span,
            headers.filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
        );
        traces::record_ids(&span);
        span
    } else {
        tracing::info_span!("request", %request_id, %method, %route)
    };
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    traces::attribute(&span, "http.response.status_code", i64::from(status));
    if let Some(state) = state {
        (state.metrics).request_finished(method, &route, status, started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// Metric labels come from a closed set: a client inventing methods must not create series.
/// (Routes are already closed: a matched pattern, or "unmatched".)
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
