//! Arbitrary bodies must never panic the JSON and event-parsing steps of the webhook.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipping_service::domain::Delivery;

fuzz_target!(|body: &[u8]| {
    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = Delivery::parse(&payload, body, None);
    }
});
