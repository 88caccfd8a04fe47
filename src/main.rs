//! `shipping-service [serve|migrate|send|status|prune]`: read the configuration a subcommand needs,
//! then hand over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shipping_service::commands;
use shipping_service::config::{self, Config, ConfigError, DatabaseConfig, Env, LogFormat};
use shipping_service::domain::Retention;
use shipping_service::send::{self, SendArgs};
use shipping_service::startup::App;
use shipping_service::telemetry;

/// Buffers allocated by the HTTP workers are freed by the writer on another thread, a pattern
/// glibc's allocator handles slowly (a quarter of the CPU under load, bench/README.md) and
/// mimalloc is made for.
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

#[derive(Subcommand)]
enum Command {
    /// Run migrations, then serve (the default).
    #[command(after_help = config::help(config::SERVE))]
    Serve,
    /// Run migrations and exit.
    #[command(after_help = config::help(config::DATABASE_ONLY))]
    Migrate,
    /// Sign a JSON event and POST it, retrying with exponential backoff until acknowledged.
    Send(Box<SendArgs>),
    /// Print counts from the database DATABASE_URL names: shipments by status, events of the
    /// last hour by outcome, pending and failed deliveries, each table's rows and oldest record.
    #[command(after_help = config::help(config::DATABASE_ONLY))]
    Status,
    /// Remove now what RETENTION lets go (what a serving instance does every minute) and print
    /// the rows removed, table by table.
    #[command(after_help = config::help(config::PRUNE))]
    Prune {
        /// Only count what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// One thread carries the background work (the dispatcher with its attempts and settlements,
/// PostgreSQL's batch writer, retention, trace export): its tasks hand work to each other all
/// the time, and on one thread a hand-off is a queue push, where on a pool of workers it wakes
/// another thread (the dispatcher's CPU per delivery, bench/README.md). HTTP requests have
/// their own workers.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Read .env first (flags may default from it), but let --help and --version work even
    // when it is malformed: report that only once the command line is parsed.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    let env_file = match dotenv {
        Ok(path) => format!("{} was read", path.display()),
        Err(error) if error.not_found() => {
            let here = std::env::current_dir().unwrap_or_default();
            format!("no .env in {} or above it", here.display())
        }
        Err(error) => {
            eprintln!(".env: {error}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Send(args) = command {
        // The sender needs a secret, not the service's configuration.
        return report(send::run(*args).await);
    }
    let env = Env::process();
    let configured = match command {
        Command::Serve => Config::read_env(&env).map(|config| Configured::Serve(Box::new(config))),
        Command::Prune { .. } => DatabaseConfig::from_env(&env)
            .and_then(|database| Ok(Configured::Prune(database, config::retention(&env)?))),
        _ => DatabaseConfig::from_env(&env).map(Configured::Database),
    };
    let (configured, log_format) =
        match configured.and_then(|c| Ok((c, LogFormat::from_env(&env)?))) {
            Ok(both) => both,
            Err(error) => return configuration_error(&error, &env_file),
        };
    // Only a serving instance exports traces.
    let traces = match &command {
        Command::Serve => match telemetry::traces::from_env() {
            Ok(traces) => traces,
            Err(error) => {
                eprintln!("configuration error: {error} ({env_file})");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let tracer = traces.as_ref().map(|traces| traces.tracer.clone());
    let _flush_logs_on_exit = telemetry::init(log_format, std::io::stdout(), tracer);
    report(match (command, configured) {
        (Command::Serve, Configured::Serve(config)) => {
            let served = serve(*config).await;
            if let Some(traces) = traces {
                traces.flush(std::time::Duration::from_secs(5)).await;
            }
            served
        }
        (Command::Migrate, Configured::Database(database)) => commands::migrate(database).await,
        (Command::Status, Configured::Database(database)) => commands::status(database).await,
        (Command::Prune { dry_run }, Configured::Prune(database, retention)) => {
            commands::prune(database, retention, dry_run).await
        }
        _ => unreachable!("each command reads its own configuration"),
    })
}

enum Configured {
    Serve(Box<Config>),
    Database(DatabaseConfig),
    Prune(DatabaseConfig, Retention),
}

/// One line: every bad variable, and where `.env` was looked for.
fn configuration_error(error: &ConfigError, env_file: &str) -> ExitCode {
    eprintln!("configuration error: {error} ({env_file})");
    ExitCode::from(2)
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
    if config.retention.is_short() {
        tracing::warn!(
            "RETENTION is under a day: an event redelivered after it is no longer recognised \
             (a closed order's history goes too); fine for trying things out"
        );
    }
    let app = App::build(config).await?;
    tracing::info!(port = app.port(), database = %app.database(), "serving");
    // For people, whatever the log format: standard error, beside no log line.
    eprintln!("listening on http://{} ({})", app.address(), app.database());
    app.run_until_stopped().await?;
    Ok(())
}
