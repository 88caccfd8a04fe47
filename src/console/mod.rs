//! The operator console (contract section 12): web pages for the people who run the service,
//! served by the same binary over the same store queries as the REST API. Plain HTML that works
//! without script (forms that POST, then a redirect), one embedded stylesheet and a small
//! optional script, nothing from another origin; each page module builds its page, `layout`
//! draws the frame, `session` signs operators in and guards every form.

mod charts;
mod deliveries;
mod events;
mod layout;
mod listing;
mod overview;
mod quarantine;
mod session;
mod shipments;
mod subscriptions;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// Nothing from another origin, no framing, no inline script or style, forms only to here.
const POLICY: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; \
                      base-uri 'none'; object-src 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, POLICY))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .app_data(web::FormConfig::default().limit(256 * 1024))
            .route("", web::get().to(session::home))
            .route("/", web::get().to(session::home))
            .route("/sign-in", web::get().to(session::sign_in_page))
            .route("/sign-in", web::post().to(session::sign_in))
            .route("/sign-out", web::post().to(session::sign_out))
            .route("/assets/console.css", web::get().to(stylesheet))
            .route("/assets/console.js", web::get().to(script))
            .route("/overview", web::get().to(overview::page_))
            .route("/shipments", web::get().to(shipments::list))
            .route("/shipments/{id}", web::get().to(shipments::show))
            .route("/shipments/{id}/move", web::post().to(shipments::move_))
            .route("/events", web::get().to(events::list))
            .route("/deliveries", web::get().to(deliveries::list))
            .route("/deliveries/recover", web::post().to(deliveries::recover))
            .route("/deliveries/{id}/retry", web::post().to(deliveries::retry))
            .route("/subscriptions", web::get().to(subscriptions::list))
            .route("/subscriptions", web::post().to(subscriptions::create))
            .route(
                "/subscriptions/{id}/active",
                web::post().to(subscriptions::set_active),
            )
            .route(
                "/subscriptions/{id}/delete",
                web::post().to(subscriptions::delete),
            )
            .route("/quarantine", web::get().to(quarantine::list))
            .route("/quarantine/{id}", web::get().to(quarantine::show))
            .route(
                "/quarantine/{id}/replay",
                web::post().to(quarantine::replay),
            )
            .route(
                "/quarantine/{id}/discard",
                web::post().to(quarantine::discard),
            ),
    );
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLESHEET)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}
