//! The HTTP surface: which handler serves which path, and how extractor failures become
//! problem responses instead of actix's plain-text defaults.

mod auth;
mod events;
mod health;
mod metrics;
mod shipments;
mod webhooks;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::problem::ApiError;
use crate::store::{Cursor, Page, PageRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|error, _: &HttpRequest| ApiError::BadQuery(error.to_string()).into()),
    )
    .service(only("POST", "/webhooks/order_events").route(web::post().to(webhooks::receive)))
    .service(only("GET", "/shipments").route(web::get().to(shipments::list)))
    .service(only("GET", "/shipments/{id}").route(web::get().to(shipments::get)))
    .service(only("GET", "/events").route(web::get().to(events::list)))
    .service(only("GET", "/healthz").route(web::get().to(health::alive)))
    .service(only("GET", "/readyz").route(web::get().to(health::ready)))
    .service(only("GET", "/metrics").route(web::get().to(metrics::scrape)))
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::NotFound)
    }));
}

/// A resource that answers other methods with 405 and the `Allow` header.
fn only(allow: &'static str, path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
    }))
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// `limit` and `cursor` as every list endpoint takes them.
fn page_request(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::BadQuery(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    let after = cursor
        .map(Cursor::decode)
        .transpose()
        .map_err(|error| ApiError::BadQuery(format!("cursor: {error}")))?;
    Ok(PageRequest { limit, after })
}

/// The body of every list endpoint.
#[derive(Serialize)]
struct Listing<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

impl<T> From<Page<T>> for Listing<T> {
    fn from(page: Page<T>) -> Self {
        Listing {
            items: page.items,
            next_cursor: page.next.map(Cursor::encode),
        }
    }
}

/// No stored id contains NUL (the webhook refuses it), and PostgreSQL cannot even compare one.
fn text_filter(name: &str, value: String) -> Result<String, ApiError> {
    if value.contains('\0') {
        return Err(ApiError::BadQuery(format!(
            "{name} must not contain NUL characters"
        )));
    }
    Ok(value)
}
