//! Overview: what `status` prints, and charts of the last hour: events by outcome, delivery
//! attempts by result; pending and failed deliveries, the oldest pending one's age, held
//! quarantine.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::html;

use super::charts::{chart, minutes, per_minute, Series};
use super::layout::{maybe_time, page, respond, table, Section};
use super::session::{signed_in, SignedIn};
use crate::domain::Outcome;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::Counting;

/// A colour per outcome, distinct enough side by side.
fn outcome_color(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Processed => "#0b57a4",
        Outcome::Updated => "#3b8eea",
        Outcome::Stale => "#8a96a8",
        Outcome::TooLate => "#6b4fa0",
        Outcome::Parked => "#c38a00",
        Outcome::Duplicate => "#b8c4d6",
        Outcome::Ignored => "#5b6b3a",
    }
}

pub async fn page_(
    signed_in: SignedIn,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operator = signed_in!(signed_in);
    let now = chrono::Utc::now();
    let report = state.store.status(Counting::Estimated).await?;
    let deliveries = state.store.delivery_stats().await?;
    let activity = state
        .store
        .activity(now - chrono::Duration::minutes(charts_span()))
        .await?;
    let minutes = minutes(now);
    let events: Vec<Series> = Outcome::ALL
        .into_iter()
        .map(|outcome| Series {
            label: outcome.as_str(),
            color: outcome_color(outcome),
            counts: per_minute(&minutes, &activity.events, &outcome.as_str().to_owned()),
        })
        .collect();
    let attempts = [
        Series {
            label: "delivered",
            color: "#1d7a3a",
            counts: per_minute(&minutes, &activity.attempts, &true),
        },
        Series {
            label: "not delivered",
            color: "#9b1c1c",
            counts: per_minute(&minutes, &activity.attempts, &false),
        },
    ];
    let oldest = deliveries.oldest_pending_age.map(|age| {
        humantime::format_duration(std::time::Duration::from_secs(age.as_secs())).to_string()
    });
    let count_rows = |counts: &[(String, i64)]| {
        counts
            .iter()
            .map(|(name, count)| vec![html! { (name) }, html! { (count) }])
            .collect::<Vec<_>>()
    };
    let body = html! {
        p { "Database: " (state.store.describe()) }
        div class="cards" {
            div class="card" {
                h2 { "Deliveries" }
                dl {
                    dt { "Pending" } dd { (report.pending_deliveries) }
                    dt { "Failed" } dd { a href="/console/deliveries?status=failed" { (report.failed_deliveries) } }
                    dt { "Oldest pending" } dd { (oldest.as_deref().unwrap_or("none")) }
                }
            }
            div class="card" {
                h2 { "Quarantine" }
                dl {
                    dt { "Held" } dd { a href="/console/quarantine?status=held" { (report.quarantine_held) } }
                }
            }
            div class="card" {
                h2 { "Shipments by status" }
                (table(&["Status", "Shipments"], count_rows(&report.shipments)))
                @if report.approximate {
                    p class="note" { "≈ the database's estimates: the largest tables are not counted on this page (shipping-service status counts them)." }
                }
            }
            div class="card" {
                h2 { "Events of the last hour" }
                (table(&["Outcome", "Events"], count_rows(&report.recent_events)))
            }
            div class="card" {
                h2 { "Subscriptions" }
                (table(&["State", "Subscriptions"], count_rows(&report.subscriptions)))
            }
        }
        (chart("Events by outcome", &events))
        p class="note" {
            "An event delivered again under an id already recorded is answered duplicate without \
             a new record, so it is not in this chart; /metrics counts every answer \
             (webhook_events_total)."
        }
        (chart("Delivery attempts by result", &attempts))
        h2 { "Tables" }
        (table(
            &["Table", "Rows", "Oldest record"],
            report.tables.iter().map(|t| vec![
                html! { code { (t.table) } },
                html! { @if t.estimated { "≈ " } (t.rows) },
                maybe_time(t.oldest),
            ]).collect(),
        ))
    };
    Ok(respond(
        StatusCode::OK,
        page("Overview", Section::Overview, &operator.csrf, None, body),
    ))
}

/// The minutes the charts look back.
fn charts_span() -> i64 {
    super::charts::MINUTES as i64
}
