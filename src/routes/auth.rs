//! Bearer-token authentication for the REST API, as an extractor: a handler that takes
//! [`Authorized`] cannot run for an unauthenticated request.

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
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let accepted = match (token, request.app_data::<web::Data<AppState>>()) {
            (Some(token), Some(state)) => state.api_tokens.accepts(token),
            _ => false,
        };
        ready(if accepted {
            Ok(Authorized)
        } else {
            Err(ApiError::BadToken)
        })
    }
}
