//! Load generator for `bench/run`: `connections` concurrent senders POST validly signed
//! order events (hex scheme) and report throughput and latency as one JSON line.
//!
//! Each sender sends orders `{prefix}-{sender}-{n}`; with `--repeat k` every order is sent k
//! times in a row (a duplicate-heavy mix), with `--distinct m` a sender cycles through its first
//! m orders (after one pass, every request is a duplicate). With `--lifecycle` a sender sends
//! each order's whole history instead: created, two updates and, for one order in five, a
//! cancellation, all versioned and shuffled (so some arrive before the events they follow).
//! With `--close` each order lives to the end: created, updated, then moved by an operator
//! (`--api-token`) to packed, shipped and delivered. `--rate` paces all senders together to
//! that many orders per second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use shipping_service::signature::{sign_hex, Secret};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/order_events")]
    url: String,
    #[arg(long)]
    secret: String,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Stop after this long...
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// ...or after this many requests per sender, whichever comes first.
    #[arg(long, default_value_t = u64::MAX)]
    requests: u64,
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    repeat: u64,
    #[arg(long, default_value_t = u64::MAX)]
    distinct: u64,
    #[arg(long)]
    lifecycle: bool,
    #[arg(long)]
    close: bool,
    /// Bearer token for the operator's moves of `--close`.
    #[arg(long, default_value = "bench")]
    api_token: String,
    /// Orders per second, all senders together (default: as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
}

/// One request of an order's life.
enum Step {
    Event(Value),
    /// An operator's move of the order's shipment (known once its creation is answered).
    Move(Value),
}

fn order_event(event_type: &str, order_id: &str, version: Option<u64>) -> Value {
    let mut event = json!({
        "event_type": event_type, "timestamp": "2023-10-27T10:00:00Z",
        "data": {"order_id": order_id, "customer_id": "CUST987",
                 "items": [{"sku": "SKU001", "quantity": 2}, {"sku": "SKU005", "quantity": 1}],
                 "shipping_address": {"street": "123 Main St", "city": "Anytown", "zip": "12345"}}});
    if let Some(version) = version {
        event["data"]["version"] = json!(version);
        event["data"]["items"][0]["quantity"] = json!(version);
    }
    event
}

/// The next order's steps, in the order this sender takes them.
fn next_steps(args: &Args, index: usize, order: u64) -> Vec<Step> {
    let order_id = format!("{}-{index}-{order}", args.prefix);
    if args.close {
        let mut updated = order_event("order.updated", &order_id, None);
        updated["data"]["customer_id"] = json!("CUST-UPDATED");
        return vec![
            Step::Event(order_event("order.created", &order_id, None)),
            Step::Event(updated),
            Step::Move(json!({"status": "packed"})),
            Step::Move(json!({"status": "shipped", "carrier": "DHL", "tracking_number": "JD1"})),
            Step::Move(json!({"status": "delivered"})),
        ];
    }
    next_events(args, index, order)
        .into_iter()
        .map(Step::Event)
        .collect()
}

/// The next order's events, in the order this sender posts them.
fn next_events(args: &Args, index: usize, order: u64) -> Vec<Value> {
    let order_id = format!("{}-{index}-{order}", args.prefix);
    if !args.lifecycle {
        return vec![order_event("order.created", &order_id, None)];
    }
    let mut events = vec![
        order_event("order.created", &order_id, Some(1)),
        order_event("order.updated", &order_id, Some(2)),
        order_event("order.updated", &order_id, Some(3)),
    ];
    if order.is_multiple_of(5) {
        events.push(json!({"event_type": "order.cancelled",
                           "data": {"order_id": order_id, "version": 4, "reason": "bench"}}));
    }
    events.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
        order ^ ((index as u64) << 32),
    ));
    events
}

struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
}

async fn sender(
    args: &Args,
    secret: &Secret,
    client: reqwest::Client,
    index: usize,
    until: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies: Vec::new(),
        errors: 0,
    };
    let mut n = 0;
    let mut queue = VecDeque::new();
    let mut orders = 0;
    let mut shipment = String::new();
    // With a rate, each sender starts its orders at its share of it, offset from the others.
    let every = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate));
    let mut next_start = Instant::now()
        + every
            .unwrap_or_default()
            .mul_f64(index as f64 / args.connections as f64);
    let api = args.url.replace("/webhooks/order_events", "/shipments");
    while Instant::now() < until && n < args.requests {
        if queue.is_empty() {
            if let Some(every) = every {
                tokio::time::sleep_until(next_start.into()).await;
                next_start += every;
            }
            let order = (orders / args.repeat) % args.distinct;
            orders += 1;
            queue.extend(next_steps(args, index, order));
        }
        n += 1;
        let request = match queue.pop_front().expect("refilled above") {
            Step::Event(event) => {
                let body = serde_json::to_vec(&event).unwrap();
                let signature = sign_hex(secret, &body);
                client
                    .post(&args.url)
                    .header("Content-Type", "application/json")
                    .header("X-Ecomm-Signature", signature)
                    .body(body)
            }
            Step::Move(change) => client
                .patch(format!("{api}/{shipment}"))
                .bearer_auth(&args.api_token)
                .json(&change),
        };
        let started = Instant::now();
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let answer = response.bytes().await.unwrap_or_default();
                tally.latencies.push(started.elapsed());
                // Only an order that lives on needs its shipment's id.
                if args.close {
                    if let Some(id) = serde_json::from_slice::<Value>(&answer)
                        .ok()
                        .and_then(|receipt| receipt["shipment_id"].as_str().map(str::to_owned))
                    {
                        shipment = id;
                    }
                }
            }
            Ok(response) => {
                let _ = response.bytes().await;
                tally.errors += 1;
            }
            Err(_) => tally.errors += 1,
        }
    }
    tally
}

// One thread: the senders' work is small, and a second worker would only add wake-ups
// between threads, CPU the service and the database need on the same machine.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let secret = Secret::parse(&args.secret).expect("a valid secret");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .unwrap();
    let started = Instant::now();
    let until = started + args.duration;
    let tallies = futures_util::future::join_all(
        (0..args.connections).map(|index| sender(&args, &secret, client.clone(), index, until)),
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let mut latencies: Vec<Duration> = tallies.into_iter().flat_map(|t| t.latencies).collect();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        json!({
            "ok": latencies.len(), "errors": errors, "seconds": elapsed,
            "per_second": latencies.len() as f64 / elapsed,
            "responses_per_second": (latencies.len() as u64 + errors) as f64 / elapsed,
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
            "mean_ms": latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0
                / latencies.len().max(1) as f64,
        })
    );
}
