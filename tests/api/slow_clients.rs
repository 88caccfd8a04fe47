//! Slow and idle clients cannot hold the service's memory or connections: a body that does
//! not arrive within `REQUEST_TIMEOUT_SECS` is answered 408, and no more than
//! `MAX_CONNECTIONS` clients are served at once.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::before_the_database;
use crate::helpers::{spawn_app_with, Backend, TestApp};

before_the_database!(
    a_body_that_stalls_is_answered_408_and_nothing_is_stored,
    clients_beyond_the_connection_cap_wait_for_a_free_one,
);

/// Longest the test waits for an answer the service owes; a hang fails instead of blocking.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

async fn read_answer(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(within, stream.read(&mut answer))
        .await
        .ok()?
        .unwrap();
    Some(String::from_utf8_lossy(&answer[..read]).into_owned())
}

async fn a_body_that_stalls_is_answered_408_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app_with(backend, &[("REQUEST_TIMEOUT_SECS", "1")]).await;
    let mut stream = connect(&app).await;

    stream
        .write_all(
            b"POST /webhooks/order_events HTTP/1.1\r\nHost: test\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"event_type\"",
        )
        .await
        .unwrap();
    let answer = read_answer(&mut stream, PATIENCE)
        .await
        .expect("the service answers a stalled body");

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert_eq!(app.db.count_events().await, 0);
}

async fn clients_beyond_the_connection_cap_wait_for_a_free_one(backend: Backend) {
    let app = spawn_app_with(backend, &[("MAX_CONNECTIONS", "2")]).await;
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    // The cap is shared out over the worker threads, at least one connection each.
    let cap = workers * 2usize.div_ceil(workers);
    let mut idle = Vec::new();
    for _ in 0..cap {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        read_answer(&mut stream, PATIENCE)
            .await
            .expect("served under the cap");
        idle.push(stream);
    }

    let mut waiting = connect(&app).await;
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let while_full = read_answer(&mut waiting, Duration::from_secs(1)).await;
    drop(idle);
    let once_free = read_answer(&mut waiting, PATIENCE).await;

    assert_eq!(
        while_full, None,
        "no answer while every connection is taken"
    );
    assert!(once_free
        .expect("served once a connection is free")
        .starts_with("HTTP/1.1 200"));
}
