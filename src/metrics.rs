//! Prometheus metrics: what the webhook endpoint decided, how long every route takes, and how
//! busy the database pool is. Each instance keeps its own counters; Prometheus sums them.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    webhook_outcomes: IntCounterVec,
    request_duration: HistogramVec,
    pool_connections: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let registry = Registry::new();
        let webhook_outcomes = IntCounterVec::new(
            Opts::new(
                "webhook_events_total",
                "Webhook requests by outcome: processed, duplicate, ignored, or the rejection reason",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database connections of the request pool by state",
            ),
            &["state"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(webhook_outcomes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(pool_connections.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            webhook_outcomes,
            request_duration,
            pool_connections,
        }
    }
}

impl Metrics {
    pub fn webhook_outcome(&self, outcome: &str) {
        self.webhook_outcomes.with_label_values(&[outcome]).inc();
    }

    pub fn request_finished(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.request_duration
            .with_label_values(&[method, route, &status.to_string()])
            .observe(seconds);
    }

    /// The text exposition, with the pool gauges read at scrape time.
    pub fn render(&self, (open, idle): (u32, usize)) -> String {
        self.pool_connections
            .with_label_values(&["open"])
            .set(i64::from(open));
        self.pool_connections
            .with_label_values(&["idle"])
            .set(idle as i64);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
