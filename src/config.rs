//! Configuration from the environment (and `.env`, loaded by `main`). Every variable is
//! defined once, in [`Variable`]s below: parsing reads them, an error names the variable, each
//! subcommand's `--help` lists the ones it reads, and a test keeps the README's table the same.
//! Secrets never show up in `Debug` output.

use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::dispatch::egress::Egress;
use crate::domain::Retention;
use crate::signature::{Secret, Verifier};

/// One environment variable: its name, what it means, and what holds when it is not set.
#[derive(Debug)]
pub struct Variable {
    pub name: &'static str,
    pub meaning: &'static str,
    pub fallback: Fallback,
}

#[derive(Debug)]
pub enum Fallback {
    /// This value, parsed as if it had been set.
    Value(&'static str),
    /// Start-up stops without it.
    Required,
    /// Worked out at start-up, as described.
    Described(&'static str),
}

impl Fallback {
    /// As the help and the README write it.
    pub fn describe(&self) -> String {
        match self {
            Fallback::Value(value) => format!("`{value}`"),
            Fallback::Required => "required".into(),
            Fallback::Described(text) => (*text).into(),
        }
    }
}

pub const DATABASE_URL: Variable = Variable {
    name: "DATABASE_URL",
    meaning: "`sqlite://path` (embedded, file and folder created; never in memory: a 2xx means \
              on disk) or `postgres://…`",
    fallback: Fallback::Value("sqlite://data/shipping.db"),
};
pub const DATABASE_MAX_CONNECTIONS: Variable = Variable {
    name: "DATABASE_MAX_CONNECTIONS",
    meaning: "pool size",
    fallback: Fallback::Described(
        "PostgreSQL 16 (plus the webhook writer's own connection); SQLite 4 readers (plus two \
         writing connections that take turns)",
    ),
};
pub const LISTEN_ADDR: Variable = Variable {
    name: "LISTEN_ADDR",
    meaning: "socket address to bind",
    fallback: Fallback::Value("127.0.0.1:8080"),
};
pub const WEBHOOK_SECRETS: Variable = Variable {
    name: "WEBHOOK_SECRETS",
    meaning: "accepted signing secrets, comma separated, newest first",
    fallback: Fallback::Required,
};
pub const WEBHOOK_SIGNATURE_HEADER: Variable = Variable {
    name: "WEBHOOK_SIGNATURE_HEADER",
    meaning: "header of the hex scheme",
    fallback: Fallback::Value("X-Ecomm-Signature"),
};
pub const WEBHOOK_TOLERANCE_SECS: Variable = Variable {
    name: "WEBHOOK_TOLERANCE_SECS",
    meaning: "allowed clock skew of Standard Webhooks timestamps, in seconds",
    fallback: Fallback::Value("300"),
};
pub const API_TOKENS: Variable = Variable {
    name: "API_TOKENS",
    meaning: "bearer tokens of the REST API, comma separated",
    fallback: Fallback::Required,
};
pub const MAX_BODY_BYTES: Variable = Variable {
    name: "MAX_BODY_BYTES",
    meaning: "largest accepted webhook body",
    fallback: Fallback::Value("262144"),
};
pub const REQUEST_TIMEOUT_SECS: Variable = Variable {
    name: "REQUEST_TIMEOUT_SECS",
    meaning: "seconds a client has to send a whole request (else 408)",
    fallback: Fallback::Value("10"),
};
pub const KEEP_ALIVE_SECS: Variable = Variable {
    name: "KEEP_ALIVE_SECS",
    meaning: "seconds an idle keep-alive connection stays open",
    fallback: Fallback::Value("5"),
};
pub const MAX_CONNECTIONS: Variable = Variable {
    name: "MAX_CONNECTIONS",
    meaning: "client connections served at once (more wait in the backlog)",
    fallback: Fallback::Value("1024"),
};
pub const DISPATCH: Variable = Variable {
    name: "DISPATCH",
    meaning: "`on`: this instance delivers outbound events; `off`: API only",
    fallback: Fallback::Value("on"),
};
pub const DELIVERY_MAX_RETRIES: Variable = Variable {
    name: "DELIVERY_MAX_RETRIES",
    meaning: "retries of an outbound delivery before it is `failed`",
    fallback: Fallback::Value("5"),
};
pub const DELIVERY_TIMEOUT: Variable = Variable {
    name: "DELIVERY_TIMEOUT",
    meaning: "limit of one delivery attempt",
    fallback: Fallback::Value("10s"),
};
pub const DELIVERY_ALLOW_NETS: Variable = Variable {
    name: "DELIVERY_ALLOW_NETS",
    meaning: "networks (CIDR, comma separated) that deliveries may reach although private, \
              loopback or link-local (the resolver refuses them otherwise)",
    fallback: Fallback::Described("none"),
};
pub const DELIVERY_CONCURRENCY_PER_SUBSCRIPTION: Variable = Variable {
    name: "DELIVERY_CONCURRENCY_PER_SUBSCRIPTION",
    meaning: "attempts in flight for one subscription",
    fallback: Fallback::Value("8"),
};
pub const DELIVERY_DISABLE_AFTER: Variable = Variable {
    name: "DELIVERY_DISABLE_AFTER",
    meaning: "a subscription failing this long with nothing delivered is deactivated",
    fallback: Fallback::Value("5d"),
};
pub const QUARANTINE_MAX_HELD: Variable = Variable {
    name: "QUARANTINE_MAX_HELD",
    meaning: "held quarantine entries; past it, new invalid events get reject mode's 4xx",
    fallback: Fallback::Value("100000"),
};
pub const AUTH_FAILURE_LIMIT: Variable = Variable {
    name: "AUTH_FAILURE_LIMIT",
    meaning: "wrong tokens per minute from one address before 429; `off`",
    fallback: Fallback::Value("10"),
};
pub const CONSOLE_IDLE_TIMEOUT: Variable = Variable {
    name: "CONSOLE_IDLE_TIMEOUT",
    meaning: "a console session unused this long ends (at most 12 h in all)",
    fallback: Fallback::Value("30m"),
};
pub const CONSOLE_SECURE_COOKIE: Variable = Variable {
    name: "CONSOLE_SECURE_COOKIE",
    meaning: "`on`: the console's cookies are always Secure (behind a TLS proxy); `off`: never; \
              `auto`: when the request came over HTTPS or `X-Forwarded-Proto` says so",
    fallback: Fallback::Value("auto"),
};
pub const QUARANTINE_MAX_BYTES: Variable = Variable {
    name: "QUARANTINE_MAX_BYTES",
    meaning: "bytes of held quarantine bodies, same rule",
    fallback: Fallback::Value("1GiB"),
};
pub const INVALID_EVENTS: Variable = Variable {
    name: "INVALID_EVENTS",
    meaning: "`quarantine` (keep authentic events it cannot apply, answer 202) or `reject` \
              (400/422, keep nothing)",
    fallback: Fallback::Value("quarantine"),
};
pub const RETENTION: Variable = Variable {
    name: "RETENTION",
    meaning: "how long records that no promise needs any more are kept (duplicates, closed \
              orders' histories, settled deliveries, decided quarantine); \
              `off` keeps everything",
    fallback: Fallback::Value("30d"),
};
pub const RUST_LOG: Variable = Variable {
    name: "RUST_LOG",
    meaning: "tracing filter",
    fallback: Fallback::Value("info"),
};
pub const LOG_FORMAT: Variable = Variable {
    name: "LOG_FORMAT",
    meaning: "`json` or `pretty`",
    fallback: Fallback::Described("`pretty` on a terminal, else `json`"),
};

/// What `serve` reads: everything.
pub const SERVE: &[&Variable] = &[
    &DATABASE_URL,
    &LISTEN_ADDR,
    &WEBHOOK_SECRETS,
    &WEBHOOK_SIGNATURE_HEADER,
    &WEBHOOK_TOLERANCE_SECS,
    &API_TOKENS,
    &MAX_BODY_BYTES,
    &REQUEST_TIMEOUT_SECS,
    &KEEP_ALIVE_SECS,
    &MAX_CONNECTIONS,
    &DISPATCH,
    &DELIVERY_MAX_RETRIES,
    &DELIVERY_TIMEOUT,
    &DELIVERY_ALLOW_NETS,
    &DELIVERY_CONCURRENCY_PER_SUBSCRIPTION,
    &DELIVERY_DISABLE_AFTER,
    &QUARANTINE_MAX_HELD,
    &QUARANTINE_MAX_BYTES,
    &AUTH_FAILURE_LIMIT,
    &CONSOLE_IDLE_TIMEOUT,
    &CONSOLE_SECURE_COOKIE,
    &INVALID_EVENTS,
    &RETENTION,
    &DATABASE_MAX_CONNECTIONS,
    &RUST_LOG,
    &LOG_FORMAT,
];

/// What the subcommands that only use the database read (`migrate`, `status`).
pub const DATABASE_ONLY: &[&Variable] = &[&DATABASE_URL, &RUST_LOG, &LOG_FORMAT];

/// What `prune` reads.
pub const PRUNE: &[&Variable] = &[&DATABASE_URL, &RETENTION, &RUST_LOG, &LOG_FORMAT];

/// The `--help` text of a subcommand that reads `variables`.
pub fn help(variables: &[&Variable]) -> String {
    let width = variables.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut text =
        String::from("Configuration comes from the environment and from ./.env when present:\n");
    for variable in variables {
        text.push_str(&format!(
            "  {:width$}  {} [default: {}]\n",
            variable.name,
            variable.meaning.replace('`', ""),
            variable.fallback.describe().replace('`', ""),
        ));
    }
    text.push_str(".env.example documents each one.");
    text
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub listen_addr: SocketAddr,
    pub verifier: Verifier,
    pub api_tokens: ApiTokens,
    /// Wrong tokens a minute from one address before its requests with a token get 429;
    /// `None`: never.
    pub auth_failure_limit: Option<u32>,
    /// How long an unused console session lasts.
    pub console_idle_timeout: Duration,
    /// Whether the console's cookies are Secure: always, never, or by the request's scheme.
    pub console_secure_cookie: Option<bool>,
    pub max_body_bytes: usize,
    /// How long a client may take to send a whole request (headers, then body): 408 after.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// Open client connections this instance accepts at once; more wait in the backlog.
    pub max_connections: usize,
    pub delivery: DeliveryConfig,
    /// What becomes of an authentic event the service cannot apply.
    pub invalid_events: InvalidEvents,
    pub retention: Retention,
    /// Variables that hold the example values of `.env.example`: fine on a laptop, a warning
    /// anywhere else.
    pub example_credentials: Vec<&'static str>,
    pub log_format: LogFormat,
}

/// Which database, and how many connections to it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub max_connections: Option<u32>,
}

/// How this instance delivers outbound events.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Whether this instance delivers at all (`DISPATCH=off`: API only).
    pub dispatch: bool,
    /// Retries of an outbound delivery before it is `failed`.
    pub max_retries: u32,
    /// Longest one attempt may take.
    pub timeout: Duration,
    /// Where deliveries may go.
    pub egress: Egress,
    /// Attempts in flight for one subscription at most.
    pub concurrency_per_subscription: u32,
    /// How long a subscription may fail with nothing delivered before it is deactivated.
    pub disable_after: Duration,
}

