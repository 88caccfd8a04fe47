//! `shipping-service [serve|migrate|send|status]`: read the configuration, then hand over to
//! the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shipping_service::config::{Config, LogFormat};
use shipping_service::send::{self, SendArgs};
use shipping_service::startup::App;
use shipping_service::store::Store;
use shipping_service::telemetry;

/// glibc's allocator spent a quarter of the service's CPU under load (buffers allocated by
/// the HTTP workers are freed by the writer on another thread); mimalloc is made for that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Receives signed order webhooks and applies each order event exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// The variables `serve` and `migrate` read; the README and .env.example say more.
const ENVIRONMENT: &str = "Configuration comes from the environment and from ./.env when present:
  DATABASE_URL       sqlite://path (default sqlite://data/shipping.db) or postgres://...
  LISTEN_ADDR        address to bind (default 127.0.0.1:8080)
  WEBHOOK_SECRETS    accepted signing secrets, comma separated, newest first (required)
  API_TOKENS         bearer tokens of the REST API, comma separated (required)
  DISPATCH           on (deliver outbound events) or off (default on)
  RUST_LOG, LOG_FORMAT   log filter (default info) and format (pretty or json)
See .env.example for every variable and its default.";

#[derive(Subcommand)]
enum Command {
    /// Run migrations, then serve (the default).
    #[command(after_help = ENVIRONMENT)]
    Serve,
    /// Run migrations and exit.
    #[command(after_help = ENVIRONMENT)]
    Migrate,
    /// Sign a JSON event and POST it, retrying with exponential backoff until acknowledged.
    Send(SendArgs),
    /// Print counts from the database DATABASE_URL names: shipments by status, events of the
    /// last hour by outcome, pending and failed deliveries.
    #[command(after_help = ENVIRONMENT)]
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Read .env first (flags may default from it), but let --help and --version work even
    // when it is malformed: report that only once the command line is parsed.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Err(error) = dotenv {
        if !error.not_found() {
            eprintln!(".env: {error}");
            return ExitCode::from(2);
        }
    }
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Send(args) = command {
        // The sender needs a secret, not the service's configuration.
        return report(send::run(args).await);
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let _flush_logs_on_exit = telemetry::init(config.log_format, std::io::stdout());
    report(match command {
        Command::Migrate => migrate(config).await,
        Command::Status => status(config).await,
        _ => serve(config).await,
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", telemetry::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    for variable in &config.example_credentials {
        tracing::warn!(
            "{variable} holds the example value from .env.example: replace it outside local use"
        );
    }
    let pretty = config.log_format == LogFormat::Pretty;
    let app = App::build(config).await?;
    tracing::info!(port = app.port(), database = %app.database(), "serving");
    if pretty {
        println!("listening on http://{} ({})", app.address(), app.database());
    }
    app.run_until_stopped().await?;
    Ok(())
}

async fn status(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url.0, config.database_max_connections).await?;
    let report = store.status().await?;
    store.close().await;
    println!("database: {}", store.describe());
    println!("shipments by status:");
    for (status, count) in &report.shipments {
        println!("  {status:<12} {count}");
    }
    println!("events of the last hour by outcome:");
    for (outcome, count) in &report.recent_events {
        println!("  {outcome:<12} {count}");
    }
    println!("deliveries:");
    println!("  {:<12} {}", "pending", report.pending_deliveries);
    println!("  {:<12} {}", "failed", report.failed_deliveries);
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url.0, config.database_max_connections).await?;
    store.migrate().await?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}
