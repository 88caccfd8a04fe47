//! `GET /shipments` and `GET /shipments/{id}`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Authorized;
use super::{page_request, text_filter, Listing};
use crate::domain::ShipmentStatus;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::ShipmentFilter;

#[derive(Deserialize)]
pub struct ShipmentsQuery {
    status: Option<String>,
    customer_id: Option<String>,
    order_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    _: Authorized,
    query: web::Query<ShipmentsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let status = query
        .status
        .map(|status| {
            ShipmentStatus::parse(&status).ok_or_else(|| {
                ApiError::BadQuery(format!(
                    "status must be one of: {}",
                    ShipmentStatus::ALL.map(ShipmentStatus::as_str).join(", ")
                ))
            })
        })
        .transpose()?;
    let filter = ShipmentFilter {
        status,
        customer_id: query
            .customer_id
            .map(|id| text_filter("customer_id", id))
            .transpose()?,
        order_id: query
            .order_id
            .map(|id| text_filter("order_id", id))
            .transpose()?,
    };
    let shipments = state.store.shipments(&filter, page).await?;
    Ok(HttpResponse::Ok().json(Listing::from(shipments)))
}

pub async fn get(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Not a UUID means no shipment has that id: 404, not 400.
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let shipment = state.store.shipment(id).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(shipment))
}
