//! Operator access that holds up: wrong tokens from one address are slowed (429 with
//! Retry-After, on the API and the console's sign-in alike; no token stays 401), and a console
//! session ends once its token leaves `API_TOKENS` or it goes unused for
//! `CONSOLE_IDLE_TIMEOUT`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::console::{page, set_cookie, sign_in_over_http};
use crate::helpers::{
    assert_problem, order_event, spawn_app, spawn_app_with, start_instance, Backend, TOKEN,
};
use crate::{before_the_database, on_both_backends};

before_the_database!(
    wrong_tokens_from_one_address_are_slowed_and_no_token_stays_401,
    behind_a_tls_proxy_the_session_cookie_is_secure_whatever_the_proxy_sends,
);
on_both_backends!(
    every_console_form_without_its_token_is_refused_and_changes_nothing,
    a_console_session_ends_when_its_token_leaves_api_tokens,
    an_unused_console_session_ends_after_the_idle_timeout,
);

async fn wrong_tokens_from_one_address_are_slowed_and_no_token_stays_401(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_FAILURE_LIMIT", "3")]).await;
    let with_token = |token: &'static str| {
        app.client
            .get(app.url("/shipments"))
            .bearer_auth(token)
            .send()
    };

    for _ in 0..3 {
        assert_problem(with_token("guess").await.unwrap(), 401).await;
    }
    let right = with_token(TOKEN).await.unwrap();
    let retry_after: u64 = right.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let problem = assert_problem(right, 429).await;
    let without = app.client.get(app.url("/shipments")).send().await.unwrap();
    let sign_in = sign_in_over_http(&app.address, TOKEN, "http").await;

    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .ends_with("too-many-failures"));
    assert_problem(without, 401).await;
    assert_eq!(sign_in.status(), 429, "the sign-in form is held back too");
    assert!(sign_in.headers().contains_key("retry-after"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("auth_failures_total{surface=\"api\"} 3"),
        "{metrics}"
    );
}

/// Signs in with `token`; the session's cookie, which opens the Overview.
async fn open_session(address: &str, token: &str) -> String {
    let signed_in = sign_in_over_http(address, token, "http").await;
    let (cookie, _) = set_cookie(&signed_in, "console_session");
    let overview = page(address, "/console/overview", &cookie).await;
    assert_eq!(overview.status(), 200);
    cookie
}

async fn a_console_session_ends_when_its_token_leaves_api_tokens(backend: Backend) {
    let both = format!("{TOKEN},second-token");
    let app = spawn_app_with(backend, &[("API_TOKENS", &both)]).await;
    let cookie = open_session(&app.address, "second-token").await;

    // The same database, served with the second token gone from API_TOKENS.
    let without_it = start_instance(&app.db, &[("API_TOKENS", TOKEN)]).await;
    let refused = page(&without_it, "/console/overview", &cookie).await;

    assert_eq!(refused.status(), 303);
    assert_eq!(refused.headers()["location"], "/console/sign-in");
    assert_eq!(
        app.db.scalar("SELECT COUNT(*) FROM console_sessions").await,
        0,
        "the session ended"
    );
    let again = page(&app.address, "/console/overview", &cookie).await;
    assert_eq!(again.status(), 303, "ended on every instance");
}

async fn an_unused_console_session_ends_after_the_idle_timeout(backend: Backend) {
    let app = spawn_app_with(backend, &[("CONSOLE_IDLE_TIMEOUT", "1s")]).await;
    let cookie = open_session(&app.address, TOKEN).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;

    let after = page(&app.address, "/console/overview", &cookie).await;
    assert_eq!(after.status(), 303);
    assert_eq!(after.headers()["location"], "/console/sign-in");
}

async fn every_console_form_without_its_token_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let shipment = app.create_shipment("ORD-CSRF").await;
    let (subscription, _) = app.subscribe("http://127.0.0.1:9/hooks").await;
    let mut broken = order_event("ORD-CSRF-Q");
    broken["data"]["items"] = json!([]);
    let kept: Value = app
        .post_signed(&serde_json::to_vec(&broken).unwrap())
        .await
        .json()
        .await
        .unwrap();
    let quarantined = kept["quarantine_id"].as_str().unwrap();
    let signed_in = sign_in_over_http(&app.address, TOKEN, "http").await;
    let (cookie, _) = set_cookie(&signed_in, "console_session");
    let forms: [(String, Vec<(&str, &str)>); 9] = [
        ("/console/sign-out".into(), vec![]),
        (
            format!("/console/shipments/{shipment}/move"),
            vec![("status", "packed"), ("revision", "1")],
        ),
        (
            "/console/deliveries/recover".into(),
            vec![
                ("subscription", &subscription),
                ("since", "2000-01-01T00:00"),
            ],
        ),
        (format!("/console/deliveries/{shipment}/retry"), vec![]),
        (
            "/console/subscriptions".into(),
            vec![("url", "http://127.0.0.1:9/other"), ("created", "on")],
        ),
        (
            format!("/console/subscriptions/{subscription}/active"),
            vec![("active", "false")],
        ),
        (
            format!("/console/subscriptions/{subscription}/delete"),
            vec![],
        ),
        (
            format!("/console/quarantine/{quarantined}/replay"),
            vec![("correction", "")],
        ),
        (format!("/console/quarantine/{quarantined}/discard"), vec![]),
    ];
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    for (path, fields) in &forms {
        for csrf in [None, Some("forged")] {
            let mut body = fields.clone();
            body.extend(csrf.map(|token| ("csrf", token)));
            let answer = client
                .post(format!("{}{path}", app.address))
                .header("Cookie", &cookie)
                .form(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 403, "{path} with {csrf:?}");
        }
    }

    assert_eq!(
        page(&app.address, "/console/overview", &cookie)
            .await
            .status(),
        200
    );
    assert_eq!(app.shipment_of("ORD-CSRF").await["status"], "pending");
    let text = |path: String| {
        let cookie = cookie.clone();
        let address = app.address.clone();
        async move { page(&address, &path, &cookie).await.text().await.unwrap() }
    };
    let shipment_page = text(format!("/console/shipments/{shipment}")).await;
    assert!(shipment_page.contains("data-confirm=\"Cancel this shipment?"));
    let subscriptions_page = text("/console/subscriptions".into()).await;
    assert!(
        subscriptions_page.contains(&subscription),
        "each subscription shows its id"
    );
    let subscription = app
        .get_json(&format!("/subscriptions/{subscription}"))
        .await;
    assert_eq!(subscription["active"], true);
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM subscriptions").await, 1);
    let entry = app.get_json(&format!("/quarantine/{quarantined}")).await;
    assert_eq!(entry["status"], "held");
}

async fn behind_a_tls_proxy_the_session_cookie_is_secure_whatever_the_proxy_sends(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("CONSOLE_SECURE_COOKIE", "on")]).await;

    let signed_in = sign_in_over_http(&app.address, TOKEN, "http").await;

    let (_, header) = set_cookie(&signed_in, "console_session");
    assert!(header.contains("Secure"), "{header}");
}
