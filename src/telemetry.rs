//! The tracing subscriber: filter from `RUST_LOG` (default `info`), human or JSON lines,
//! written by a background thread so that a slow log sink never holds up a request.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (several apps in one test binary) are
/// no-ops. Keep the returned guard alive until exit: dropping it flushes the last lines.
pub fn init<W>(format: LogFormat, writer: W) -> WorkerGuard
where
    W: std::io::Write + Send + 'static,
{
    let (writer, guard) = tracing_appender::non_blocking(writer);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    guard
}
