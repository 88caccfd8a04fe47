//! Every error the API can answer with, and the one place that turns an error into an HTTP
//! status and an RFC 9457 `application/problem+json` body.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::FieldError;
use crate::signature::SignatureError;
use crate::store::StoreError;
use crate::telemetry::error_chain;

/// Seconds a sender or client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body must be sent as application/json")]
    UnsupportedMedia,
    #[error("the body is larger than the {limit} bytes this endpoint accepts")]
    TooLarge { limit: usize },
    #[error("the body could not be read completely")]
    UnreadableBody,
    #[error("the request was not received in time")]
    RequestTimeout,
    #[error("{0}")]
    BadSignature(#[from] SignatureError),
    #[error("a valid bearer token is required")]
    BadToken,
    /// Too many wrong tokens from this address lately: wait this many seconds.
    #[error("too many wrong tokens from this address; try again in {retry_after} s")]
    TooManyFailures { retry_after: u64 },
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// A body that parsed as JSON but is not a valid one of `what` ("event", "subscription"):
    /// every bad field is named.
    #[error("the {what} is not valid: {}", field_list(errors))]
    Invalid {
        what: &'static str,
        errors: Vec<FieldError>,
    },
    #[error("the event cannot be stored: a value is too large or not valid text")]
    Refused(#[source] StoreError),
    #[error("{0}")]
    BadQuery(String),
    /// Names what was not found: "no shipment with id …".
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the resource's state (an illegal move, names both).
    #[error("{0}")]
    Conflict(String),
    /// A quarantined event replayed already: replayed at most once.
    #[error("{0}")]
    AlreadyReplayed(String),
    /// `If-Match` names another revision than the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("this resource only answers {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] StoreError),
    #[error("an internal error occurred")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            // A race lost again and again: nothing was written, and a retry will see the
            // winner's rows.
            StoreError::Unavailable(_) | StoreError::Conflict(_) => ApiError::Unavailable(error),
            StoreError::Refused(_) => ApiError::Refused(error),
            StoreError::Internal(_) => ApiError::Internal(error.into()),
        }
    }
}

/// `a, b and c`: the fields a problem names, in its detail.
fn field_list(errors: &[FieldError]) -> String {
    let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
    match fields.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => fields.join(""),
    }
}

impl ApiError {
    /// The error for a body that is not a valid `what`, for `map_err`.
    pub fn invalid(what: &'static str) -> impl FnOnce(Vec<FieldError>) -> ApiError {
        move |errors| ApiError::Invalid { what, errors }
    }

    /// A stable machine-readable name: the problem type's last segment and the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::UnsupportedMedia => "unsupported-media-type",
            ApiError::TooLarge { .. } => "payload-too-large",
            ApiError::UnreadableBody => "unreadable-body",
            ApiError::RequestTimeout => "request-timeout",
            ApiError::BadSignature(_) => "invalid-signature",
            ApiError::BadToken => "unauthorized",
            ApiError::TooManyFailures { .. } => "too-many-failures",
            ApiError::NotJson(_) => "malformed-json",
            ApiError::Invalid { what: "event", .. } => "invalid-event",
            ApiError::Invalid { .. } => "invalid-body",
            ApiError::Refused(_) => "unstorable-event",
            ApiError::BadQuery(_) => "invalid-parameter",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::AlreadyReplayed(_) => "already-replayed",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::Unavailable(_) => "database-unavailable",
            ApiError::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> String {
        let title = match self {
            ApiError::UnsupportedMedia => "Unsupported media type",
            ApiError::TooLarge { .. } => "Payload too large",
            ApiError::UnreadableBody => "Unreadable body",
            ApiError::RequestTimeout => "Request timeout",
            ApiError::BadSignature(_) => "Invalid signature",
            ApiError::BadToken => "Unauthorized",
            ApiError::TooManyFailures { .. } => "Too many failed attempts",
            ApiError::NotJson(_) => "Malformed JSON",
            ApiError::Invalid { what, .. } => return format!("Invalid {what}"),
            ApiError::Refused(_) => "Invalid event",
            ApiError::BadQuery(_) => "Invalid parameter",
            ApiError::NotFound(_) => "Not found",
            ApiError::Conflict(_) => "Conflict",
            ApiError::AlreadyReplayed(_) => "Already replayed",
            ApiError::PreconditionFailed(_) => "Precondition failed",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal server error",
        };
        title.to_owned()
    }
}

/// RFC 9457 problem details.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnreadableBody | ApiError::NotJson(_) | ApiError::BadQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BadSignature(_) | ApiError::BadToken => StatusCode::UNAUTHORIZED,
            ApiError::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid { .. } | ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::AlreadyReplayed(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(error) => {
                tracing::error!(error = error_chain(error.as_ref()), "request failed")
            }
            ApiError::Refused(error) => {
                tracing::warn!(error = error_chain(error), "the database refused a value")
            }
            ApiError::Unavailable(error) => {
                tracing::warn!(error = error_chain(error), "database unavailable")
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        match self {
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            ApiError::BadToken => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::TooManyFailures { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            _ => {}
        }
        response.json(self.problem())
    }
}

impl ApiError {
    /// The RFC 9457 body of this error: what it answers, and what a quarantined event keeps
    /// as the problem it would have had.
    pub fn problem(&self) -> serde_json::Value {
        let problem = Problem {
            kind: format!("urn:shipping-service:problem:{}", self.kind()),
            title: self.title(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors: match self {
                ApiError::Invalid { errors, .. } => Some(errors),
                _ => None,
            },
        };
        serde_json::to_value(problem).expect("plain data always serialises")
    }
}
