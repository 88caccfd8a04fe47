use sqlx::Connection;

use crate::helpers::{assert_problem, order_event, spawn_app, Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(an_unreachable_database_gets_503_with_retry_after_then_recovers);

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
    if backend == Backend::Postgres {
        assert_problem(
            app.client.get(app.url("/readyz")).send().await.unwrap(),
            503,
        )
        .await;
    }
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
