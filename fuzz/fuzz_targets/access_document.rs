//! Arbitrary bytes as an access document: read whole or refused with at
//! least one problem, never a panic; a document taken answers revocation
//! and key lookups; and any text as an RFC 3339 time reads to a time that
//! writes back to the same instant, or to nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use sesame::core::access::document::{format_time, parse_time, AccessDocument};

fuzz_target!(|data: &[u8]| {
    match AccessDocument::parse(data, &["pc", "staff"], &|c| c == "siret" || c == "sub") {
        Ok(document) => {
            let claims: Map<String, Value> = json!({"sub": "s", "email": "a@b.fr"})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let _ = document.revokes(0, &claims);
            let _ = document.revokes(7, &Map::new());
            let _ = document.api_keys.find(&[0u8; 32]);
            assert_eq!(document.digest.len(), 16);
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal names a problem"),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(t) = parse_time(text) {
            assert_eq!(parse_time(&format_time(t)), Some(t), "{text:?}");
        }
    }
});
