use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::{
    check_deadline, order_event, post_signed_to, test_env, Backend, ServiceProcess, TestDb,
};
use crate::on_both_backends;

on_both_backends!(sigterm_with_requests_in_flight_loses_no_acknowledged_event);

const ORDERS: usize = 200;

async fn deliver(client: &reqwest::Client, address: &str, body: Vec<u8>) -> Option<u16> {
    let response = post_signed_to(client, address, &body).await.ok()?;
    Some(response.status().as_u16())
}

async fn sigterm_with_requests_in_flight_loses_no_acknowledged_event(backend: Backend) {
    let db = TestDb::create(backend).await;
    let env = test_env(&db);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let service = ServiceProcess::start(&env);
    let address = service.address.clone();
    let bodies: Vec<Vec<u8>> = (0..ORDERS)
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.count_events().await < 10 {
        check_deadline(deadline, "the first commits");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let clean_exit = tokio::task::spawn_blocking(move || service.terminate())
        .await
        .unwrap();
    let answers = in_flight.await.unwrap();

    assert!(clean_exit, "SIGTERM is a clean shutdown");
    let acknowledged: Vec<bool> = answers.iter().map(|a| *a == Some(201)).collect();
    let acknowledged_count = acknowledged.iter().filter(|a| **a).count();
    assert!(acknowledged_count >= 10);
    // Every 2xx was committed; anything else was not answered with a 2xx and will be retried.
    assert!(db.count_shipments().await >= acknowledged_count as i64);

    // The sender retries everything it did not see acknowledged, and redelivers the rest too:
    // an acknowledged order is a duplicate now; an unacknowledged one is created now unless
    // its commit happened before the answer was lost (then a duplicate). Either way, each
    // order is created exactly once over both rounds.
    let restarted = ServiceProcess::start(&env);
    let mut created_on_redelivery = 0;
    for (body, was_acknowledged) in bodies.into_iter().zip(acknowledged) {
        let status = deliver(&client, &restarted.address, body).await;
        if was_acknowledged {
            assert_eq!(status, Some(200), "an acknowledged order is a duplicate");
        } else {
            assert!(matches!(status, Some(200 | 201)), "{status:?}");
            created_on_redelivery += usize::from(status == Some(201));
        }
    }
    assert_eq!(db.count_shipments().await, ORDERS as i64);
    assert!(created_on_redelivery <= ORDERS - acknowledged_count);
}
