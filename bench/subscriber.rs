//! A fast subscriber for `bench/run`: answers every delivery 200 at once and keeps, per
//! delivery, how long it took from the change's commit (the body's `timestamp`) to arrival.
//! `GET /stats` reports the count, the first and last arrival, and the latency percentiles.

use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[derive(Default)]
struct Seen {
    /// Arrival times (seconds since the epoch) and commit-to-arrival latencies (ms).
    arrivals: Vec<f64>,
    latencies: Vec<f64>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn receive(body: web::Bytes, seen: web::Data<Mutex<Seen>>) -> HttpResponse {
    let arrived = now();
    let committed = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|event| chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str()?).ok())
        .map(|at| at.timestamp_micros() as f64 / 1e6);
    let mut seen = seen.lock().unwrap();
    seen.arrivals.push(arrived);
    if let Some(committed) = committed {
        seen.latencies.push((arrived - committed) * 1000.0);
    }
    HttpResponse::Ok().finish()
}

async fn stats(seen: web::Data<Mutex<Seen>>) -> HttpResponse {
    let seen = seen.lock().unwrap();
    let mut latencies = seen.latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    HttpResponse::Ok().json(json!({
        "count": seen.arrivals.len(),
        "first": seen.arrivals.first(), "last": seen.arrivals.last(),
        "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)?;
    println!("{}", listener.local_addr()?.port());
    let seen = web::Data::new(Mutex::new(Seen::default()));
    HttpServer::new(move || {
        App::new()
            .app_data(seen.clone())
            .route("/stats", web::get().to(stats))
            .default_service(web::to(receive))
    })
    .workers(1)
    .listen(listener)?
    .run()
    .await
}
