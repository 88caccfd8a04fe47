//! Start-up failures say what to fix, in one line naming the variable: an unreachable
//! PostgreSQL names its host and port, an SQLite path its path, and a malformed `.env` does not
//! stop `--help`.

use std::process::{Command, Output};

use crate::helpers::TOKEN;

fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shipping-service"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

fn serve_with_database(url: &str) -> String {
    let folder = tempfile::tempdir().unwrap();
    let output = run(
        &["serve"],
        &[
            ("DATABASE_URL", url),
            ("WEBHOOK_SECRETS", "secret"),
            ("API_TOKENS", TOKEN),
            ("LISTEN_ADDR", "127.0.0.1:0"),
        ],
        folder.path(),
    );
    assert!(!output.status.success());
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn an_unreachable_postgresql_is_named_with_its_host_and_port() {
    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    let error = serve_with_database("postgres://postgres@127.0.0.1:1/shipping");
    assert!(
        error.contains("DATABASE_URL: cannot open the database: cannot reach PostgreSQL at 127.0.0.1:1: connection refused"),
        "{error}"
    );
}

#[test]
fn an_unusable_sqlite_path_is_named() {
    let error = serve_with_database("sqlite:///proc/no-such-folder/shipping.db");
    assert!(
        error.contains("cannot open the SQLite database /proc/no-such-folder/shipping.db"),
        "{error}"
    );
}

#[test]
fn an_in_memory_sqlite_database_is_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://shipping.db?mode=memory",
    ] {
        let error = serve_with_database(url);
        assert!(
            error.contains("DATABASE_URL: cannot open the database: an in-memory SQLite database would lose every acknowledged event"),
            "{url}: {error}"
        );
    }
}

#[test]
fn a_missing_database_is_reported_once() {
    let mut url = reqwest::Url::parse(&crate::helpers::admin_url()).unwrap();
    url.set_path("no_such_database_here");
    let error = serve_with_database(url.as_str());
    assert_eq!(
        error.matches("does not exist").count(),
        1,
        "the cause is not repeated: {error}"
    );
}

#[test]
fn help_works_beside_a_malformed_env_file() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join(".env"), "BROKEN LINE = \"\n").unwrap();

    let help = run(&["serve", "--help"], &[], folder.path());
    let serve = run(&["serve"], &[], folder.path());

    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("WEBHOOK_SECRETS") && text.contains(".env"),
        "{text}"
    );
    assert!(!serve.status.success());
    assert!(String::from_utf8(serve.stderr)
        .unwrap()
        .starts_with(".env:"));
}

#[test]
fn each_subcommands_help_lists_only_what_it_reads() {
    let folder = tempfile::tempdir().unwrap();
    let help = |command: &str| {
        let output = run(&[command, "--help"], &[], folder.path());
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };

    let serve = help("serve");
    let status = help("status");
    let migrate = help("migrate");

    for variable in [
        "DATABASE_URL",
        "WEBHOOK_SECRETS",
        "API_TOKENS",
        "DELIVERY_TIMEOUT",
    ] {
        assert!(serve.contains(variable), "serve --help lacks {variable}");
    }
    for text in [status, migrate] {
        assert!(text.contains("DATABASE_URL"), "{text}");
        assert!(
            !text.contains("WEBHOOK_SECRETS") && !text.contains("API_TOKENS"),
            "{text}"
        );
    }
}

#[test]
fn prune_against_an_unreachable_database_names_its_host() {
    let folder = tempfile::tempdir().unwrap();
    let output = run(
        &["prune"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/shipping")],
        folder.path(),
    );
    assert!(!output.status.success());
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(
        error.contains("cannot reach PostgreSQL at 127.0.0.1:1"),
        "{error}"
    );
}

#[test]
fn every_bad_variable_is_named_at_once_with_where_env_was_looked_for() {
    let folder = tempfile::tempdir().unwrap();
    let output = run(
        &["serve"],
        &[
            ("WEBHOOK_SECRETS", "secret"),
            ("API_TOKENS", TOKEN),
            ("DISPATCH", "maybe"),
            ("RETENTION", "banana"),
        ],
        folder.path(),
    );
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains("DISPATCH: ") && error.contains("RETENTION: "),
        "{error}"
    );
    assert!(error.contains("no .env in"), "{error}");
}
