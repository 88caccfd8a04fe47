//! The operator console in a real browser (headless Chromium over WebDriver): signing in by
//! keyboard, every page, every action, a move from a stale page refused, a form without its
//! CSRF token refused, every page in a phone-wide window, the pages without JavaScript, and
//! no page showing data without a session.

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{json, Value};

use crate::browser::{Browser, Options};
use crate::helpers::{order_event, spawn_app, Backend, TestApp, TOKEN};
use crate::on_both_backends;
use crate::subscriber::{Answer, Subscriber};

on_both_backends!(
    an_operator_works_through_every_page_and_action,
    a_shipments_page_lists_the_moves_operators_made,
);

/// The pages of the navigation, by their links' names.
const PAGES: [&str; 6] = [
    "Overview",
    "Shipments",
    "Events",
    "Deliveries",
    "Subscriptions",
    "Quarantine",
];

/// Signs in as an operator would: the token typed into the field labelled `API token`, and
/// Enter.
async fn sign_in(browser: &Browser, app: &TestApp) {
    browser.goto(&app.url("/console")).await;
    browser.wait_for_text("API token").await;
    let field = browser.field("API token").await;
    field.send_keys(&format!("{TOKEN}\n")).await.unwrap();
    browser.wait_for_text("Shipments by status").await;
}

