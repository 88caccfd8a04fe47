//! `GET /events`: the idempotency record, newest first, for operators tracing a delivery or
//! reading one order's history.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::Authorized;
use super::{page_request, text_filter, Listing};
use crate::domain::Outcome;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::EventFilter;

#[derive(Deserialize)]
pub struct EventsQuery {
    order_id: Option<String>,
    outcome: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    _: Authorized,
    query: web::Query<EventsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let filter = EventFilter {
        order_id: query
            .order_id
            .map(|id| text_filter("order_id", id))
            .transpose()?,
        outcome: query
            .outcome
            .map(|outcome| {
                Outcome::parse(&outcome).ok_or_else(|| {
                    ApiError::BadQuery(format!(
                        "outcome must be one of: {}",
                        Outcome::ALL.map(Outcome::as_str).join(", ")
                    ))
                })
            })
            .transpose()?,
    };
    let events = state.store.events(&filter, page).await?;
    Ok(HttpResponse::Ok().json(Listing::from(events)))
}
