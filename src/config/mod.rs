//! Configuration from the environment (and `.env`, loaded by `main`) into plain data. Every
//! variable is defined once, in the [`Variable`]s of `catalogue.rs`: parsing reads them, an error names the variable, each
//! subcommand's `--help` lists the ones it reads, and a test keeps the README's table the same.
//! Secrets never show up in `Debug` output.

use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::domain::platform::Platform;
use crate::domain::Retention;
use crate::signature::{PlatformVerifier, Secret, Verifier};

mod catalogue;
mod values;
pub use catalogue::*;
use values::{at_least, bytes, duration, network, positive_duration, switch};

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub listen_addr: SocketAddr,
    pub verifier: Verifier,
    /// The shop platforms whose secrets are set; the others' endpoints answer 404.
    pub platforms: Vec<PlatformVerifier>,
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
    /// Networks deliveries may reach although private, loopback or link-local.
    pub allow_nets: Vec<ipnet::IpNet>,
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
        let mut platforms = Vec::new();
        for (platform, variable) in [
            (Platform::Shopify, &SHOPIFY_WEBHOOK_SECRETS),
            (Platform::WooCommerce, &WOOCOMMERCE_WEBHOOK_SECRETS),
        ] {
            let secrets = env
                .list(variable)
                .iter()
                .map(|text| Secret::parse(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| invalid(variable, reason))?;
            if !secrets.is_empty() {
                platforms.push(PlatformVerifier { platform, secrets });
            }
        }

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
            allow_nets: allowed,
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
            platforms,
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
        assert!(config.delivery.allow_nets.is_empty());
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
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&table),
            "README.md's configuration table should read:\n{table}"
        );
        let example = include_str!("../../.env.example");
        for variable in SERVE {
            assert!(
                example.contains(variable.name),
                ".env.example lacks {}",
                variable.name
            );
        }
    }
}
