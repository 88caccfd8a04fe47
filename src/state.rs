//! What every handler may use, shared by all workers: below the routes, the console and the
//! startup code, so that imports run one way (startup → routes, console → intake → state).

use crate::config::{ApiTokens, InvalidEvents};
use crate::dispatch::egress::Egress;
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::signature::{PlatformVerifier, Verifier};
use crate::store::Store;
use crate::throttle::AuthThrottle;

pub struct AppState {
    pub store: Store,
    pub verifier: Verifier,
    /// The shop platforms whose endpoints are on.
    pub platforms: Vec<PlatformVerifier>,
    pub api_tokens: ApiTokens,
    /// Slows the guessing of tokens, per peer address.
    pub auth_throttle: AuthThrottle,
    /// How long an unused console session lasts.
    pub console_idle_timeout: std::time::Duration,
    /// `CONSOLE_SECURE_COOKIE`: `None` follows the request's scheme.
    pub console_secure_cookie: Option<bool>,
    /// Where deliveries may go: a subscription to an address that is not is refused.
    pub egress: Egress,
    pub max_body_bytes: usize,
    /// What becomes of an authentic event the service cannot apply.
    pub invalid_events: InvalidEvents,
    /// The longest a client may take to send a webhook body.
    pub request_timeout: std::time::Duration,
    pub metrics: Metrics,
}

impl AppState {
    /// Whether `token`, presented on `surface` (`api`, `console`), is one of the service's:
    /// refused at once while its peer address is held back, counted against it when wrong.
    pub fn check_token(
        &self,
        request: &actix_web::HttpRequest,
        token: &str,
        surface: &'static str,
    ) -> Result<(), ApiError> {
        let peer = request.peer_addr().map(|address| address.ip());
        let now = std::time::Instant::now();
        if let Some(wait) = self.auth_throttle.refused_for(peer, now) {
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(ApiError::TooManyFailures { retry_after });
        }
        if self.api_tokens.accepts(token) {
            return Ok(());
        }
        self.auth_throttle.failed(peer, now);
        self.metrics.auth_failure(surface);
        let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
        tracing::warn!(%peer, surface, "a wrong token was presented");
        Err(ApiError::BadToken)
    }
}
