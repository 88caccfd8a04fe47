use sqlx::Connection;

use crate::helpers::{assert_problem, order_event, spawn_app, Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(an_unreachable_database_gets_503_with_retry_after_then_recovers);

/// The database answers but the writer cannot commit (a table locked by someone else): the
/// webhook is answered 503 within the commit deadline, `/readyz` says so, and both recover
/// when the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_writer_that_cannot_commit_is_not_ready_and_answers_503_then_recovers() {
    let app = spawn_app(Backend::Postgres).await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let mut locker = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let body = serde_json::to_vec(&order_event("ORD-STUCK")).unwrap();
    let post = || {
        client
            .post(app.url("/webhooks/order_events"))
            .header("Content-Type", "application/json")
            .header("X-Ecomm-Signature", crate::helpers::hex_signature(&body))
            .body(body.clone())
            .send()
    };

    let stuck = post().await.expect("answered before the client gives up");
    let ready = client.get(app.url("/readyz")).send().await.unwrap();

    assert_problem(stuck, 503).await;
    assert_problem(ready, 503).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    assert_eq!(post().await.unwrap().status(), 201);
    assert_eq!(
        client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Takes the database away from the service: on PostgreSQL new connections are refused and
/// the service's are terminated; on SQLite another process holds the write lock.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection, String),
}

async fn begin_outage(db: &TestDb) -> Outage {
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Outage::Sqlite(conn)
        }
        Backend::Postgres => {
            let name = db.url.rsplit('/').next().unwrap().to_owned();
            let mut admin = sqlx::PgConnection::connect(&crate::helpers::admin_url())
                .await
                .unwrap();
            for sql in [
                format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false"#),
                format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
            ] {
                sqlx::query(&sql).execute(&mut admin).await.unwrap();
            }
            Outage::Postgres(admin, name)
        }
    }
}

async fn end_outage(outage: Outage) {
    match outage {
        Outage::Sqlite(mut conn) => {
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        }
        Outage::Postgres(mut admin, name) => {
            sqlx::query(&format!(
                r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS true"#
            ))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

async fn an_unreachable_database_gets_503_with_retry_after_then_recovers(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = order_event("ORD-OUTAGE");
    let outage = begin_outage(&app.db).await;

    let response = app.post_event(&event).await;

    let retry_after = response.headers().get("retry-after").cloned();
    assert_problem(response, 503).await;
    assert!(
        retry_after.is_some(),
        "a 503 tells the sender when to retry"
    );
    assert_problem(
        app.client.get(app.url("/readyz")).send().await.unwrap(),
        503,
    )
    .await;
    end_outage(outage).await;
    assert_eq!(
        app.db.count_events().await,
        0,
        "nothing recorded during the outage"
    );

    // The service recovers by itself: the sender's retry is applied.
    assert_eq!(app.post_event(&event).await.status(), 201);
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.db.count_shipments().await, 1);
}
