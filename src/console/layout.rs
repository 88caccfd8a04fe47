//! The page every console page is drawn in: the navigation, the sign-out form, a notice after
//! an action; and the pieces pages share (tables that stack on a narrow screen, times, paging).

use actix_web::http::header;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

/// The pages of the navigation, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Shipments,
    Events,
    Deliveries,
    Subscriptions,
    Quarantine,
}

impl Section {
    const ALL: [Section; 6] = [
        Section::Overview,
        Section::Shipments,
        Section::Events,
        Section::Deliveries,
        Section::Subscriptions,
        Section::Quarantine,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Shipments => "Shipments",
            Section::Events => "Events",
            Section::Deliveries => "Deliveries",
            Section::Subscriptions => "Subscriptions",
            Section::Quarantine => "Quarantine",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Section::Overview => "/console/overview",
            Section::Shipments => "/console/shipments",
            Section::Events => "/console/events",
            Section::Deliveries => "/console/deliveries",
            Section::Subscriptions => "/console/subscriptions",
            Section::Quarantine => "/console/quarantine",
        }
    }
}

/// A page of a signed-in operator: `csrf` goes into the sign-out form.
pub fn page(
    title: &str,
    section: Section,
    csrf: &str,
    notice: Option<Notice>,
    body: Markup,
) -> Markup {
    shell(
        title,
        html! {
            header {
                nav aria-label="Console" {
                    ul {
                        @for item in Section::ALL {
                            li {
                                a href=(item.path())
                                  aria-current=[(item == section).then_some("page")] { (item.name()) }
                            }
                        }
                    }
                    form method="post" action="/console/sign-out" class="sign-out" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Sign out" }
                    }
                }
            }
            main {
                h1 { (title) }
                @if let Some(notice) = notice {
                    p class=(notice.class()) role="status" { (notice.text()) }
                }
                (body)
            }
        },
    )
}

/// A page with no navigation: the sign-in page, an error before signing in.
pub fn shell(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · shipping-service" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body { (content) }
        }
    }
}

/// An HTML answer.
pub fn respond(status: actix_web::http::StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// After a form: back to a page, with what happened (303, so a reload does not post again).
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// What an action did, told on the page it leads back to. A fixed set: a link cannot make the
/// console say anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Moved,
    Stale,
    Illegal,
    Invalid,
    Retried,
    NotRetried,
    Recovered(u64),
    SubscriptionChanged,
    SubscriptionDeleted,
    Discarded,
    NotDiscarded,
}

impl Notice {
    pub fn code(self) -> String {
        match self {
            Notice::Moved => "moved".into(),
            Notice::Stale => "stale".into(),
            Notice::Illegal => "illegal".into(),
            Notice::Invalid => "invalid".into(),
            Notice::Retried => "retried".into(),
            Notice::NotRetried => "not-retried".into(),
            Notice::Recovered(count) => format!("recovered-{count}"),
            Notice::SubscriptionChanged => "subscription-changed".into(),
            Notice::SubscriptionDeleted => "subscription-deleted".into(),
            Notice::Discarded => "discarded".into(),
            Notice::NotDiscarded => "not-discarded".into(),
        }
    }

    pub fn parse(code: &str) -> Option<Notice> {
        if let Some(count) = code.strip_prefix("recovered-") {
            return count.parse().ok().map(Notice::Recovered);
        }
        Some(match code {
            "moved" => Notice::Moved,
            "stale" => Notice::Stale,
            "illegal" => Notice::Illegal,
            "invalid" => Notice::Invalid,
            "retried" => Notice::Retried,
            "not-retried" => Notice::NotRetried,
            "subscription-changed" => Notice::SubscriptionChanged,
            "subscription-deleted" => Notice::SubscriptionDeleted,
            "discarded" => Notice::Discarded,
            "not-discarded" => Notice::NotDiscarded,
            _ => return None,
        })
    }

    fn text(self) -> String {
        match self {
            Notice::Moved => "Done: the shipment was changed.".into(),
            Notice::Stale => "Not done: the shipment changed since that page was shown. \
                              Here it is as it is now; choose again."
                .into(),
            Notice::Illegal => {
                "Not done: that move is not allowed from the shipment's status.".into()
            }
            Notice::Invalid => {
                "Not done: a value of the form is not valid (too long, or empty).".into()
            }
            Notice::Retried => "The delivery is queued again.".into(),
            Notice::NotRetried => "Not done: only a failed delivery can be queued again.".into(),
            Notice::Recovered(count) => format!("{count} failed deliveries are queued again."),
            Notice::SubscriptionChanged => "The subscription was changed.".into(),
            Notice::SubscriptionDeleted => "The subscription was deleted.".into(),
            Notice::Discarded => "The event was discarded.".into(),
            Notice::NotDiscarded => "Not done: a replayed event cannot be discarded.".into(),
        }
    }

    fn class(self) -> &'static str {
        match self {
            Notice::Stale
            | Notice::Illegal
            | Notice::Invalid
            | Notice::NotRetried
            | Notice::NotDiscarded => "notice notice-problem",
            _ => "notice",
        }
    }
}

/// A table whose rows become labelled blocks on a narrow screen (each cell carries its
/// column's name), so that no page scrolls sideways.
pub fn table(columns: &[&str], rows: Vec<Vec<Markup>>) -> Markup {
    html! {
        @if rows.is_empty() {
            p class="empty" { "Nothing here." }
        } @else {
            table {
                thead { tr { @for column in columns { th scope="col" { (column) } } } }
                tbody {
                    @for row in rows {
                        tr {
                            @for (column, cell) in columns.iter().zip(row) {
                                td data-label=(column) { (cell) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn time(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

pub fn maybe_time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { "—" },
    }
}

/// A value for a URL's query.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
