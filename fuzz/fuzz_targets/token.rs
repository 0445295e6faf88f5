//! Arbitrary bytes as an ID token and as a userinfo answer (signed JWT and
//! plain JSON), validated against a fixed key set. Only tokens signed with the
//! fixed keys (the seeds) can pass, and then with every claim rule satisfied.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sesame::core::oidc::token::{validate_id_token, validate_userinfo_json, validate_userinfo_jwt};
use sesame_fuzz::{expectations, key_set, ISSUER, SUB};

/// The nonce of the seed ID tokens.
const NONCE: &str = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let token = text.trim();
    let exp = expectations();
    if let Ok(claims) = validate_id_token(token, key_set(), &exp, NONCE) {
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
        assert!(claims
            .get("sub")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()));
    }
    if let Ok(claims) = validate_userinfo_jwt(token, key_set(), &exp, SUB) {
        assert_eq!(claims.get("sub").and_then(Value::as_str), Some(SUB));
    }
    if let Ok(claims) = validate_userinfo_json(data, SUB) {
        assert_eq!(claims.get("sub").and_then(Value::as_str), Some(SUB));
    }
});
