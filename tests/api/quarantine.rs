//! Quarantine (contract section 11): an authentic event the service cannot apply is kept as it
//! came (one entry per distinct body, counted), never applied, until an operator replays it,
//! as it is or corrected, exactly once, or discards it. Nothing unauthenticated is kept.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, lifecycle_event, now, order_event, post_signed_to, run_command, spawn_app,
    spawn_app_with, standard_headers, start_instance, wait_until, Backend, TestApp, WHSEC,
};
use crate::signatures::malformed_bodies;
use crate::{on_both_backends, on_postgres};

on_both_backends!(
    each_kind_of_invalid_event_is_kept_once_and_counted,
    every_malformed_body_is_kept_with_the_problem_it_would_have_had,
    forged_bodies_are_never_kept,
    concurrent_deliveries_of_one_invalid_body_make_one_entry,
    a_replay_applies_the_event_once_as_is_or_corrected,
    concurrent_replays_have_one_effect,
    a_held_event_can_be_discarded_and_a_resolved_one_stays_resolved,
    reject_mode_keeps_nothing,
    past_the_cap_a_new_invalid_event_is_rejected,
    replayed_and_discarded_entries_go_after_retention,
    the_signed_webhook_id_is_the_replays_event_id,
    a_replayed_update_is_not_applied_again_with_another_correction,
    a_replay_and_a_discard_racing_leave_exactly_one_done,
    the_same_bytes_under_another_signed_id_are_another_entry,
    past_the_byte_bound_a_new_invalid_event_is_rejected,
);

on_postgres!(two_instances_quarantining_at_once_never_pass_the_cap);

async fn post(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let response = app.post_signed(body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn replay(app: &TestApp, id: &str, correction: Option<Value>) -> (u16, Value) {
    let body = correction.map(|event| json!({"body": event}));
    let response = app
        .call(
            Method::POST,
            &format!("/quarantine/{id}/replay"),
            body.as_ref(),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn without_zip(order: &str) -> Value {
    let mut event = order_event(order);
    event["data"]["shipping_address"]
        .as_object_mut()
        .unwrap()
        .remove("zip");
    event
}

async fn each_kind_of_invalid_event_is_kept_once_and_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut too_many = order_event("ORD-Q-LIMIT");
    too_many["data"]["items"][0]["quantity"] = json!(1u64 << 40);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not JSON",
            b"{\"event_type\": ".to_vec(),
            400,
            "malformed-json",
        ),
        (
            "not UTF-8",
            b"\xff\xfe not text".to_vec(),
            400,
            "malformed-json",
        ),
        (
            "a missing field",
            serde_json::to_vec(&without_zip("ORD-Q-ZIP")).unwrap(),
            422,
            "invalid-event",
        ),
        (
            "a limit broken",
            serde_json::to_vec(&too_many).unwrap(),
            422,
            "invalid-event",
        ),
    ];

    for (case, body, problem_status, reason) in &cases {
        let (status, first) = post(&app, body).await;
        let (again_status, again) = post(&app, body).await;

        assert_eq!((status, again_status), (202, 202), "{case}");
        assert_eq!(first["status"], "quarantined");
        assert_eq!(first["problem"]["status"], *problem_status, "{case}");
        assert_eq!(
            again["quarantine_id"], first["quarantine_id"],
            "{case}: one entry"
        );
        let id = first["quarantine_id"].as_str().unwrap();
        let entry = app.get_json(&format!("/quarantine/{id}")).await;
        assert_eq!(entry["status"], "held");
        assert_eq!(entry["deliveries"], 2, "{case}");
        assert_eq!(entry["reason"], *reason);
        assert_eq!(entry["problem"], first["problem"]);
        let kept = match entry["body_encoding"].as_str().unwrap() {
            "utf-8" => entry["body"].as_str().unwrap().as_bytes().to_vec(),
            _ => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(entry["body"].as_str().unwrap())
                    .unwrap()
            }
        };
        assert_eq!(&kept, body, "{case}: the body as received");
    }
    assert_eq!(app.db.count_events().await, 0, "nothing applied");
    assert_eq!(app.db.count_shipments().await, 0);
    let listing = app.get_json("/quarantine?status=held").await;
    assert_eq!(listing["items"].as_array().unwrap().len(), 4);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("quarantined_events_total{reason=\"malformed-json\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quarantined_events_total{reason=\"invalid-event\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("quarantine_held 4"), "{metrics}");
    let status = run_command(&["status"], &[("DATABASE_URL", app.db.url.as_str())]).await;
    let printed = String::from_utf8(status.stdout).unwrap();
    let section = printed.split("quarantine:").nth(1).unwrap();
    assert_eq!(
        section
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["held", "4"]
    );
}

async fn every_malformed_body_is_kept_with_the_problem_it_would_have_had(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut kept = 0;
    for (body, expected) in malformed_bodies() {
        let (status, answer) = post(&app, &body).await;
        if expected < 400 {
            assert_eq!(status, expected);
            continue;
        }
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        assert_eq!(answer["problem"]["status"], expected);
        kept += 1;
    }
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, kept);
    assert_eq!(app.db.count_events().await, 1, "only the valid one");
}

