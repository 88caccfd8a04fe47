//! `/metrics` in the Prometheus text format; open like the probes, and free of shipment data.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(state.store.pool_usage()))
}
