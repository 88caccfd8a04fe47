//! `shipping-service [serve|migrate|send]`: read the configuration, then hand over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shipping_service::config::Config;
use shipping_service::send::{self, SendArgs};
use shipping_service::startup::App;
use shipping_service::store::Store;
use shipping_service::telemetry;

#[derive(Parser)]
#[command(
    version,
    about = "Receives signed order webhooks and applies each order event exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, then serve (the default).
    Serve,
    /// Run migrations and exit.
    Migrate,
    /// Sign a JSON event and POST it, retrying with exponential backoff until acknowledged.
    Send(SendArgs),
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
    let app = App::build(config).await?;
    tracing::info!(port = app.port(), "serving");
    app.run_until_stopped().await?;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url.0, config.database_max_connections).await?;
    store.migrate().await?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}
