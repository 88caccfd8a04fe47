//! The HTTP surface: which handler serves which path, and how extractor failures become
//! problem responses instead of actix's plain-text defaults.

mod auth;
mod deliveries;
mod events;
mod health;
mod metrics;
mod quarantine;
mod shipments;
mod subscriptions;
mod webhooks;

use actix_web::http::header;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::platform::Platform;
use crate::problem::ApiError;
use crate::store::{Cursor, Page, PageRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|error, _: &HttpRequest| ApiError::BadQuery(error.to_string()).into()),
    )
    .service(only("POST", "/webhooks/order_events").route(web::post().to(webhooks::receive)))
    .service(
        only("POST", "/webhooks/shopify").route(web::post().to(|request, payload, state| {
            webhooks::receive_from(Platform::Shopify, request, payload, state)
        })),
    )
    .service(only("POST", "/webhooks/woocommerce").route(web::post().to(
        |request, payload, state| {
            webhooks::receive_from(Platform::WooCommerce, request, payload, state)
        },
    )))
    .service(only("GET, HEAD", "/shipments").route(get().to(shipments::list)))
    .service(
        only("GET, HEAD, PATCH", "/shipments/{id}")
            .route(get().to(shipments::get))
            .route(web::patch().to(shipments::patch)),
    )
    .service(only("GET, HEAD", "/events").route(get().to(events::list)))
    .service(
        only("GET, HEAD, POST", "/subscriptions")
            .route(get().to(subscriptions::list))
            .route(web::post().to(subscriptions::create)),
    )
    .service(
        only("GET, HEAD, PATCH, DELETE", "/subscriptions/{id}")
            .route(get().to(subscriptions::get))
            .route(web::patch().to(subscriptions::update))
            .route(web::delete().to(subscriptions::delete)),
    )
    .service(only("GET, HEAD", "/subscriptions/{id}/secret").route(get().to(subscriptions::secret)))
    .service(
        only("POST", "/subscriptions/{id}/recover").route(web::post().to(subscriptions::recover)),
    )
    .service(only("GET, HEAD", "/deliveries").route(get().to(deliveries::list)))
    .service(only("GET, HEAD", "/deliveries/{id}").route(get().to(deliveries::get)))
    .service(only("POST", "/deliveries/{id}/retry").route(web::post().to(deliveries::retry)))
    .service(only("GET, HEAD", "/quarantine").route(get().to(quarantine::list)))
    .service(only("GET, HEAD", "/quarantine/{id}").route(get().to(quarantine::get)))
    .service(only("POST", "/quarantine/{id}/replay").route(web::post().to(quarantine::replay)))
    .service(only("POST", "/quarantine/{id}/discard").route(web::post().to(quarantine::discard)))
    .service(only("GET, HEAD", "/healthz").route(get().to(health::alive)))
    .service(only("GET, HEAD", "/readyz").route(get().to(health::ready)))
    .service(only("GET, HEAD", "/metrics").route(get().to(metrics::scrape)))
    .default_service(web::to(|request: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::NotFound(format!(
            "no resource at {}",
            request.path()
        )))
    }));
}

/// GET, and HEAD with the same headers and no body (actix drops a HEAD answer's body), as
/// HTTP expects of every resource that answers GET.
fn get() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
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

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn require_json(request: &HttpRequest) -> Result<(), ApiError> {
    let essence = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim());
    match essence {
        Some(essence) if essence.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMedia),
    }
}

/// A JSON request body: declared `application/json` (else 415) and well-formed (else 400).
/// What it must contain is for `domain` to say (422).
fn json_body(request: &HttpRequest, body: &web::Bytes) -> Result<serde_json::Value, ApiError> {
    require_json(request)?;
    serde_json::from_slice(body).map_err(|error| ApiError::NotJson(error.to_string()))
}

/// An id in a path: anything but a UUID names nothing here (404, not 400).
/// The `what` whose id is in the path, as `load` finds it: 404 when the id is not a UUID or
/// nothing has it.
async fn by_id<T, Fut>(
    id: &str,
    what: &'static str,
    load: impl FnOnce(Uuid) -> Fut,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<Option<T>, crate::store::StoreError>>,
{
    let id = path_id(id, what)?;
    load(id).await?.ok_or_else(|| not_found(what, id))
}

fn path_id(id: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| not_found(what, id))
}

fn not_found(what: &'static str, id: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("no {what} with id {id}"))
}
