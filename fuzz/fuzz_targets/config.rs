//! Arbitrary bytes as the plugin configuration. A refused configuration has at
//! least one error, and no error repeats a secret (checked with the secrets
//! marked by a canary); an accepted one builds a filter that answers requests
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sesame::core::config::Config;
use sesame::core::flow::Filter;
use sesame::core::http::Request;
use sesame::core::oidc::provider::ProviderState;
use sesame_fuzz::{check_step, CountingEntropy, NOW};

const CANARY: &str = "fuzz-canary-";

/// The input with its secrets (`client_secret`, `cookie_secret`, when they are
/// strings) marked with a canary, when it is a JSON object that does not
/// already hold the canary elsewhere.
fn with_canaries(data: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    let mut texts = Vec::new();
    for (k, v) in &obj {
        texts.push(k.clone());
        collect_strings(v, &mut texts);
    }
    if texts.iter().any(|t| t.contains(CANARY)) {
        return None;
    }
    let mut marked = false;
    for key in ["client_secret", "cookie_secret"] {
        if let Some(Value::String(s)) = obj.get_mut(key) {
            *s = format!("{CANARY}{s}");
            marked = true;
        }
    }
    marked.then(|| Value::Object(obj).to_string().into_bytes())
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            collect_strings(v, out)
        }),
        _ => {}
    }
}

/// Every request of a short visit, through a filter built from the configuration.
fn visit(config: Config) {
    let filter = Filter::new(config);
    let providers = vec![ProviderState::default(); filter.config.providers.len()];
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/ping"),
        ("POST", "/static/app.js"),
        ("GET", "/oauth2/sign_in?rd=/x"),
        ("GET", "/oauth2/callback?state=abc&code=def"),
        ("GET", "/oauth2/sign_out"),
        ("GET", "/oauth2/auth"),
    ] {
        let req = Request {
            method,
            path,
            headers: vec![("accept", "text/html"), ("x-forwarded-user", "mallory")],
        };
        let step = filter.on_request(&req, &providers, NOW, &mut CountingEntropy(0));
        check_step(&filter, &req, &step);
    }
}

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Err(errors) => assert!(!errors.is_empty(), "refused without a reason"),
        Ok(config) => visit(config),
    }
    // Secrets are never repeated, neither in errors nor in the Debug form.
    if let Some(marked) = with_canaries(data) {
        match Config::parse(&marked) {
            Err(errors) => {
                for e in &errors {
                    let line = e.to_string();
                    assert!(!line.contains(CANARY), "a secret in: {line}");
                }
            }
            Ok(config) => {
                let debug = format!("{config:?}");
                assert!(
                    !debug.contains(CANARY),
                    "a secret in the configuration's Debug"
                );
            }
        }
    }
});
