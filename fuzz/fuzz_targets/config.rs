//! Arbitrary bytes as the plugin configuration. A refused configuration has at
//! least one error and no error repeats a secret; an accepted one builds a
//! filter that answers requests without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sesame::core::config::Config;
use sesame::core::filter::Filter;
use sesame::core::http::Request;
use sesame::core::provider::ProviderState;
use sesame_fuzz::{check_step, CountingEntropy, NOW};

/// The secrets of the input (string values of `client_secret` and
/// `cookie_secret`) that appear nowhere else in it, so that no other key's
/// error may legitimately quote them.
fn secrets(data: &[u8]) -> Vec<String> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let mut others = Vec::new();
    for (k, v) in &obj {
        others.push(k.clone());
        if k != "client_secret" && k != "cookie_secret" {
            collect_strings(v, &mut others);
        }
    }
    ["client_secret", "cookie_secret"]
        .iter()
        .filter_map(|k| obj.get(*k)?.as_str())
        .filter(|s| s.len() >= 8 && !others.iter().any(|o| o.contains(*s)))
        .map(str::to_string)
        .collect()
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

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            let secrets = secrets(data);
            for e in &errors {
                let line = e.to_string();
                for s in &secrets {
                    assert!(!line.contains(s.as_str()), "a secret in: {line}");
                }
            }
        }
        Ok(config) => {
            let debug = format!("{config:?}");
            for s in secrets(data) {
                assert!(!debug.contains(&s), "a secret in the configuration's Debug");
            }
            let filter = Filter::new(config);
            let provider = ProviderState::default();
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
                    method: method.into(),
                    path: path.into(),
                    headers: vec![
                        ("accept".into(), "text/html".into()),
                        ("x-forwarded-user".into(), "mallory".into()),
                    ],
                };
                let step = filter.on_request(&req, &provider, NOW, &mut CountingEntropy(0));
                check_step(&filter, &req, &step);
            }
        }
    }
});
