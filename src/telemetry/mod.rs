//! The tracing subscriber: filter from `RUST_LOG` (default `info`), human or JSON lines,
//! written by a background thread so that a slow log sink never holds up a request; and,
//! when an OTLP endpoint is configured, spans exported as traces ([`traces`]).

pub mod traces;

use opentelemetry_sdk::trace::Tracer;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (several apps in one test binary) are
/// no-ops. Keep the returned guard alive until exit: dropping it flushes the last lines.
/// With a `tracer`, spans are also exported.
pub fn init<W>(format: LogFormat, writer: W, tracer: Option<Tracer>) -> WorkerGuard
where
    W: std::io::Write + Send + 'static,
{
    let (writer, guard) = tracing_appender::non_blocking(writer);
    // PostgreSQL's notices ("relation _sqlx_migrations already exists, skipping") are for
    // whoever runs psql, not for the service's log.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs = match format {
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => logs.boxed(),
    };
    let traces = tracer.map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    guard
}

/// An error and its causes on one line, `a: b: c`, for logs and start-up failures. A cause
/// whose text its parent already shows is left out: several libraries repeat their source's
/// message in their own ("database \"x\" does not exist: database \"x\" does not exist").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut shown = line.clone();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !shown.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        shown = text;
        cause = error.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Leaf(&'static str);

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Wrap {
        text: &'static str,
        #[source]
        source: Leaf,
    }

    #[test]
    fn a_cause_repeated_by_its_parent_is_shown_once() {
        let repeated = Wrap {
            text: "returned from database: x does not exist",
            source: Leaf("x does not exist"),
        };
        let distinct = Wrap {
            text: "DATABASE_URL",
            source: Leaf("x does not exist"),
        };
        assert_eq!(
            error_chain(&repeated),
            "returned from database: x does not exist"
        );
        assert_eq!(error_chain(&distinct), "DATABASE_URL: x does not exist");
    }
}