/// How much quarantine holds at most: entries, and bytes of their bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineLimits {
    pub held: u64,
    pub bytes: u64,
}

/// What becomes of an authentic event the service cannot apply (not JSON, not a valid event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidEvents {
    /// Kept, answered 202, until an operator replays or discards it, within these bounds.
    Quarantine(QuarantineLimits),
    /// Answered 400 or 422; nothing kept.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `Debug` hides the URL: it may carry a password.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or_default();
        write!(f, "DatabaseUrl({scheme}:<redacted>)")
    }
}

/// Bearer tokens of the REST API, compared in constant time.
#[derive(Clone)]
pub struct ApiTokens(Vec<String>);

impl ApiTokens {
    /// What a console session keeps of the token that opened it: enough to know whether
    /// that token is still accepted, never the token.
    pub fn fingerprint(token: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(format!("console-session:{token}")))
    }

    /// Whether one of the tokens has `fingerprint`.
    pub fn accepts_fingerprint(&self, fingerprint: &str) -> bool {
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, token| {
                any | Self::fingerprint(token)
                    .as_bytes()
                    .ct_eq(fingerprint.as_bytes())
            })
            .into()
    }

    pub fn accepts(&self, candidate: &str) -> bool {
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, token| {
                any | token.as_bytes().ct_eq(candidate.as_bytes())
            })
            .into()
    }
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens(<{} redacted>)", self.0.len())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