async fn forged_bodies_are_never_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = b"{\"event_type\": ".to_vec();
    let forged = app
        .post_webhook(
            body.clone(),
            &[(
                "X-Ecomm-Signature".into(),
                crate::helpers::hex_signature(b"other"),
            )],
        )
        .await;
    let unsigned = app.post_webhook(body, &[]).await;

    assert_problem(forged, 401).await;
    assert_problem(unsigned, 401).await;
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 0);
}

async fn concurrent_deliveries_of_one_invalid_body_make_one_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&without_zip("ORD-Q-TWENTY")).unwrap();

    let answers = join_all((0..20).map(|_| post(&app, &body))).await;

    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(status, answer)| {
            assert_eq!(*status, 202);
            answer["quarantine_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(
        app.get_json(&format!("/quarantine/{id}")).await["deliveries"],
        20
    );
}

async fn a_replay_applies_the_event_once_as_is_or_corrected(backend: Backend) {
    let app = spawn_app(backend).await;
    let original = serde_json::to_vec(&without_zip("ORD-Q-FIX")).unwrap();
    let (_, kept) = post(&app, &original).await;
    let id = kept["quarantine_id"].as_str().unwrap();

    let (as_is, still) = replay(&app, id, None).await;
    let (corrected, applied) = replay(&app, id, Some(order_event("ORD-Q-FIX"))).await;
    let (again, refused) = replay(&app, id, Some(order_event("ORD-Q-FIX"))).await;
    let (redelivered, original_again) = post(&app, &original).await;

    assert_eq!(as_is, 422);
    assert_eq!(still["errors"][0]["field"], "data.shipping_address.zip");
    assert_eq!((corrected, &applied["status"]), (201, &json!("processed")));
    assert_eq!(applied["event_id"], "order.created:ORD-Q-FIX");
    assert_eq!(applied["quarantine"]["status"], "replayed");
    assert_eq!(
        applied["quarantine"]["correction"],
        order_event("ORD-Q-FIX")
    );
    assert_eq!(applied["quarantine"]["event_id"], "order.created:ORD-Q-FIX");
    assert_eq!(
        applied["quarantine"]["body"],
        String::from_utf8(original.clone()).unwrap(),
        "the original kept beside the correction"
    );
    assert_eq!(again, 409, "replayed at most once");
    assert!(refused["type"]
        .as_str()
        .unwrap()
        .ends_with("already-replayed"));
    assert_eq!(redelivered, 202, "the original is still not an event");
    assert_eq!(original_again["quarantine_id"], json!(id));
    assert_eq!(app.db.count_shipments().await, 1);
    assert_eq!(app.db.count_events().await, 1);
}

async fn concurrent_replays_have_one_effect(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, kept) = post(
        &app,
        &serde_json::to_vec(&without_zip("ORD-Q-RACE")).unwrap(),
    )
    .await;
    let id = kept["quarantine_id"].as_str().unwrap();

    let answers =
        join_all((0..10).map(|_| replay(&app, id, Some(order_event("ORD-Q-RACE"))))).await;

    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let refused = answers.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!((created, refused), (1, 9), "{answers:?}");
    assert_eq!(app.db.count_shipments().await, 1);
}

