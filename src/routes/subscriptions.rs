//! `/subscriptions`: who hears of every shipment change, and with which secret. The secret is
//! shown once at creation and then only by `GET /subscriptions/{id}/secret`, never in a list.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Authorized;
use super::{by_id, json_body, not_found, page_request, path_id, Listing};
use crate::domain::subscription::{new_secret, without_userinfo};
use crate::domain::{FieldError, NewSubscription, Subscription, SubscriptionPatch};
use crate::problem::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The answer to a creation: the subscription and, this once, its secret.
#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    subscription: Subscription,
    secret: String,
}

pub async fn create(
    _: Authorized,
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let new = NewSubscription::parse(&json_body(&request, &body)?)
        .map_err(ApiError::invalid("subscription"))?;
    reachable(&state, "subscription", &new.url)?;
    let secret = new_secret();
    let subscription = state.store.create_subscription(&new, &secret).await?;
    tracing::info!(
        subscription_id = %subscription.id,
        url = %without_userinfo(&subscription.url),
        "subscription created"
    );
    Ok(HttpResponse::Created().json(Created {
        subscription,
        secret,
    }))
}

pub async fn list(
    _: Authorized,
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    Ok(HttpResponse::Ok().json(Listing::from(state.store.subscriptions(page).await?)))
}

pub async fn get(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subscription = by_id(&id, "subscription", |id| state.store.subscription(id)).await?;
    Ok(HttpResponse::Ok().json(subscription))
}

pub async fn secret(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let secret = by_id(&id, "subscription", |id| {
        state.store.subscription_secret(id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "secret": secret })))
}

pub async fn update(
    _: Authorized,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "subscription")?;
    let patch = SubscriptionPatch::parse(&json_body(&request, &body)?)
        .map_err(ApiError::invalid("subscription change"))?;
    if let Some(url) = &patch.url {
        reachable(&state, "subscription change", url)?;
    }
    let subscription = state
        .store
        .update_subscription(id, &patch)
        .await?
        .ok_or_else(|| not_found("subscription", id))?;
    Ok(HttpResponse::Ok().json(subscription))
}

pub async fn delete(
    _: Authorized,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "subscription")?;
    if !state.store.delete_subscription(id).await? {
        return Err(not_found("subscription", id));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Queues every failed delivery of the subscription made since `since` again.
pub async fn recover(
    _: Authorized,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let since = since(&json_body(&request, &body)?)?;
    let subscription = by_id(&id, "subscription", |id| state.store.subscription(id)).await?;
    let id = subscription.id;
    if !subscription.active {
        return Err(ApiError::Conflict(
            "the subscription is inactive: activate it (PATCH {\"active\": true}) first".into(),
        ));
    }
    let queued = state.store.requeue(None, Some((id, since))).await?;
    Ok(HttpResponse::Ok().json(json!({ "queued": queued })))
}

/// A URL whose host is an address deliveries may not reach is refused now, not at the first
/// delivery. (A name is checked each time it is resolved.)
fn reachable(state: &AppState, what: &'static str, url: &str) -> Result<(), ApiError> {
    state
        .egress
        .check_subscription_url(url)
        .map_err(|error| ApiError::Invalid {
            what,
            errors: vec![error],
        })
}

fn since(body: &serde_json::Value) -> Result<DateTime<Utc>, ApiError> {
    body.get("since")
        .and_then(|since| since.as_str())
        .and_then(|since| DateTime::parse_from_rfc3339(since).ok())
        .map(|since| since.with_timezone(&Utc))
        .ok_or_else(|| ApiError::Invalid {
            what: "recovery request",
            errors: vec![FieldError {
                field: "since".into(),
                message: "must be an RFC 3339 date-time",
            }],
        })
}
