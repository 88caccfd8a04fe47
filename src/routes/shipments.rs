//! `GET /shipments`, `GET /shipments/{id}` (with its `ETag`) and `PATCH /shipments/{id}`.

use crate::telemetry::traces::current_trace;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::Authorized;
use super::{by_id, json_body, not_found, page_request, path_id, text_filter, Listing};
use crate::domain::{Shipment, ShipmentPatch, ShipmentStatus};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::{Patched, ShipmentFilter};

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
    let shipment = by_id(&id, "shipment", |id| state.store.shipment(id)).await?;
    Ok(with_etag(&shipment))
}

/// An operator's change: a move, the carrier, the tracking number; optionally only if the
/// shipment is still at the revision the operator saw (`If-Match`).
pub async fn patch(
    _: Authorized,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "shipment")?;
    let patch = ShipmentPatch::parse(&json_body(&request, &body)?)
        .map_err(ApiError::invalid("shipment change"))?;
    let if_match = if_match(&request)?;
    match state
        .store
        .patch_shipment(id, &patch, if_match, current_trace())
        .await?
    {
        Patched::NotFound => Err(not_found("shipment", id)),
        Patched::Stale { revision } => Err(ApiError::PreconditionFailed(format!(
            "If-Match names revision \"{}\", but the shipment is at \"{revision}\"",
            if_match.unwrap_or_default()
        ))),
        Patched::Illegal(illegal) => Err(ApiError::Conflict(illegal.to_string())),
        Patched::Done(shipment) => Ok(with_etag(&shipment)),
    }
}

fn with_etag(shipment: &Shipment) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", shipment.revision)))
        .json(shipment)
}

/// `If-Match: "<revision>"` (or `*`, which any revision matches). A value that names no
/// revision can match none: 412.
fn if_match(request: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let revision = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|inner| inner.parse::<i64>().ok());
    revision.map(Some).ok_or_else(|| {
        ApiError::PreconditionFailed(format!(
            "If-Match must name a revision in quotes, such as \"3\"; {text:?} matches none"
        ))
    })
}
