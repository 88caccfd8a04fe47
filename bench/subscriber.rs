//! A subscriber for `bench/run`: answers every delivery as `--answer` says (at once with 200,
//! 500 or 429 with `Retry-After: 1`, or 200 after `--slow-ms`) and keeps, per delivery it
//! answered 2xx, when it arrived, its `webhook-id` and how long it took from the change's
//! commit (the body's `timestamp`). `GET /stats` reports the count, the distinct ids, the first
//! and last arrival, the requests of any answer, and the latency percentiles.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

#[derive(Clone, Copy, ValueEnum)]
enum Answer {
    Ok,
    Fail,
    Busy,
    Slow,
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    #[arg(long, value_enum, default_value = "ok")]
    answer: Answer,
    /// How long `--answer slow` waits before its 200.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
}

#[derive(Default)]
struct Seen {
    /// Arrival times (seconds since the epoch) and commit-to-arrival latencies (ms) of what
    /// was answered 2xx.
    arrivals: Vec<f64>,
    latencies: Vec<f64>,
    ids: HashSet<String>,
    requests: u64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

struct State {
    seen: Mutex<Seen>,
    answer: Answer,
    slow: Duration,
}

async fn receive(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    state.seen.lock().unwrap().requests += 1;
    match state.answer {
        Answer::Fail => return HttpResponse::InternalServerError().finish(),
        Answer::Busy => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "1"))
                .finish()
        }
        Answer::Slow => tokio::time::sleep(state.slow).await,
        Answer::Ok => {}
    }
    let arrived = now();
    let committed = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|event| chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str()?).ok())
        .map(|at| at.timestamp_micros() as f64 / 1e6);
    let id = request
        .headers()
        .get("webhook-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = state.seen.lock().unwrap();
    seen.arrivals.push(arrived);
    seen.ids.insert(id);
    if let Some(committed) = committed {
        seen.latencies.push((arrived - committed) * 1000.0);
    }
    HttpResponse::Ok().finish()
}

async fn stats(state: web::Data<State>) -> HttpResponse {
    let seen = state.seen.lock().unwrap();
    let mut latencies = seen.latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    HttpResponse::Ok().json(json!({
        "count": seen.arrivals.len(), "distinct": seen.ids.len(), "requests": seen.requests,
        "first": seen.arrivals.first(), "last": seen.arrivals.last(),
        "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)?;
    println!("{}", listener.local_addr()?.port());
    let state = web::Data::new(State {
        seen: Mutex::default(),
        answer: args.answer,
        slow: Duration::from_millis(args.slow_ms),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Large enough for a batch of trace spans too (`bench/run traces` exports here).
            .app_data(web::PayloadConfig::new(16 << 20))
            .route("/stats", web::get().to(stats))
            .default_service(web::to(receive))
    })
    .workers(1)
    .listen(listener)?
    .run()
    .await
}
