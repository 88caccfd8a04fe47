//! Traces over OTLP, configured only by the standard `OTEL_*` variables and on only while
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Off, no span
//! is made beyond each request's own, which the logs always had ([`enabled`] is false and
//! callers make `Span::none()`), so the hot path pays nothing more. On, ended spans go through a bounded queue to one exporting task: a collector that
//! is slow or away never holds up a request; what cannot be queued or sent is dropped and
//! counted (`otel_spans_total{result}` in `/metrics`).
//!
//! The W3C trace context travels with the work: a webhook's `traceparent` is continued by its
//! request's span, stored with the outbound events its change writes, and sent on every
//! attempt to deliver them, the attempt's span as the parent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor, Tracer,
};
use opentelemetry_sdk::Resource;
use tokio::sync::{mpsc, oneshot};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::TraceContext;

static ENABLED: AtomicBool = AtomicBool::new(false);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether spans are exported: when not, none is made.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Spans sent to the collector, and spans dropped (queue full, or the collector did not take
/// them), since start.
pub fn counts() -> (u64, u64) {
    (
        EXPORTED.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

/// The exporting half: a tracer for the `tracing` layer, and a handle that flushes at exit.
pub struct Traces {
    pub tracer: Tracer,
    provider: SdkTracerProvider,
    queue: mpsc::Sender<Message>,
}

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The exporter the `OTEL_*` variables describe, or `None` when no endpoint is set. Must run
/// on the Tokio runtime, which carries the exporting task.
pub fn from_env() -> Result<Option<Traces>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol =
        var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match protocol.as_deref() {
        None | Some("http/protobuf") => builder.with_http().build(),
        Some("grpc") => builder.with_tonic().build(),
        Some(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL: {other} is not supported: use http/protobuf or grpc"
            ))
        }
    }
    .map_err(|error| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {error}"))?;
    let setting = |name: &str, default: u64| {
        var(name)
            .map(|text| {
                text.parse::<u64>()
                    .map_err(|_| format!("{name}: must be a whole number"))
            })
            .transpose()
            .map(|value| value.unwrap_or(default))
    };
    // The batch span processor's standard settings and defaults.
    let delay = Duration::from_millis(setting("OTEL_BSP_SCHEDULE_DELAY", 5000)?);
    let capacity = setting("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?.max(1) as usize;
    let batch = setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.max(1) as usize;
    let timeout = Duration::from_millis(setting("OTEL_BSP_EXPORT_TIMEOUT", 30000)?);

    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|attributes| attributes.contains("service.name="));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name(env!("CARGO_PKG_NAME"));
    }
    let resource = resource.build();
    let mut exporter = exporter;
    exporter.set_resource(&resource);
    let (queue, spans) = mpsc::channel(capacity);
    tokio::spawn(export(exporter, spans, batch, delay, timeout));
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(Queue(queue.clone()))
        .build();
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(Traces {
        tracer: provider.tracer(env!("CARGO_PKG_NAME")),
        provider,
        queue,
    }))
}

impl Traces {
    /// Sends what is queued, waiting at most `limit`.
    pub async fn flush(self, limit: Duration) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(limit, flushed).await;
        }
        drop(self.provider);
    }
}

/// Hands ended spans to the exporting task without waiting: a full queue drops the span.
#[derive(Debug)]
struct Queue(mpsc::Sender<Message>);

impl SpanProcessor for Queue {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() && self.0.try_send(Message::Span(Box::new(span))).is_err()
        {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends spans in batches of up to `batch`, each at most `delay` after its first span.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
    mut queue: mpsc::Receiver<Message>,
    batch: usize,
    delay: Duration,
    timeout: Duration,
) {
    let mut spans = Vec::with_capacity(batch);
    let mut flushed = Vec::new();
    while let Some(first) = queue.recv().await {
        let deadline = tokio::time::Instant::now() + delay;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Span(span) => spans.push(*span),
                Message::Flush(done) => {
                    flushed.push(done);
                    break;
                }
            }
            if spans.len() >= batch {
                break;
            }
            next = tokio::time::timeout_at(deadline, queue.recv())
                .await
                .ok()
                .flatten();
        }
        let sent = spans.len() as u64;
        if sent > 0 {
            let result =
                tokio::time::timeout(timeout, exporter.export(std::mem::take(&mut spans))).await;
            let counter = if matches!(result, Ok(Ok(()))) {
                &EXPORTED
            } else {
                &DROPPED
            };
            counter.fetch_add(sent, Ordering::Relaxed);
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Continues the W3C trace context of `headers` (`traceparent`, `tracestate`) in `span`, a
/// span not yet entered. Without one, the span starts a trace.
pub fn continue_trace<'h>(span: &tracing::Span, headers: impl Iterator<Item = (&'h str, &'h str)>) {
    let carrier: HashMap<String, String> = headers
        .filter(|(name, _)| {
            name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
        })
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    if !carrier.is_empty() {
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
}

/// Makes a stored trace context the parent of `span`, a span not yet entered.
pub fn continue_stored(span: &tracing::Span, trace: &TraceContext) {
    let mut carrier = HashMap::from([("traceparent".to_owned(), trace.parent.clone())]);
    if let Some(state) = &trace.state {
        carrier.insert("tracestate".to_owned(), state.clone());
    }
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// The W3C trace context of `span`, to store or to send; `None` when tracing is off.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    Some(TraceContext {
        parent: carrier.remove("traceparent")?,
        state: carrier
            .remove("tracestate")
            .filter(|state| !state.is_empty()),
    })
}

/// The trace context of the span the caller runs in: what a change made now is announced with.
pub fn current_trace() -> Option<TraceContext> {
    context_of(&tracing::Span::current())
}

/// Records `trace_id` and `span_id` on `span` (declared as empty fields), so that the log
/// lines inside it carry them.
pub fn record_ids(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
}

/// Sets an attribute of `span`'s trace span (not a field of its log lines); nothing while
/// traces are off.
pub fn attribute(span: &tracing::Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if enabled() {
        span.set_attribute(key, value);
    }
}

/// Links `span` to the span `trace` names (a batch's commit to each request it carries).
pub fn link(span: &tracing::Span, other: &tracing::Span) {
    span.add_link(other.context().span().span_context().clone());
}
