//! Subscriptions: who hears of every shipment change. Create one (its secret is shown this
//! once), turn one on or off, delete one.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{page, redirect, respond, table, time, Notice, Section};
use super::session::{signed_in, Checked, NoFields, SignedIn};
use crate::domain::subscription::{new_secret, without_userinfo};
use crate::domain::{FieldError, NewSubscription, ShipmentChange, SubscriptionPatch};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::PageRequest;

#[derive(Deserialize)]
pub struct ListQuery {
    notice: Option<String>,
}

pub async fn list(
    signed_in: SignedIn,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let notice = query.notice.as_deref().and_then(Notice::parse);
    let body = listing(&state, &operator.csrf, &[]).await?;
    Ok(respond(
        StatusCode::OK,
        page(
            "Subscriptions",
            Section::Subscriptions,
            &operator.csrf,
            notice,
            body,
        ),
    ))
}

async fn listing(state: &AppState, csrf: &str, errors: &[FieldError]) -> Result<Markup, ApiError> {
    let subscriptions = state
        .store
        .subscriptions(PageRequest {
            limit: 500,
            after: None,
        })
        .await?;
    let rows = subscriptions
        .items
        .iter()
        .map(|s| {
            let types: Vec<&str> = s.event_types.iter().map(|t| t.as_str()).collect();
            vec![
                html! {
                    code { (without_userinfo(&s.url)) }
                    @if let Some(description) = &s.description { br; (description) }
                    br; small { "id " code { (s.id) } }
                },
                html! { (types.join(", ")) },
                html! {
                    @if s.active { "active" } @else {
                        "inactive"
                        @if let Some(reason) = s.deactivated_reason { " (" (reason.as_str()) ")" }
                    }
                },
                time(s.created_at),
                html! {
                    form method="post" action={ "/console/subscriptions/" (s.id) "/active" } class="inline" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="active" value=(if s.active { "false" } else { "true" });
                        button type="submit" class="secondary" { (if s.active { "Deactivate" } else { "Activate" }) }
                    }
                    form method="post" action={ "/console/subscriptions/" (s.id) "/delete" } class="inline"
                         data-confirm="Delete this subscription and its deliveries?" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" class="danger" { "Delete" }
                    }
                },
            ]
        })
        .collect();
    Ok(html! {
        (table(&["URL", "Event types", "State", "Created", ""], rows))
        h2 { "New subscription" }
        @if !errors.is_empty() {
            div class="notice notice-problem" role="alert" {
                p { "Not created:" }
                ul { @for error in errors { li { code { (error.field) } " " (error.message) } } }
            }
        }
        form method="post" action="/console/subscriptions" {
            input type="hidden" name="csrf" value=(csrf);
            label for="url" { "URL" }
            input id="url" name="url" type="url" required placeholder="https://example.com/hooks";
            fieldset {
                legend { "Event types" }
                @for change in ShipmentChange::ALL {
                    input type="checkbox" id=(field_of(change)) name=(field_of(change)) value="on" checked;
                    label class="inline" for=(field_of(change)) { (change.as_str()) }
                }
            }
            label for="description" { "Description" }
            input id="description" name="description";
            p { button type="submit" { "Create" } }
        }
    })
}

/// The form field of an event type's checkbox.
fn field_of(change: ShipmentChange) -> &'static str {
    match change {
        ShipmentChange::Created => "created",
        ShipmentChange::Updated => "updated",
        ShipmentChange::StatusChanged => "status_changed",
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    url: Option<String>,
    created: Option<String>,
    updated: Option<String>,
    status_changed: Option<String>,
    description: Option<String>,
}

/// Creates the subscription and shows its secret, this once (an answer, not a redirect: the
/// secret is nowhere to go back to).
pub async fn create(
    checked: Checked<CreateForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Checked { operator, form } = checked;
    let chosen: Vec<&str> = [
        (&form.created, ShipmentChange::Created),
        (&form.updated, ShipmentChange::Updated),
        (&form.status_changed, ShipmentChange::StatusChanged),
    ]
    .into_iter()
    .filter(|(checked, _)| checked.is_some())
    .map(|(_, change)| change.as_str())
    .collect();
    let mut body = serde_json::json!({ "url": form.url, "event_types": chosen });
    if let Some(description) = form.description.as_deref().filter(|d| !d.trim().is_empty()) {
        body["description"] = description.into();
    }
    // The same checks as the API's: the body, then where deliveries may go.
    let new = NewSubscription::parse(&body).and_then(|new| {
        state
            .egress
            .check_subscription_url(&new.url)
            .map(|()| new)
            .map_err(|error| vec![error])
    });
    let new = match new {
        Ok(new) => new,
        Err(errors) => {
            let listing = listing(&state, &operator.csrf, &errors).await?;
            return Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                page(
                    "Subscriptions",
                    Section::Subscriptions,
                    &operator.csrf,
                    None,
                    listing,
                ),
            ));
        }
    };
    let secret = new_secret();
    let subscription = state.store.create_subscription(&new, &secret).await?;
    tracing::info!(subscription_id = %subscription.id, url = %without_userinfo(&subscription.url), "subscription created in the console");
    let body = html! {
        p { "Deliveries to " code { (without_userinfo(&subscription.url)) } " are signed with this secret. "
            "Copy it now: this page shows it once (the API's "
            code { "GET /subscriptions/" (subscription.id) "/secret" } " still can)." }
        p class="secret" { (secret) }
        p { a href="/console/subscriptions" { "All subscriptions" } }
    };
    Ok(respond(
        StatusCode::CREATED,
        page(
            "Subscription created",
            Section::Subscriptions,
            &operator.csrf,
            None,
            body,
        ),
    ))
}

#[derive(Deserialize)]
pub struct ActiveForm {
    active: Option<String>,
}

pub async fn set_active(
    id: web::Path<String>,
    checked: Checked<ActiveForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Checked { form, .. } = checked;
    if let Ok(id) = Uuid::parse_str(&id) {
        let patch = SubscriptionPatch {
            active: Some(form.active.as_deref() == Some("true")),
            ..SubscriptionPatch::default()
        };
        state.store.update_subscription(id, &patch).await?;
    }
    Ok(back(Notice::SubscriptionChanged))
}

pub async fn delete(
    id: web::Path<String>,
    _: Checked<NoFields>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Ok(id) = Uuid::parse_str(&id) {
        state.store.delete_subscription(id).await?;
    }
    Ok(back(Notice::SubscriptionDeleted))
}

fn back(notice: Notice) -> HttpResponse {
    redirect(&format!("/console/subscriptions?notice={}", notice.code()))
}
