//! `/metrics` in the Prometheus text format; open like the probes, and free of shipment data.
//! Served even when the database is not: the outbox and quarantine gauges then keep their last
//! values.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    let outbox = state.store.delivery_stats().await.ok();
    let held = state.store.quarantine_held().await.ok();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(
            state.store.pool_usage(),
            state.store.writer_races(),
            outbox,
            held,
        ))
}
