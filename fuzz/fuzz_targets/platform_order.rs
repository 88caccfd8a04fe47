//! Arbitrary bodies under any topic must never panic a shop platform's mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipping_service::domain::platform::{map, Call, Platform};

const TOPICS: [&str; 7] = [
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "order.created",
    "order.updated",
    "order.deleted",
    "products/update",
];

fuzz_target!(|data: &[u8]| {
    // Layout: a selector byte (platform and topic), then the body.
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let call = Call {
        platform: Platform::ALL[usize::from(selector & 1)],
        topic: Some(TOPICS[usize::from(selector >> 1) % TOPICS.len()].to_owned()),
        origin: Some("https://shop.example".to_owned()),
        event_id: (selector & 0x80 != 0).then(|| "evt".to_owned()),
    };
    let _ = map(&call, &payload, body);
});
