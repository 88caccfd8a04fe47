use futures_util::future::join_all;

use crate::helpers::{hex_signature, order_event, test_env, Backend, ServiceProcess, TestDb};
use crate::on_both_backends;

on_both_backends!(sigterm_with_requests_in_flight_loses_no_acknowledged_event);

async fn deliver(client: &reqwest::Client, address: &str, body: Vec<u8>) -> Option<u16> {
    let response = client
        .post(format!("{address}/webhooks/order_events"))
        .header("Content-Type", "application/json")
        .header("X-Ecomm-Signature", hex_signature(&body))
        .body(body)
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

async fn sigterm_with_requests_in_flight_loses_no_acknowledged_event(backend: Backend) {
    let db = TestDb::create(backend).await;
    let env = test_env(&db);
    let client = reqwest::Client::new();
    let service = ServiceProcess::start(&env);
    let address = service.address.clone();
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|n| serde_json::to_vec(&order_event(&format!("ORD-TERM-{n}"))).unwrap())
        .collect();

    let in_flight = tokio::spawn({
        let (client, bodies) = (client.clone(), bodies.clone());
        async move {
            join_all(
                bodies
                    .into_iter()
                    .map(|body| deliver(&client, &address, body)),
            )
            .await
        }
    });
    // Stop once the first deliveries are committed, so that others are still in flight.
    while db.count_events().await < 10 {
        tokio::task::yield_now().await;
    }
    let clean_exit = tokio::task::spawn_blocking(move || service.terminate())
        .await
        .unwrap();
    let answers = in_flight.await.unwrap();

    assert!(clean_exit, "SIGTERM is a clean shutdown");
    let acknowledged = answers
        .iter()
        .filter(|status| matches!(status, Some(201)))
        .count() as i64;
    assert!(acknowledged >= 10);
    // Every 2xx was committed; anything else was not answered with a 2xx and will be retried.
    assert!(db.count_shipments().await >= acknowledged);

    let restarted = ServiceProcess::start(&env);
    for (body, answer) in bodies.into_iter().zip(&answers) {
        let status = deliver(&client, &restarted.address, body).await;
        let expected = if matches!(answer, Some(201)) {
            200
        } else {
            status.unwrap()
        };
        assert!(
            matches!(status, Some(200 | 201)) && status == Some(expected),
            "{answer:?} then {status:?}"
        );
    }
    assert_eq!(db.count_shipments().await, 200);
}