/// The secret and token `.env.example` ships for a local try-out.
const EXAMPLE_SECRET: &str = "s3cr3t_k3y_f0r_w3bh00k_s1gn4tur3";
const EXAMPLE_TOKEN: &str = "dev-token";

/// The environment, read through a lookup so that tests need not touch the process's.
pub struct Env<F> {
    lookup: F,
}

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Env {
            lookup: |name| std::env::var(name).ok(),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn from_lookup(lookup: F) -> Self {
        Env { lookup }
    }

    /// The variable's value, trimmed; its fallback value when unset or blank.
    fn text(&self, variable: &Variable) -> Option<String> {
        (self.lookup)(variable.name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .or_else(|| match variable.fallback {
                Fallback::Value(value) => Some(value.to_owned()),
                Fallback::Required | Fallback::Described(_) => None,
            })
    }

    /// The variable read by `parse`, whose error names the variable.
    fn parse<T>(
        &self,
        variable: &Variable,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.text(variable)
            .map(|text| parse(&text).map_err(|reason| invalid(variable, reason)))
            .transpose()
    }

    fn required<T>(
        &self,
        variable: &Variable,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.parse(variable, parse)?
            .ok_or_else(|| invalid(variable, "is required"))
    }

    fn list(&self, variable: &Variable) -> Vec<String> {
        self.text(variable)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn invalid(variable: &Variable, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.name,
        reason: reason.into(),
    }
}

/// A whole number of at least `min`.
fn at_least<T: std::str::FromStr + PartialOrd + fmt::Display>(
    min: T,
) -> impl FnOnce(&str) -> Result<T, String> {
    move |text| match text.parse::<T>() {
        Ok(value) if value >= min => Ok(value),
        _ => Err(format!("must be a whole number of at least {min}")),
    }
}

/// A size in bytes: a whole number, or one with `KiB`, `MiB` or `GiB`.
fn bytes(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &text[digits.len()..] {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err("must be a size such as 1048576, 512MiB or 1GiB".into()),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .ok_or_else(|| "must be a size such as 1048576, 512MiB or 1GiB".into())
}

/// A duration such as `10s`, `500ms` or `30d`.
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|_| "must be a duration such as 10s, 5m or 30d".to_owned())
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        duration if duration.is_zero() => Err("must be longer than zero".into()),
        duration => Ok(duration),
    }
}

