//! Bearer-token authentication for the REST API, as an extractor: a handler that takes
//! [`Authorized`] cannot run for an unauthenticated request. A wrong token counts against its
//! peer address ([`crate::throttle`]); past the limit, a request with a token is answered 429.

use std::future::{ready, Ready};

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use crate::problem::ApiError;
use crate::state::AppState;

pub struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Authorized, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        let (Some(token), Some(state)) = (token, request.app_data::<web::Data<AppState>>()) else {
            return ready(Err(ApiError::BadToken));
        };
        ready(
            state
                .check_token(request, token, "api")
                .map(|()| Authorized),
        )
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme name is case-insensitive
/// (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc ", "  Bearer abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", ""] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
