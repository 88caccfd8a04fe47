//! The variable catalogue: every variable the service reads, once, with what it means and
//! what holds when it is unset. Parsing (`config/mod.rs`), each subcommand's `--help` and the
//! test that keeps README's table equal all read it.

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
pub const SHOPIFY_WEBHOOK_SECRETS: Variable = Variable {
    name: "SHOPIFY_WEBHOOK_SECRETS",
    meaning: "the Shopify app's client secrets (or shop webhook signing keys), comma separated",
    fallback: Fallback::Described("unset: `POST /webhooks/shopify` answers 404"),
};
pub const WOOCOMMERCE_WEBHOOK_SECRETS: Variable = Variable {
    name: "WOOCOMMERCE_WEBHOOK_SECRETS",
    meaning: "the WooCommerce webhooks' secrets, comma separated",
    fallback: Fallback::Described("unset: `POST /webhooks/woocommerce` answers 404"),
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
pub const OTEL_EXPORTER_OTLP_ENDPOINT: Variable = Variable {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    meaning: "the OpenTelemetry collector that traces are exported to over OTLP; the other \
              standard `OTEL_*` variables apply (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` or \
              `grpc`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, \
              `OTEL_BSP_*`)",
    fallback: Fallback::Described("unset: no traces"),
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
    &SHOPIFY_WEBHOOK_SECRETS,
    &WOOCOMMERCE_WEBHOOK_SECRETS,
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
    &OTEL_EXPORTER_OTLP_ENDPOINT,
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
