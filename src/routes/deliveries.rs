//! `/deliveries`: every outbound delivery, its attempts, and a way to send a failed one again.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::Authorized;
use super::{by_id, not_found, page_request, path_id, Listing};
use crate::domain::DeliveryStatus;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::DeliveryFilter;

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    subscription_id: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    _: Authorized,
    query: web::Query<DeliveriesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let filter = DeliveryFilter {
        shipment_id: None,
        subscription_id: query
            .subscription_id
            .map(|id| {
                uuid::Uuid::parse_str(&id)
                    .map_err(|_| ApiError::BadQuery("subscription_id must be a UUID".into()))
            })
            .transpose()?,
        status: query
            .status
            .map(|status| {
                DeliveryStatus::parse(&status).ok_or_else(|| {
                    ApiError::BadQuery("status must be one of: pending, delivered, failed".into())
                })
            })
            .transpose()?,
    };
    let deliveries = state.store.deliveries(&filter, page).await?;
    Ok(HttpResponse::Ok().json(Listing::from(deliveries)))
}

pub async fn get(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let delivery = by_id(&id, "delivery", |id| state.store.delivery(id)).await?;
    Ok(HttpResponse::Ok().json(delivery))
}

/// Queues a failed delivery again, with a fresh count of retries. The store decides which
/// deliveries may be queued again; a delivery it did not queue is answered with its status.
pub async fn retry(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "delivery")?;
    let queued = state.store.requeue(Some(id), None).await?;
    let delivery = state
        .store
        .delivery(id)
        .await?
        .ok_or_else(|| not_found("delivery", id))?;
    if queued == 0 && delivery.status == DeliveryStatus::REQUEUEABLE {
        return Err(ApiError::Conflict(
            "its subscription is inactive: activate it (PATCH {\"active\": true}) first".into(),
        ));
    }
    if queued == 0 {
        return Err(ApiError::Conflict(format!(
            "only a {} delivery can be queued again; this one is {}",
            DeliveryStatus::REQUEUEABLE.as_str(),
            delivery.status.as_str()
        )));
    }
    Ok(HttpResponse::Ok().json(delivery))
}
