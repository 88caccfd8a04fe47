//! What every handler may use, shared by all workers: below the routes, the console and the
//! startup code, so that imports run one way (startup → routes, console → intake → state).

use crate::config::{ApiTokens, InvalidEvents};
use crate::dispatch::egress::Egress;
use crate::metrics::Metrics;
use crate::signature::Verifier;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub verifier: Verifier,
    pub api_tokens: ApiTokens,
    /// Where deliveries may go: a subscription to an address that is not is refused.
    pub egress: Egress,
    pub max_body_bytes: usize,
    /// What becomes of an authentic event the service cannot apply.
    pub invalid_events: InvalidEvents,
    /// The longest a client may take to send a webhook body.
    pub request_timeout: std::time::Duration,
    pub metrics: Metrics,
}