/// What the tests act on: two shipments, a failed delivery, a quarantined event.
async fn arrange(app: &TestApp) -> (String, Subscriber) {
    let refusing = Subscriber::start();
    refusing.answer_always(Answer::Status(400));
    app.subscribe(&refusing.url).await;
    let shipment = app.create_shipment("ORD-CONSOLE-1").await;
    app.create_shipment("ORD-CONSOLE-2").await;
    let mut invalid = order_event("ORD-CONSOLE-Q");
    invalid["data"]["items"] = json!([]);
    assert_eq!(app.post_event(&invalid).await.status(), 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.get_json("/deliveries?status=failed").await["items"]
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        crate::helpers::check_deadline(deadline, "the failed deliveries");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (shipment, refusing)
}

async fn an_operator_works_through_every_page_and_action(backend: Backend) {
    let app = spawn_app(backend).await;
    let (shipment, _refusing) = arrange(&app).await;
    let browser = Browser::start(Options {
        width: 1280,
        height: 1100,
        javascript: true,
    })
    .await;

    // Without a session, no page shows data: every one leads to signing in.
    for path in [
        "/console/overview",
        "/console/shipments",
        "/console/quarantine",
    ] {
        browser.goto(&app.url(path)).await;
        assert!(browser.url().await.ends_with("/console/sign-in"), "{path}");
        assert!(!browser.text().await.contains("ORD-CONSOLE"));
    }
    sign_in(&browser, &app).await;
    let overview = browser.text().await;
    for page in PAGES {
        browser
            .client
            .find(Locator::LinkText(page))
            .await
            .unwrap_or_else(|_| panic!("a navigation link {page:?}"));
    }
    assert!(
        overview.contains("Events by outcome") && overview.contains("Delivery attempts by result")
    );
    browser.screenshot("console-overview").await;

    // Shipments: search, then the shipment with its history and deliveries.
    browser.click_link("Shipments").await;
    browser.wait_for_text("ORD-CONSOLE-2").await;
    browser
        .field("Order id")
        .await
        .send_keys("ORD-CONSOLE-1\n")
        .await
        .unwrap();
    // The unfiltered list shows ORD-CONSOLE-1 too: the filtered one is the list without 2.
    browser
        .wait_for_page("only ORD-CONSOLE-1 listed", |text| {
            text.contains("ORD-CONSOLE-1") && !text.contains("ORD-CONSOLE-2")
        })
        .await;
    browser.click_link("ORD-CONSOLE-1").await;
    let page = browser.wait_for_text("Order history").await;
    assert!(page.contains("order.created:ORD-CONSOLE-1") && page.contains("shipment.created"));
    browser.screenshot("console-shipment").await;

    // A move, then a move from a page made stale by a change elsewhere.
    browser.click_button("packed").await;
    browser
        .wait_for_text("Done: the shipment was changed.")
        .await;
    assert_eq!(
        app.get_json(&format!("/shipments/{shipment}")).await["status"],
        "packed"
    );
    let changed = app
        .call(
            Method::PATCH,
            &format!("/shipments/{shipment}"),
            Some(&json!({"carrier": "Elsewhere"})),
        )
        .await;
    assert_eq!(changed.status(), 200);
    browser
        .field("Carrier")
        .await
        .send_keys("DHL")
        .await
        .unwrap();
    browser
        .field("Tracking number")
        .await
        .send_keys("JD1")
        .await
        .unwrap();
    browser.click_button("shipped").await;
    browser
        .wait_for_text("Not done: the shipment changed since that page was shown.")
        .await;
    let after = app.get_json(&format!("/shipments/{shipment}")).await;
    assert_eq!(
        (&after["status"], &after["carrier"]),
        (&json!("packed"), &json!("Elsewhere"))
    );

    // A form without its CSRF token changes nothing.
    let session = browser
        .client
        .get_named_cookie("console_session")
        .await
        .unwrap();
    let forged = reqwest::Client::new()
        .post(app.url(&format!("/console/shipments/{shipment}/move")))
        .header("Cookie", format!("console_session={}", session.value()))
        .form(&[("status", "cancelled"), ("revision", "3")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(
        app.get_json(&format!("/shipments/{shipment}")).await["status"],
        "packed"
    );

    // Events.
    browser.click_link("Events").await;
    browser.wait_for_text("order.created:ORD-CONSOLE-2").await;

    // Deliveries: Retry one, Recover the subscription.
    browser.click_link("Deliveries").await;
    browser.wait_for_text("Recover a subscription").await;
    browser.click_button("Retry").await;
    browser.wait_for_text("The delivery is queued again.").await;
    browser
        .client
        .execute(
            "document.getElementById('since').value = '2020-01-01T00:00';",
            vec![],
        )
        .await
        .unwrap();
    browser.click_button("Recover").await;
    browser
        .wait_for_text("failed deliveries are queued again.")
        .await;

    // Subscriptions: create (the secret shown once), deactivate, activate, delete.
    browser.click_link("Subscriptions").await;
    browser.wait_for_text("New subscription").await;
    browser
        .field("URL")
        .await
        .send_keys("https://hooks.example.com/in")
        .await
        .unwrap();
    browser.click_button("Create").await;
    let created = browser.wait_for_text("Subscription created").await;
    assert!(created.contains("whsec_"), "{created}");
    browser.click_link("All subscriptions").await;
    browser.wait_for_text("hooks.example.com").await;
    let row = "//tr[.//code[contains(., 'hooks.example.com')]]";
    let button = |text: &str| format!("{row}//button[normalize-space()='{text}']");
    browser
        .client
        .find(Locator::XPath(&button("Deactivate")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_text("inactive (operator)").await;
    browser
        .client
        .find(Locator::XPath(&button("Activate")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_text("The subscription was changed.").await;
    browser
        .client
        .find(Locator::XPath(&button("Delete")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.client.accept_alert().await.unwrap();
    browser.wait_for_text("The subscription was deleted.").await;
    assert!(!browser.text().await.contains("hooks.example.com"));

    // Quarantine: read it, replay as it came (refused), with a correction, then discard another.
    browser.click_link("Quarantine").await;
    browser.wait_for_text("invalid-event").await;
    let entry = browser.client.find(Locator::Css("td a")).await.unwrap();
    entry.click().await.unwrap();
    let read = browser.wait_for_text("Problem").await;
    assert!(
        read.contains("data.items") && read.contains("ORD-CONSOLE-Q"),
        "{read}"
    );
    browser.click_button("Replay").await;
    browser.wait_for_text("Not replayed").await;
    let correction = serde_json::to_string(&order_event("ORD-CONSOLE-Q")).unwrap();
    browser
        .field(
            "Correction (optional: the corrected event as JSON; empty replays the body as it came)",
        )
        .await
        .send_keys(&correction)
        .await
        .unwrap();
    browser.click_button("Replay").await;
    browser.wait_for_text("Replayed: processed").await;
    assert_eq!(app.shipment_of("ORD-CONSOLE-Q").await["status"], "pending");
    let answer: Value = app.post_signed(b"not json").await.json().await.unwrap();
    browser
        .goto(&app.url(&format!(
            "/console/quarantine/{}",
            answer["quarantine_id"].as_str().unwrap()
        )))
        .await;
    browser.click_button("Discard").await;
    browser.client.accept_alert().await.unwrap();
    browser.wait_for_text("The event was discarded.").await;

    // A phone-wide window: no page scrolls sideways.
    browser.client.set_window_size(390, 844).await.unwrap();
    let pages = [
        "/console/overview".to_owned(),
        "/console/shipments".to_owned(),
        format!("/console/shipments/{shipment}"),
        "/console/events".to_owned(),
        "/console/deliveries".to_owned(),
        "/console/subscriptions".to_owned(),
        "/console/quarantine".to_owned(),
    ];
    for path in &pages {
        browser.goto(&app.url(path)).await;
        assert_eq!(
            browser.overflow().await,
            Value::Null,
            "{path} scrolls sideways"
        );
    }

    // Sign out: the session ends.
    browser.click_button("Sign out").await;
    browser.wait_for_text("API token").await;
    browser.goto(&app.url("/console/overview")).await;
    assert!(browser.url().await.ends_with("/console/sign-in"));
    browser.close().await;
}

/// Every page reads, and a move, a delete and a sign-out work, with JavaScript off (the delete
/// asks nothing: with script it would wait on a confirmation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_without_javascript() {
    let app = spawn_app(Backend::Sqlite).await;
    let shipment = app.create_shipment("ORD-NO-SCRIPT").await;
    app.subscribe("https://hooks.example.com/no-script").await;
    let browser = Browser::start(Options {
        width: 1024,
        height: 800,
        javascript: false,
    })
    .await;

    sign_in(&browser, &app).await;
    for (page, expected) in [
        ("Shipments", "ORD-NO-SCRIPT"),
        ("Events", "order.created:ORD-NO-SCRIPT"),
        ("Deliveries", "Nothing here."),
        ("Subscriptions", "hooks.example.com/no-script"),
        ("Quarantine", "Nothing here."),
        ("Overview", "Shipments by status"),
    ] {
        browser.click_link(page).await;
        browser.wait_for_text(expected).await;
    }
    browser.click_link("Subscriptions").await;
    browser.click_button("Delete").await;
    browser.wait_for_text("The subscription was deleted.").await;
    browser
        .goto(&app.url(&format!("/console/shipments/{shipment}")))
        .await;
    browser.click_button("cancelled").await;
    browser
        .wait_for_text("Done: the shipment was changed.")
        .await;
    assert_eq!(
        app.get_json(&format!("/shipments/{shipment}")).await["status"],
        "cancelled"
    );
    browser.click_button("Sign out").await;
    browser.wait_for_text("API token").await;
    browser.close().await;
}

/// Every change an operator made, in order, with what it set; the order's events apart.
async fn a_shipments_page_lists_the_moves_operators_made(backend: Backend) {
    let app = spawn_app(backend).await;
    let shipment = app.create_shipment("ORD-MOVES").await;
    for body in [
        json!({"status": "packed"}),
        json!({"status": "shipped", "carrier": "DHL", "tracking_number": "JD1"}),
        json!({"tracking_number": "JD2"}),
    ] {
        assert_eq!(app.patch_shipment(&shipment, &body).await.status(), 200);
    }
    let address = app.url("");
    let (cookie, _) = set_cookie(
        &sign_in_over_http(&address, TOKEN, "http").await,
        "console_session",
    );

    let html = page(&address, &format!("/console/shipments/{shipment}"), &cookie)
        .await
        .text()
        .await
        .unwrap();

    let start = html.find("Operator moves").expect("a section of moves");
    let moves = &html[start..start + html[start..].find("<h2>Deliveries").unwrap()];
    let rows: Vec<Vec<String>> = moves
        .split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td data-label=")
                .skip(1)
                .take(5)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    text[..text.find("</td>").unwrap()].to_owned()
                })
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            ["2", "pending", "packed", "—", "—"],
            ["3", "packed", "shipped", "DHL", "JD1"],
            ["4", "shipped", "shipped", "DHL", "JD2"],
        ]
    );
}

/// The hidden CSRF token of the first form on `html`.
pub(crate) fn form_token(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// `name=value` of the `Set-Cookie` for `name`, and the whole header.
pub(crate) fn set_cookie(response: &reqwest::Response, name: &str) -> (String, String) {
    let header = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("a {name} cookie"));
    (header.split(';').next().unwrap().to_owned(), header)
}

/// Signs in over plain HTTP at `address` with `token`; the response to the sign-in.
pub(crate) async fn sign_in_over_http(
    address: &str,
    token: &str,
    proto: &str,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client
        .get(format!("{address}/console/sign-in"))
        .header("X-Forwarded-Proto", proto)
        .send()
        .await
        .unwrap();
    let (sign_in_cookie, _) = set_cookie(&form, "console_sign_in");
    let csrf = form_token(&form.text().await.unwrap());
    client
        .post(format!("{address}/console/sign-in"))
        .header("Cookie", sign_in_cookie)
        .header("X-Forwarded-Proto", proto)
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

pub(crate) async fn page(address: &str, path: &str, cookie: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{address}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A session opened on one instance works on another and ends on both when signed out; a
/// wrong token opens none; the cookie is HttpOnly, SameSite=Strict, Secure behind HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_is_shared_by_instances_and_ends_on_sign_out() {
    let db = crate::helpers::TestDb::create(Backend::Postgres).await;
    let env = crate::helpers::test_env(&db);
    let first = crate::helpers::ServiceProcess::start(&env);
    let second = crate::helpers::ServiceProcess::start(&env);

    let refused = sign_in_over_http(&first.address, "not-the-token", "http").await;
    assert_eq!(refused.status(), 401);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("not one of the service's API tokens"));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM console_sessions").await, 0);

    let behind_https = sign_in_over_http(&first.address, TOKEN, "https").await;
    let (_, header) = set_cookie(&behind_https, "console_session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
        assert!(header.contains(attribute), "{header}");
    }
    let signed_in = sign_in_over_http(&first.address, TOKEN, "http").await;
    assert_eq!(signed_in.status(), 303);
    let (cookie, header) = set_cookie(&signed_in, "console_session");
    assert!(!header.contains("Secure"), "{header}");

    let overview = page(&second.address, "/console/overview", &cookie).await;
    assert_eq!(overview.status(), 200);
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = overview.text().await.unwrap();
    assert!(html.contains("Shipments by status"));

    let signed_out = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/sign-out", second.address))
        .header("Cookie", &cookie)
        .form(&[("csrf", form_token(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    for address in [&first.address, &second.address] {
        let after = page(address, "/console/overview", &cookie).await;
        assert_eq!(after.status(), 303);
        assert_eq!(after.headers()["location"], "/console/sign-in");
    }
}
