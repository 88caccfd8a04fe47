//! The HTTP surface: which handler serves which path, and how extractor failures become
//! problem responses instead of actix's plain-text defaults.

mod auth;
mod events;
mod health;
mod metrics;
mod shipments;
mod webhooks;

use actix_web::{web, HttpRequest};
use serde::Serialize;

use crate::problem::ApiError;
use crate::store::{Cursor, Page, PageRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|error, _: &HttpRequest| ApiError::BadQuery(error.to_string()).into()),
    )
    .route("/webhooks/order_events", web::post().to(webhooks::receive))
    .route("/shipments", web::get().to(shipments::list))
    .route("/shipments/{id}", web::get().to(shipments::get))
    .route("/events", web::get().to(events::list))
    .route("/healthz", web::get().to(health::alive))
    .route("/readyz", web::get().to(health::ready))
    .route("/metrics", web::get().to(metrics::scrape))
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
    }));
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
