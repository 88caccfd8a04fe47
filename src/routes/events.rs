//! `GET /events`: the idempotency record, newest first, for operators tracing a delivery.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::Authorized;
use super::{page_request, Listing};
use crate::problem::ApiError;
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct EventsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    _: Authorized,
    query: web::Query<EventsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let events = state.store.events(page).await?;
    Ok(HttpResponse::Ok().json(Listing::from(events)))
}
