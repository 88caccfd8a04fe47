//! Configuration from the environment (and `.env`, loaded by `main`). Every problem is reported
//! as one line naming the variable, and secrets never show up in `Debug` output.

use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::signature::{Secret, Verifier};

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub listen_addr: SocketAddr,
    pub verifier: Verifier,
    pub api_tokens: ApiTokens,
    pub max_body_bytes: usize,
    /// How long a client may take to send a whole request (headers, then body): 408 after.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// Open client connections this instance accepts at once; more wait in the backlog.
    pub max_connections: usize,
    pub database_max_connections: Option<u32>,
    /// Whether this instance delivers outbound events (`DISPATCH=off`: API only).
    pub dispatch: bool,
    /// Retries of an outbound delivery before it is `failed`.
    pub delivery_max_retries: u32,
    /// Variables that hold the example values of `.env.example`: fine on a laptop, a warning
    /// anywhere else.
    pub example_credentials: Vec<&'static str>,
    pub log_format: LogFormat,
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

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let database_url =
            var("DATABASE_URL").unwrap_or_else(|| "sqlite://data/shipping.db".into());
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }

        let listen_addr = var("LISTEN_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|_| {
                invalid(
                    "LISTEN_ADDR",
                    "must be a socket address such as 127.0.0.1:8080",
                )
            })?;

        let secrets = list(var("WEBHOOK_SECRETS"))
            .iter()
            .map(|text| Secret::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| invalid("WEBHOOK_SECRETS", reason))?;
        if secrets.is_empty() {
            return Err(invalid(
                "WEBHOOK_SECRETS",
                "is required: at least one signing secret",
            ));
        }
        let mut example_credentials = Vec::new();
        if list(var("WEBHOOK_SECRETS"))
            .iter()
            .any(|s| s == EXAMPLE_SECRET)
        {
            example_credentials.push("WEBHOOK_SECRETS");
        }
        let hex_header =
            var("WEBHOOK_SIGNATURE_HEADER").unwrap_or_else(|| "X-Ecomm-Signature".into());
        if actix_web::http::header::HeaderName::try_from(hex_header.as_str()).is_err() {
            return Err(invalid(
                "WEBHOOK_SIGNATURE_HEADER",
                "is not a valid header name",
            ));
        }
        let tolerance_secs = number(&var, "WEBHOOK_TOLERANCE_SECS")?.unwrap_or(300);

        let api_tokens = list(var("API_TOKENS"));
        if api_tokens.iter().any(|token| token == EXAMPLE_TOKEN) {
            example_credentials.push("API_TOKENS");
        }
        if api_tokens.is_empty() {
            return Err(invalid(
                "API_TOKENS",
                "is required: at least one bearer token",
            ));
        }

        let max_body_bytes = number(&var, "MAX_BODY_BYTES")?.unwrap_or(262_144);
        if max_body_bytes == 0 {
            return Err(invalid("MAX_BODY_BYTES", "must be at least 1"));
        }
        let request_timeout = number(&var, "REQUEST_TIMEOUT_SECS")?.unwrap_or(10);
        if request_timeout == 0 {
            return Err(invalid("REQUEST_TIMEOUT_SECS", "must be at least 1"));
        }
        let keep_alive = number(&var, "KEEP_ALIVE_SECS")?.unwrap_or(5);
        let max_connections = number(&var, "MAX_CONNECTIONS")?.unwrap_or(1024);
        if max_connections == 0 {
            return Err(invalid("MAX_CONNECTIONS", "must be at least 1"));
        }
        let database_max_connections = number(&var, "DATABASE_MAX_CONNECTIONS")?;
        if database_max_connections == Some(0) {
            return Err(invalid("DATABASE_MAX_CONNECTIONS", "must be at least 1"));
        }

        let dispatch = match var("DISPATCH").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => return Err(invalid("DISPATCH", "must be on or off")),
        };
        let delivery_max_retries = number(&var, "DELIVERY_MAX_RETRIES")?.unwrap_or(5);

        let log_format = match var("LOG_FORMAT").as_deref() {
            None if std::io::stdout().is_terminal() => LogFormat::Pretty,
            None => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(invalid("LOG_FORMAT", "must be json or pretty")),
        };

        Ok(Config {
            database_url: DatabaseUrl(database_url),
            listen_addr,
            verifier: Verifier {
                secrets,
                hex_header: hex_header.to_ascii_lowercase(),
                tolerance_secs,
            },
            api_tokens: ApiTokens(api_tokens),
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(request_timeout),
            keep_alive: Duration::from_secs(keep_alive),
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            database_max_connections: database_max_connections
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            dispatch,
            delivery_max_retries: u32::try_from(delivery_max_retries).unwrap_or(u32::MAX),
            example_credentials,
            log_format,
        })
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<u64>, ConfigError> {
    var(name)
        .map(|value| {
            value
                .parse()
                .map_err(|_| invalid(name, "must be a whole number"))
        })
        .transpose()
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
        assert_eq!(config.database_url.0, "sqlite://data/shipping.db");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.verifier.hex_header, "x-ecomm-signature");
        assert_eq!(config.verifier.tolerance_secs, 300);
        assert_eq!(config.max_body_bytes, 262_144);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.keep_alive, Duration::from_secs(5));
        assert_eq!(config.max_connections, 1024);
        assert!(config.dispatch);
        assert_eq!(config.delivery_max_retries, 5);
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
    fn tokens_are_matched_exactly() {
        let tokens = ApiTokens(vec!["alpha".into(), "beta".into()]);
        assert!(tokens.accepts("beta"));
        assert!(!tokens.accepts("bet"));
        assert!(!tokens.accepts(""));
    }
}
