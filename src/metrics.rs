//! Prometheus metrics: what the webhook endpoint decided, how long every route takes, how busy
//! the database pool is, and how the outbox's deliveries fare. Each instance keeps its own
//! counters; Prometheus sums them.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::store::DeliveryStats;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    webhook_outcomes: IntCounterVec,
    request_duration: HistogramVec,
    pool_connections: IntGaugeVec,
    deliveries: IntCounterVec,
    attempt_duration: Histogram,
    pending_deliveries: IntGauge,
    oldest_pending_seconds: Gauge,
    rows_removed: IntCounterVec,
    quarantined: IntCounterVec,
    quarantine_full: prometheus::IntCounter,
    quarantine_held: IntGauge,
    writer_races: prometheus::IntCounter,
    stale_results: prometheus::IntCounter,
    auth_failures: IntCounterVec,
    spans: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let registry = Registry::new();
        let webhook_outcomes = IntCounterVec::new(
            Opts::new(
                "webhook_events_total",
                "Webhook requests by outcome: processed, updated, stale, too_late, parked, duplicate, ignored, or the rejection reason",
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
        let deliveries = IntCounterVec::new(
            Opts::new(
                "deliveries_total",
                "Outbound delivery attempts by what they decided: delivered, pending (to be retried), failed",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let attempt_duration = Histogram::with_opts(
            HistogramOpts::new(
                "delivery_attempt_duration_seconds",
                "Latency of outbound delivery attempts",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let pending_deliveries = IntGauge::new(
            "deliveries_pending",
            "Outbound deliveries not yet delivered or failed",
        )
        .expect("valid metric");
        let oldest_pending_seconds = Gauge::new(
            "deliveries_oldest_pending_age_seconds",
            "Age of the oldest pending outbound delivery (0 when none)",
        )
        .expect("valid metric");
        let rows_removed = IntCounterVec::new(
            Opts::new(
                "retention_removed_rows_total",
                "Rows removed by retention passes, by table",
            ),
            &["table"],
        )
        .expect("valid metric");
        let quarantined = IntCounterVec::new(
            Opts::new(
                "quarantined_events_total",
                "Authentic events kept in quarantine, by why they could not be applied",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let quarantine_full = prometheus::IntCounter::new(
            "quarantine_full_rejections_total",
            "Invalid events rejected because QUARANTINE_MAX_HELD entries were held",
        )
        .expect("valid metric");
        let quarantine_held = IntGauge::new(
            "quarantine_held",
            "Quarantined events held, waiting for an operator",
        )
        .expect("valid metric");
        let writer_races = prometheus::IntCounter::new(
            "writer_races_total",
            "Webhook batches applied again because another writer changed their orders first",
        )
        .expect("valid metric");
        let stale_results = prometheus::IntCounter::new(
            "deliveries_stale_results_total",
            "Delivery attempts whose result came back after their claim was lost (the lease passed on, the delivery was queued again or deleted): recorded nowhere",
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "auth_failures_total",
                "Requests that presented a wrong token, by surface: api (bearer) or console (sign-in)",
            ),
            &["surface"],
        )
        .expect("valid metric");
        let spans = IntCounterVec::new(
            Opts::new(
                "otel_spans_total",
                "Trace spans by what became of them: exported to the OTLP collector, or dropped (the queue was full, or the collector did not take them)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["exported", "dropped"] {
            spans.with_label_values(&[result]);
        }
        for collector in [
            Box::new(webhook_outcomes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(spans.clone()),
            Box::new(request_duration.clone()),
            Box::new(pool_connections.clone()),
            Box::new(deliveries.clone()),
            Box::new(attempt_duration.clone()),
            Box::new(pending_deliveries.clone()),
            Box::new(oldest_pending_seconds.clone()),
            Box::new(rows_removed.clone()),
            Box::new(quarantined.clone()),
            Box::new(quarantine_full.clone()),
            Box::new(quarantine_held.clone()),
            Box::new(writer_races.clone()),
            Box::new(stale_results.clone()),
            Box::new(auth_failures.clone()),
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
            deliveries,
            attempt_duration,
            pending_deliveries,
            oldest_pending_seconds,
            rows_removed,
            quarantined,
            quarantine_full,
            quarantine_held,
            writer_races,
            stale_results,
            auth_failures,
            spans,
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

    pub fn delivery_outcome(&self, outcome: &'static str) {
        self.deliveries.with_label_values(&[outcome]).inc();
    }

    /// `surface` is `api` or `console`.
    pub fn auth_failure(&self, surface: &'static str) {
        self.auth_failures.with_label_values(&[surface]).inc();
    }

    pub fn stale_results(&self, results: usize) {
        self.stale_results.inc_by(results as u64);
    }

    pub fn quarantined(&self, reason: &str) {
        self.quarantined.with_label_values(&[reason]).inc();
    }

    pub fn quarantine_full(&self) {
        self.quarantine_full.inc();
    }

    /// Counts what a retention pass removed.
    pub fn rows_removed(&self, table: &str, rows: u64) {
        self.rows_removed.with_label_values(&[table]).inc_by(rows);
    }

    pub fn delivery_attempt(&self, seconds: f64) {
        self.attempt_duration.observe(seconds);
    }

    /// The text exposition, with the gauges read at scrape time.
    pub fn render(
        &self,
        (open, idle): (u32, usize),
        writer_races: u64,
        outbox: Option<DeliveryStats>,
        quarantine_held: Option<i64>,
    ) -> String {
        // The writer counts on its own; the counter catches up to it.
        self.writer_races
            .inc_by(writer_races.saturating_sub(self.writer_races.get()));
        if let Some(held) = quarantine_held {
            self.quarantine_held.set(held);
        }
        if let Some(outbox) = outbox {
            self.pending_deliveries.set(outbox.pending);
            self.oldest_pending_seconds.set(
                outbox
                    .oldest_pending_age
                    .map_or(0.0, |age| age.as_secs_f64()),
            );
        }
        self.pool_connections
            .with_label_values(&["open"])
            .set(i64::from(open));
        self.pool_connections
            .with_label_values(&["idle"])
            .set(idle as i64);
        let (exported, dropped) = crate::telemetry::traces::counts();
        self.spans
            .with_label_values(&["exported"])
            .inc_by(exported.saturating_sub(self.spans.with_label_values(&["exported"]).get()));
        self.spans
            .with_label_values(&["dropped"])
            .inc_by(dropped.saturating_sub(self.spans.with_label_values(&["dropped"]).get()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
