//! Arbitrary header sets and bodies must never panic the verifier, whatever they contain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipping_service::signature::{Secret, Verifier};

const NAMES: [&str; 7] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-ecomm-signature",
];

fuzz_target!(|data: &[u8]| {
    // Layout: body, then 0xFF-separated header values, each prefixed by a name selector byte.
    let mut parts = data.split(|b| *b == 0xFF);
    let body = parts.next().unwrap_or_default();
    let headers: Vec<(&str, &[u8])> = parts
        .filter_map(|part| part.split_first())
        .map(|(selector, value)| (NAMES[*selector as usize % NAMES.len()], value))
        .collect();
    let verifier = Verifier {
        secrets: vec![
            Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            Secret::parse("plain-secret").unwrap(),
        ],
        hex_header: "x-ecomm-signature".into(),
        tolerance_secs: 300,
    };
    let _ = verifier.verify(body, &headers, 1_614_265_330);
});
