//! Probes: `/healthz` says the process serves, `/readyz` that it can commit a webhook now
//! (the database answers and the writer is not stuck).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::problem::ApiError;
use crate::state::AppState;

pub async fn alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ready().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