async fn a_held_event_can_be_discarded_and_a_resolved_one_stays_resolved(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, first) = post(&app, b"not json at all").await;
    let (_, second) = post(&app, &serde_json::to_vec(&without_zip("ORD-Q-D")).unwrap()).await;
    let (discarded_id, replayed_id) = (
        first["quarantine_id"].as_str().unwrap(),
        second["quarantine_id"].as_str().unwrap(),
    );

    let discarded = app
        .call(
            Method::POST,
            &format!("/quarantine/{discarded_id}/discard"),
            None,
        )
        .await;
    let discarded: Value = discarded.json().await.unwrap();
    let (replayed, _) = replay(&app, replayed_id, Some(order_event("ORD-Q-D"))).await;
    let (replay_discarded, _) = replay(&app, discarded_id, None).await;
    let discard_replayed = app
        .call(
            Method::POST,
            &format!("/quarantine/{replayed_id}/discard"),
            None,
        )
        .await;

    assert_eq!(discarded["status"], "discarded");
    assert_eq!(replayed, 201);
    assert_eq!(replay_discarded, 409);
    assert_problem(discard_replayed, 409).await;
    let held = app.get_json("/quarantine?status=held").await;
    assert!(held["items"].as_array().unwrap().is_empty());
    let unknown = app
        .call(
            Method::POST,
            &format!("/quarantine/{}/discard", uuid::Uuid::nil()),
            None,
        )
        .await;
    assert_problem(unknown, 404).await;
}

async fn reject_mode_keeps_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("INVALID_EVENTS", "reject")]).await;

    let (status, _) = post(&app, &serde_json::to_vec(&without_zip("ORD-Q-R")).unwrap()).await;
    let (not_json, _) = post(&app, b"{").await;

    assert_eq!((status, not_json), (422, 400));
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 0);
}

async fn past_the_cap_a_new_invalid_event_is_rejected(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUARANTINE_MAX_HELD", "2")]).await;
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|n| serde_json::to_vec(&without_zip(&format!("ORD-Q-CAP-{n}"))).unwrap())
        .collect();

    let first = post(&app, &bodies[0]).await.0;
    let second = post(&app, &bodies[1]).await.0;
    let third = app.post_signed(&bodies[2]).await;
    let first_again = post(&app, &bodies[0]).await.0;

    assert_eq!((first, second, first_again), (202, 202, 202));
    assert_problem(third, 422).await;
    assert!(app
        .metrics()
        .await
        .contains("quarantine_full_rejections_total 1"));
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 2);
}

async fn replayed_and_discarded_entries_go_after_retention(backend: Backend) {
    let app = spawn_app_with(backend, &[("RETENTION", "2s")]).await;
    let (_, held) = post(&app, b"held, never decided").await;
    let (_, discarded) = post(&app, b"discarded").await;
    let id = discarded["quarantine_id"].as_str().unwrap();
    app.call(Method::POST, &format!("/quarantine/{id}/discard"), None)
        .await;

    wait_until(30, "the discarded entry to go", || async {
        app.db.scalar("SELECT COUNT(*) FROM quarantine").await == 1
    })
    .await;

    let left = app.get_json("/quarantine").await;
    assert_eq!(left["items"][0]["id"], held["quarantine_id"]);
}

async fn the_signed_webhook_id_is_the_replays_event_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&without_zip("ORD-Q-STD")).unwrap();
    let headers = standard_headers(WHSEC, "msg_quarantined", now(), &body);
    let answer: Value = app.post_webhook(body, &headers).await.json().await.unwrap();
    let id = answer["quarantine_id"].as_str().unwrap();

    let (status, applied) = replay(&app, id, Some(order_event("ORD-Q-STD"))).await;

    assert_eq!(status, 201);
    assert_eq!(applied["event_id"], "msg_quarantined");
    let entry = app.get_json(&format!("/quarantine/{id}")).await;
    assert_eq!(
        (&entry["scheme"], &entry["webhook_id"]),
        (&json!("standard"), &json!("msg_quarantined"))
    );
}

async fn a_replayed_update_is_not_applied_again_with_another_correction(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_shipment("ORD-Q-TWICE").await;
    let mut broken = lifecycle_event("order.updated", "ORD-Q-TWICE", None);
    broken["data"]["items"] = json!([]);
    let (_, kept) = post(&app, &serde_json::to_vec(&broken).unwrap()).await;
    let id = kept["quarantine_id"].as_str().unwrap();
    let mut first = lifecycle_event("order.updated", "ORD-Q-TWICE", None);
    first["data"]["customer_id"] = json!("FIRST");
    let mut second = first.clone();
    second["data"]["customer_id"] = json!("SECOND");

    let (applied, _) = replay(&app, id, Some(first.clone())).await;
    let (again, refused) = replay(&app, id, Some(second)).await;

    assert_eq!(applied, 200);
    assert_eq!(again, 409);
    assert!(refused["type"]
        .as_str()
        .unwrap()
        .ends_with("already-replayed"));
    let entry = app.get_json(&format!("/quarantine/{id}")).await;
    assert_eq!(entry["correction"], first, "the applied correction is kept");
    let shipment = app.shipment_of("ORD-Q-TWICE").await;
    assert_eq!(
        (&shipment["customer_id"], &shipment["version"]),
        (&json!("FIRST"), &json!(2))
    );
    assert_eq!(app.db.count_events().await, 2);
}