/// A network such as `10.0.0.0/8`, or one address.
fn network(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not a network such as 127.0.0.0/8"))
}

fn switch(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("must be on or off".into()),
    }
}

impl DatabaseConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let url = env.required(&DATABASE_URL, |url| {
            if ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                Ok(url.to_owned())
            } else {
                Err("must start with sqlite:, postgres:// or postgresql://".into())
            }
        })?;
        let max_connections = env.parse(&DATABASE_MAX_CONNECTIONS, at_least(1))?;
        Ok(DatabaseConfig {
            url: DatabaseUrl(url),
            max_connections,
        })
    }
}

/// `RETENTION`, for the subcommands that read it.
pub fn retention<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Retention, ConfigError> {
    env.required(&RETENTION, Retention::parse)
}

impl LogFormat {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let format = env.parse(&LOG_FORMAT, |text| match text {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be json or pretty".into()),
        })?;
        Ok(format.unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }))
    }
}

impl Config {
    /// Reads the configuration through `lookup` (tests pass their own).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::read_env(&Env::from_lookup(lookup))
    }

    /// Reads the configuration; an error names every bad variable at once, in one line (each
    /// one found is read as unset and the rest read again).
    pub fn read_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Config, ConfigError> {
        let mut found: Vec<ConfigError> = Vec::new();
        loop {
            let result = {
                let masked = Env::from_lookup(|name: &str| {
                    if found.iter().any(|error| error.variable == name) {
                        None
                    } else {
                        (env.lookup)(name)
                    }
                });
                Config::read_once(&masked)
            };
            match result {
                Ok(config) if found.is_empty() => return Ok(config),
                // Read as unset, a required variable fails again: nothing more to learn.
                Err(error) if !found.iter().any(|f| f.variable == error.variable) => {
                    found.push(error)
                }
                _ => break,
            }
        }
        let first = found.remove(0);
        let others: String = found.iter().map(|error| format!("; {error}")).collect();
        Err(ConfigError {
            variable: first.variable,
            reason: format!("{}{others}", first.reason),
        })
    }

    fn read_once<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Config, ConfigError> {
        let database = DatabaseConfig::from_env(env)?;
        let listen_addr = env.required(&LISTEN_ADDR, |text| {
            text.parse()
                .map_err(|_| "must be a socket address such as 127.0.0.1:8080".into())
        })?;

        let secret_texts = env.list(&WEBHOOK_SECRETS);
        let secrets = secret_texts
            .iter()
            .map(|text| Secret::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| invalid(&WEBHOOK_SECRETS, reason))?;
        if secrets.is_empty() {
            return Err(invalid(
                &WEBHOOK_SECRETS,
                "is required: at least one signing secret",
            ));
        }
        let hex_header = env.required(&WEBHOOK_SIGNATURE_HEADER, |text| {
            actix_web::http::header::HeaderName::try_from(text)
                .map(|_| text.to_ascii_lowercase())
                .map_err(|_| "is not a valid header name".into())
        })?;
        let tolerance_secs = env.required(&WEBHOOK_TOLERANCE_SECS, at_least(0))?;

        let api_tokens = env.list(&API_TOKENS);
        if api_tokens.is_empty() {
            return Err(invalid(
                &API_TOKENS,
                "is required: at least one bearer token",
            ));
        }
        let mut example_credentials = Vec::new();
        if secret_texts.iter().any(|secret| secret == EXAMPLE_SECRET) {
            example_credentials.push(WEBHOOK_SECRETS.name);
        }
        if api_tokens.iter().any(|token| token == EXAMPLE_TOKEN) {
            example_credentials.push(API_TOKENS.name);
        }

        let allowed = env
            .list(&DELIVERY_ALLOW_NETS)
            .iter()
            .map(|net| network(net))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| invalid(&DELIVERY_ALLOW_NETS, reason))?;
        let delivery = DeliveryConfig {
            dispatch: env.required(&DISPATCH, switch)?,
            max_retries: env.required(&DELIVERY_MAX_RETRIES, at_least(0))?,
            timeout: env.required(&DELIVERY_TIMEOUT, positive_duration)?,
            egress: Egress::new(allowed),
            concurrency_per_subscription: env
                .required(&DELIVERY_CONCURRENCY_PER_SUBSCRIPTION, at_least(1))?,
            disable_after: env.required(&DELIVERY_DISABLE_AFTER, positive_duration)?,
        };
        Ok(Config {
            database,
            listen_addr,
            verifier: Verifier {
                secrets,
                hex_header,
                tolerance_secs,
            },
            api_tokens: ApiTokens(api_tokens),
            auth_failure_limit: env.required(&AUTH_FAILURE_LIMIT, |text| match text {
                "off" => Ok(None),
                text => at_least(1u32)(text).map(Some),
            })?,
            console_idle_timeout: env.required(&CONSOLE_IDLE_TIMEOUT, duration)?,
            console_secure_cookie: env.required(&CONSOLE_SECURE_COOKIE, |text| match text {
                "auto" => Ok(None),
                "on" => Ok(Some(true)),
                "off" => Ok(Some(false)),
                _ => Err("must be auto, on or off".into()),
            })?,
            max_body_bytes: env.required(&MAX_BODY_BYTES, at_least(1))?,
            request_timeout: Duration::from_secs(env.required(&REQUEST_TIMEOUT_SECS, at_least(1))?),
            keep_alive: Duration::from_secs(env.required(&KEEP_ALIVE_SECS, at_least(0))?),
            max_connections: env.required(&MAX_CONNECTIONS, at_least(1))?,
            delivery,
            invalid_events: match env
                .required(&INVALID_EVENTS, |text| match text {
                    "quarantine" | "reject" => Ok(text.to_owned()),
                    _ => Err("must be quarantine or reject".into()),
                })?
                .as_str()
            {
                "reject" => InvalidEvents::Reject,
                _ => InvalidEvents::Quarantine(QuarantineLimits {
                    held: env.required(&QUARANTINE_MAX_HELD, at_least(0))?,
                    bytes: env.required(&QUARANTINE_MAX_BYTES, bytes)?,
                }),
            },
            retention: retention(env)?,
            example_credentials,
            log_format: LogFormat::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    const REQUIRED: [(&str, &str); 2] = [("WEBHOOK_SECRETS", "s3cr3t"), ("API_TOKENS", "tok")];

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let config = config(&REQUIRED).unwrap();
        assert_eq!(config.database.url.0, "sqlite://data/shipping.db");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.verifier.hex_header, "x-ecomm-signature");
        assert_eq!(config.verifier.tolerance_secs, 300);
        assert_eq!(config.max_body_bytes, 262_144);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.keep_alive, Duration::from_secs(5));
        assert_eq!(config.max_connections, 1024);
        assert!(config.delivery.dispatch);
        assert_eq!(config.delivery.max_retries, 5);
        assert_eq!(config.delivery.timeout, Duration::from_secs(10));
        assert!(config.delivery.egress.allowed_networks().is_empty());
        assert_eq!(config.delivery.concurrency_per_subscription, 8);
        assert_eq!(
            config.delivery.disable_after,
            Duration::from_secs(5 * 24 * 3600)
        );
        assert_eq!(
            config.invalid_events,
            InvalidEvents::Quarantine(QuarantineLimits {
                held: 100_000,
                bytes: 1 << 30
            })
        );
        assert_eq!(
            config.retention.keep(),
            Some(Duration::from_secs(30 * 24 * 3600))
        );
    }

    #[test]
    fn each_misconfiguration_names_its_variable() {
        let cases = [
            ("WEBHOOK_SECRETS", ""),
            ("API_TOKENS", " , "),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_FORMAT", "xml"),
            ("LISTEN_ADDR", "localhost"),
            ("MAX_BODY_BYTES", "-1"),
            ("REQUEST_TIMEOUT_SECS", "0"),
            ("MAX_CONNECTIONS", "none"),
            ("DISPATCH", "maybe"),
            ("DELIVERY_MAX_RETRIES", "-2"),
            ("DELIVERY_TIMEOUT", "soon"),
            ("DELIVERY_TIMEOUT", "0s"),
            ("DELIVERY_ALLOW_NETS", "127.0.0.0/8, localhost"),
            ("DELIVERY_CONCURRENCY_PER_SUBSCRIPTION", "0"),
            ("DELIVERY_DISABLE_AFTER", "never"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("RETENTION", "forever"),
            ("INVALID_EVENTS", "drop"),
            ("QUARANTINE_MAX_HELD", "many"),
            ("QUARANTINE_MAX_BYTES", "1TB"),
            ("RETENTION", "0s"),
            ("WEBHOOK_SECRETS", "whsec_%%%"),
        ];
        for (variable, value) in cases {
            let mut vars = REQUIRED.to_vec();
            vars.retain(|(name, _)| *name != variable);
            vars.push((variable, value));
            let error = config(&vars).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
            assert!(error.to_string().starts_with(variable));
        }
    }

    #[test]
    fn debug_output_hides_secrets_tokens_and_database_credentials() {
        let config = config(&[
            ("WEBHOOK_SECRETS", "topsecret1"),
            ("API_TOKENS", "tokenvalue1"),
            ("DATABASE_URL", "postgres://user:hunter2@db/x"),
        ])
        .unwrap();
        let debug = format!("{config:?}");
        for secret in ["topsecret1", "tokenvalue1", "hunter2"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn the_example_secret_and_token_are_noticed() {
        let example = config(&[
            ("WEBHOOK_SECRETS", "new,s3cr3t_k3y_f0r_w3bh00k_s1gn4tur3"),
            ("API_TOKENS", "dev-token"),
        ])
        .unwrap();
        assert_eq!(
            example.example_credentials,
            ["WEBHOOK_SECRETS", "API_TOKENS"]
        );
        assert!(config(&REQUIRED).unwrap().example_credentials.is_empty());
    }

    #[test]
    fn every_bad_variable_is_named_at_once() {
        let mut vars = REQUIRED.to_vec();
        vars.extend([("DISPATCH", "maybe"), ("RETENTION", "banana")]);
        let error = config(&vars).unwrap_err().to_string();
        assert!(error.starts_with("DISPATCH: "), "{error}");
        assert!(error.contains("; RETENTION: "), "{error}");
        let missing = config(&[("API_TOKENS", "tok")]).unwrap_err().to_string();
        assert!(missing.starts_with("WEBHOOK_SECRETS: "), "{missing}");
    }

    #[test]
    fn tokens_are_matched_exactly() {
        let tokens = ApiTokens(vec!["alpha".into(), "beta".into()]);
        assert!(tokens.accepts("beta"));
        assert!(!tokens.accepts("bet"));
        assert!(!tokens.accepts(""));
    }

    /// The README's configuration table is this module's list, row for row: a variable added
    /// here without its row (or a default changed on one side) fails here, printing the table
    /// to paste.
    #[test]
    fn the_readme_table_lists_every_variable_with_its_default() {
        let mut table = String::from("| variable | meaning | default |\n|---|---|---|\n");
        for variable in SERVE {
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                variable.name,
                variable.meaning,
                variable.fallback.describe()
            ));
        }
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&table),
            "README.md's configuration table should read:\n{table}"
        );
        let example = include_str!("../.env.example");
        for variable in SERVE {
            assert!(
                example.contains(variable.name),
                ".env.example lacks {}",
                variable.name
            );
        }
    }
}
