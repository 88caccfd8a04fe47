//! `shipping-service send` against a scripted receiver that records every attempt, and end to
//! end against the real service.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use shipping_service::signature::{Verified, Verifier};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{order_event, spawn_app, Backend, SECRET, WHSEC};
use crate::on_both_backends;

/// One request as the receiver saw it.
#[derive(Clone)]
struct Seen {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Answers the n-th request with the n-th scripted `(status, extra header line)`, then 201.
async fn scripted_receiver(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/order_events",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for n in 0.. {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).await.unwrap();
                match line.trim_end().split_once(": ") {
                    Some((name, value)) => {
                        headers.push((name.to_ascii_lowercase(), value.to_owned()))
                    }
                    None => break,
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .unwrap()
                .1
                .parse()
                .unwrap();
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            log.lock().unwrap().push(Seen {
                at: Instant::now(),
                headers,
                body,
            });
            let (status, extra) = script.get(n).copied().unwrap_or((201, ""));
            let response = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n{extra}\r\n{{}}");
            reader
                .into_inner()
                .write_all(response.as_bytes())
                .await
                .unwrap();
        }
    });
    (url, seen)
}

struct Outcome {
    success: bool,
    stderr: String,
}

async fn send(url: &str, flags: &[&str], event: &Value) -> Outcome {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("event.json");
    std::fs::write(&file, serde_json::to_vec(event).unwrap()).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipping-service"))
        .arg("send")
        .arg(&file)
        .args(["--url", url])
        .args(if flags.contains(&"--secret") {
            &[][..]
        } else {
            &["--secret", SECRET][..]
        })
        .args(flags)
        .env_clear()
        .current_dir(folder.path())
        .output()
        .await
        .unwrap();
    Outcome {
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The delays `send` announced before each retry ("retrying in 200ms"), in milliseconds.
fn announced_delays(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|line| line.split("retrying in ").nth(1))
        .map(|delay| {
            humantime::parse_duration(delay.trim())
                .unwrap()
                .as_millis()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// Time from the first attempt to the last: a sleep is never shorter than asked, so this is
/// at least the sum of the delays, however busy the machine.
fn elapsed(seen: &[Seen]) -> std::time::Duration {
    seen.last().unwrap().at - seen[0].at
}

#[tokio::test]
async fn retries_5xx_with_exponential_backoff_until_acknowledged() {
    let (url, seen) = scripted_receiver(vec![(503, ""), (503, ""), (503, "")]).await;

    let outcome = send(
        &url,
        &["--initial-delay", "200ms"],
        &order_event("ORD-SEND-1"),
    )
    .await;

    assert!(outcome.success, "{}", outcome.stderr);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|attempt| attempt.body == seen[0].body),
        "the same bytes every time"
    );
    assert_eq!(announced_delays(&outcome.stderr), [200, 400, 800]);
    assert!(elapsed(&seen) >= std::time::Duration::from_millis(1400));
    assert_eq!(
        outcome.stderr.lines().count(),
        4,
        "one line per attempt: {}",
        outcome.stderr
    );
}

#[tokio::test]
async fn delays_stop_growing_at_the_cap_and_retries_stop_at_the_maximum() {
    let (url, seen) = scripted_receiver(vec![(500, ""); 10]).await;

    let flags = [
        "--initial-delay",
        "100ms",
        "--factor",
        "4",
        "--max-delay",
        "400ms",
        "--max-retries",
        "3",
    ];
    let outcome = send(&url, &flags, &order_event("ORD-SEND-2")).await;

    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("giving up after 3 retries"),
        "{}",
        outcome.stderr
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    // 100, 400, 400 (not 1,600): the last two are the same capped delay.
    assert_eq!(announced_delays(&outcome.stderr), [100, 400, 400]);
    assert!(elapsed(&seen) >= std::time::Duration::from_millis(900));
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let (url, seen) = scripted_receiver(vec![(400, "")]).await;

    let outcome = send(
        &url,
        &["--initial-delay", "10ms"],
        &order_event("ORD-SEND-3"),
    )
    .await;

    assert!(!outcome.success);
    assert!(outcome.stderr.contains("400"), "{}", outcome.stderr);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_backoff() {
    let (url, seen) = scripted_receiver(vec![(429, "Retry-After: 1\r\n"), (408, "")]).await;

    let outcome = send(
        &url,
        &["--initial-delay", "10ms"],
        &order_event("ORD-SEND-4"),
    )
    .await;

    assert!(outcome.success, "{}", outcome.stderr);
    // Retry-After (1 s) is longer than the first delay (10 ms); the 408 has none.
    assert_eq!(announced_delays(&outcome.stderr), [1000, 20]);
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(elapsed(&seen.lock().unwrap()) >= std::time::Duration::from_millis(1000));
}

#[tokio::test]
async fn nobody_listening_is_retried_then_given_up() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/webhooks/order_events");

    let outcome = send(
        &url,
        &["--initial-delay", "10ms", "--max-retries", "2"],
        &order_event("ORD-SEND-5"),
    )
    .await;

    assert!(!outcome.success);
    assert_eq!(
        outcome.stderr.matches("connection failed").count(),
        3,
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn both_schemes_are_signed_as_the_receiver_verifies_them() {
    let verifier = Verifier {
        secrets: vec![shipping_service::signature::Secret::parse(WHSEC).unwrap()],
        hex_header: "x-ecomm-signature".into(),
        tolerance_secs: 300,
    };
    for (scheme, header) in [
        ("hex", "X-Ecomm-Signature"),
        ("standard", "X-Unused"),
        ("hex", "X-Other-Signature"),
    ] {
        let (url, seen) = scripted_receiver(vec![(503, "")]).await;
        let mut event = order_event("ORD-SEND-6");
        event["id"] = serde_json::json!("evt-stable");
        let flags = [
            "--scheme",
            scheme,
            "--header",
            header,
            "--secret",
            WHSEC,
            "--initial-delay",
            "10ms",
        ];

        let outcome = send(&url, &flags, &event).await;

        assert!(outcome.success, "{}", outcome.stderr);
        let seen = seen.lock().unwrap().clone();
        for attempt in &seen {
            let mut headers: Vec<(&str, &[u8])> = attempt
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect();
            // A custom hex header is verified as the receiver configured with that name would.
            let renamed = header.to_ascii_lowercase();
            for pair in headers.iter_mut() {
                if pair.0 == renamed {
                    pair.0 = "x-ecomm-signature";
                }
            }
            let verified = verifier.verify(&attempt.body, &headers, chrono::Utc::now().timestamp());
            match scheme {
                "standard" => assert_eq!(
                    verified,
                    Ok(Verified::Standard {
                        id: "evt-stable".into()
                    })
                ),
                _ => assert_eq!(verified, Ok(Verified::Hex)),
            }
        }
    }
}

on_both_backends!(sending_twice_to_the_service_makes_one_shipment);

async fn sending_twice_to_the_service_makes_one_shipment(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/webhooks/order_events");
    let event = order_event("ORD-SEND-E2E");

    let first = send(&url, &[], &event).await;
    let second = send(&url, &["--scheme", "hex"], &event).await;

    assert!(
        first.success && second.success,
        "{} {}",
        first.stderr,
        second.stderr
    );
    assert!(first.stderr.contains("201") && second.stderr.contains("200"));
    assert_eq!(app.db.count_shipments().await, 1);
}