async fn a_replay_and_a_discard_racing_leave_exactly_one_done(backend: Backend) {
    let app = spawn_app(backend).await;
    for n in 0..10 {
        let order = format!("ORD-Q-RACE-{n}");
        let (_, kept) = post(&app, &serde_json::to_vec(&without_zip(&order)).unwrap()).await;
        let id = kept["quarantine_id"].as_str().unwrap();
        let discard_path = format!("/quarantine/{id}/discard");

        let ((replayed, _), discarded) = tokio::join!(
            replay(&app, id, Some(order_event(&order))),
            app.call(Method::POST, &discard_path, None)
        );

        let discarded = discarded.status().as_u16();
        let entry = app.get_json(&format!("/quarantine/{id}")).await;
        let shipments = app
            .db
            .scalar(&format!(
                "SELECT COUNT(*) FROM shipments WHERE order_id = '{order}'"
            ))
            .await;
        match (replayed, discarded) {
            (201, 409) => assert_eq!((&entry["status"], shipments), (&json!("replayed"), 1)),
            (409, 200) => assert_eq!((&entry["status"], shipments), (&json!("discarded"), 0)),
            other => panic!("one of the two must be done, the other refused: {other:?}"),
        }
    }
}

async fn the_same_bytes_under_another_signed_id_are_another_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&without_zip("ORD-Q-IDS")).unwrap();
    let post_as = |id: &'static str| {
        let headers = standard_headers(WHSEC, id, now(), &body);
        let body = body.clone();
        let app = &app;
        async move {
            let answer: Value = app.post_webhook(body, &headers).await.json().await.unwrap();
            answer["quarantine_id"].as_str().unwrap().to_owned()
        }
    };

    let first = post_as("msg_first").await;
    let first_again = post_as("msg_first").await;
    let second = post_as("msg_second").await;

    assert_eq!(first, first_again);
    assert_ne!(first, second);
    let entry = app.get_json(&format!("/quarantine/{second}")).await;
    assert_eq!(entry["webhook_id"], "msg_second");
    let (status, applied) = replay(&app, &second, Some(order_event("ORD-Q-IDS"))).await;
    assert_eq!((status, &applied["event_id"]), (201, &json!("msg_second")));
}

async fn past_the_byte_bound_a_new_invalid_event_is_rejected(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUARANTINE_MAX_BYTES", "1KiB")]).await;
    let padded = |order: &str, bytes: usize| {
        let mut event = without_zip(order);
        event["padding"] = json!("x".repeat(bytes));
        serde_json::to_vec(&event).unwrap()
    };

    let (first, _) = post(&app, &padded("ORD-Q-B1", 300)).await;
    let over = app.post_signed(&padded("ORD-Q-B2", 600)).await;
    let (small, _) = post(&app, &padded("ORD-Q-B3", 0)).await;

    assert_eq!(first, 202);
    assert_problem(over, 422).await;
    assert_eq!(small, 202, "what fits under the bound is still kept");
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 2);
}

async fn two_instances_quarantining_at_once_never_pass_the_cap(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUARANTINE_MAX_HELD", "5")]).await;
    let other = start_instance(&app.db, &[("QUARANTINE_MAX_HELD", "5")]).await;
    let addresses = [app.address.clone(), other];

    let answers = join_all((0..40).map(|n| {
        let body = serde_json::to_vec(&without_zip(&format!("ORD-Q-CAP2-{n}"))).unwrap();
        let address = addresses[n % 2].clone();
        let client = app.client.clone();
        async move {
            post_signed_to(&client, &address, &body)
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    }))
    .await;

    let kept = answers.iter().filter(|status| **status == 202).count();
    assert_eq!(kept, 5, "{answers:?}");
    assert!(answers
        .iter()
        .all(|status| *status == 202 || *status == 422));
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 5);
}
