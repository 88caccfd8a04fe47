//! A subscriber of the service's announcements for tests: a real HTTP server on a random port
//! that verifies every delivery with the service's own receiver code (both signatures, keyed by
//! the secret the subscription was given), records it, and answers as it is told to.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use shipping_service::signature::{Secret, Verified, Verifier};

use crate::helpers::check_deadline;

/// One delivery as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub body: Value,
    /// Both signatures verified against the subscription's secret.
    pub verified: bool,
    /// The W3C trace context it came with (empty without).
    pub traceparent: String,
    pub tracestate: String,
}

/// How to answer: a queue of scripted answers, then `fallback`.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooMany(u64),
    /// Answers 200 after sleeping this long (past the dispatcher's timeout, it is a failure).
    Slow(Duration),
    /// 302 to this port on the loopback.
    Redirect(u16),
    /// Answers this status after sleeping this long.
    Late(Duration, u16),
}

#[derive(Default)]
struct Shared {
    secret: Option<String>,
    script: VecDeque<Answer>,
    fallback: Option<Answer>,
    received: Vec<Received>,
    attempts: usize,
    /// When each request arrived.
    arrivals: Vec<Instant>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    most_in_flight: usize,
    /// Connections the service opened to it.
    connections: usize,
}

#[derive(Clone)]
pub struct Subscriber {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl Subscriber {
    pub fn start() -> Subscriber {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = web::Data::new(shared.clone());
        let counted = shared.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(state.clone())
                .default_service(web::to(receive))
        })
        .on_connect(move |_, _| counted.lock().unwrap().connections += 1)
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Subscriber { url, shared }
    }

    /// The secret the subscription was created with.
    pub fn trust(&self, secret: &str) {
        self.shared.lock().unwrap().secret = Some(secret.to_owned());
    }

    pub fn script(&self, answers: &[Answer]) {
        self.shared.lock().unwrap().script.extend(answers);
    }

    pub fn answer_always(&self, answer: Answer) {
        self.shared.lock().unwrap().fallback = Some(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    pub fn attempts(&self) -> usize {
        self.shared.lock().unwrap().attempts
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.shared.lock().unwrap().arrivals.clone()
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().unwrap().in_flight
    }

    /// The most requests it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.lock().unwrap().most_in_flight
    }

    /// Connections the service opened to it so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }

    /// Waits until `done` holds for what was received (bounded: a test never hangs).
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            check_deadline(deadline, what);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Arc<Mutex<Shared>>>,
) -> HttpResponse {
    let (answer, secret) = {
        let mut shared = shared.lock().unwrap();
        shared.attempts += 1;
        shared.arrivals.push(Instant::now());
        shared.in_flight += 1;
        shared.most_in_flight = shared.most_in_flight.max(shared.in_flight);
        let answer = shared
            .script
            .pop_front()
            .or(shared.fallback)
            .unwrap_or(Answer::Status(200));
        (answer, shared.secret.clone())
    };
    if let Answer::Slow(pause) | Answer::Late(pause, _) = answer {
        tokio::time::sleep(pause).await;
    }
    shared.lock().unwrap().in_flight -= 1;
    let status = match answer {
        Answer::Status(status) => status,
        Answer::TooMany(_) => 429,
        Answer::Slow(_) => 200,
        Answer::Late(_, status) => status,
        Answer::Redirect(_) => 302,
    };
    if (200..300).contains(&status) {
        let received = Received {
            webhook_id: header(&request, "webhook-id"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            verified: secret.is_some_and(|secret| verify(&request, &body, &secret)),
            traceparent: header(&request, "traceparent"),
            tracestate: header(&request, "tracestate"),
        };
        shared.lock().unwrap().received.push(received);
    }
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    match answer {
        Answer::TooMany(seconds) => {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        Answer::Redirect(port) => {
            response.insert_header(("Location", format!("http://127.0.0.1:{port}/moved")));
        }
        _ => {}
    }
    // As receivers often do, it says something back, which the service need not read, and
    // after its head, as a separate write: a body that came with the head would be read with it.
    response.streaming(futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, std::convert::Infallible>(web::Bytes::from_static(br#"{"received":true}"#))
    }))
}

fn header(request: &HttpRequest, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Both schemes, each on its own, by the service's own verifier.
fn verify(request: &HttpRequest, body: &[u8], secret: &str) -> bool {
    let verifier = Verifier {
        secrets: vec![Secret::parse(secret).unwrap()],
        hex_header: "x-ecomm-signature".into(),
        tolerance_secs: 300,
    };
    let headers: Vec<(&str, &[u8])> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let hex_only: Vec<(&str, &[u8])> = headers
        .iter()
        .copied()
        .filter(|(name, _)| *name == "x-ecomm-signature")
        .collect();
    let now = chrono::Utc::now().timestamp();
    let standard = verifier.verify(body, &headers, now);
    let hex = verifier.verify(body, &hex_only, now);
    matches!(standard, Ok(Verified::Standard { ref id }) if *id == header(request, "webhook-id"))
        && hex == Ok(Verified::Hex)
}
