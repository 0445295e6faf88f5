//! Audit lines: one JSON object on one log line for each event an operator
//! keeps an eye on (sign-ins, refusals, sign-outs, refused keys and tokens,
//! access-document changes). Identity claims only: never a token, a key, a
//! cookie or a secret.

use serde_json::{Map, Value};

use crate::core::access::document::{format_time, AccessDocument};
use crate::core::config::Config;
use crate::core::flow::who::Who;
use crate::core::flow::Outcome;

/// Where and when an event happened.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Unix seconds.
    pub time: u64,
    /// The request's path, without its query.
    pub path: &'a str,
    /// The request's `x-request-id`.
    pub request_id: Option<&'a str>,
}

/// Whether an outcome has an audit line (the adapter keeps the request's
/// path and id only for these, and for steps that wait for the provider).
pub fn audited(outcome: &Outcome) -> bool {
    event(outcome).is_some()
}

/// An outcome's audit event: its name, who it is about, and its reason's
/// code; `None` for an outcome without an audit line.
#[cfg_attr(sesame_size, optimize(size))]
fn event(outcome: &Outcome) -> Option<(&'static str, Option<&Who>, Option<&str>)> {
    Some(match outcome {
        Outcome::LoginSucceeded { who } => ("sign_in", Some(who), None),
        Outcome::LoginFailed { reason, .. } => ("sign_in_failed", None, Some(*reason)),
        Outcome::Denied {
            who, code, sign_in, ..
        } => {
            let event = if *sign_in {
                "sign_in_refused"
            } else {
                "access_refused"
            };
            (event, Some(&**who), Some(*code))
        }
        Outcome::SignedOut { who, .. } => ("sign_out", who.as_deref(), None),
        Outcome::KeyRefused { reason, .. } => ("api_key_refused", None, Some(*reason)),
        Outcome::TokenIssued { who } => ("personal_token_issued", Some(&**who), None),
        Outcome::TokenRefused { who, reason } => {
            ("personal_token_refused", who.as_deref(), Some(*reason))
        }
        _ => return None,
    })
}

/// An audit line's fields: the event and its time, then the rest.
#[cfg_attr(sesame_size, optimize(size))]
fn line(event: &str, time: u64) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("audit".into(), "sesame".into());
    fields.insert("event".into(), event.into());
    fields.insert("time".into(), format_time(time).into());
    fields
}

#[cfg_attr(sesame_size, optimize(size))]
fn put(fields: &mut Map<String, Value>, name: &str, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        fields.insert(name.into(), v.into());
    }
}

#[cfg_attr(sesame_size, optimize(size))]
fn put_who(fields: &mut Map<String, Value>, config: &Config, who: &Who) {
    let provider = config.providers.get(who.provider);
    put(fields, "provider", provider.map(|p| p.id.as_str()));
    put(fields, "issuer", provider.map(|p| p.issuer.as_str()));
    put(fields, "sub", Some(&who.sub));
    for (name, value) in [
        ("email", &who.email),
        ("idp_id", &who.idp_id),
        ("siret", &who.siret),
        ("acr", &who.acr),
    ] {
        put(fields, name, value.as_deref());
    }
}

/// The audit line of a request's outcome, if it has one.
#[cfg_attr(sesame_size, optimize(size))]
pub fn request_line(config: &Config, outcome: &Outcome, at: &Context) -> Option<String> {
    let (event, who, reason) = event(outcome)?;
    let mut fields = line(event, at.time);
    if let Some(who) = who {
        put_who(&mut fields, config, who);
    }
    if let Outcome::KeyRefused { key, .. } = outcome {
        put(&mut fields, "key", key.as_deref());
    }
    put(&mut fields, "path", Some(at.path));
    put(&mut fields, "reason", reason);
    // A refusal's reason in words too (it names claims, never their values).
    if let Outcome::Denied { reason, .. } = outcome {
        put(&mut fields, "detail", Some(reason));
    }
    put(&mut fields, "request_id", at.request_id);
    Some(crate::core::json_text(&Value::Object(fields)))
}

/// The audit line of a new access document in force.
#[cfg_attr(sesame_size, optimize(size))]
pub fn document_line(document: &AccessDocument, time: u64) -> String {
    let mut fields = line("access_document_changed", time);
    fields.insert("sha256".into(), document.digest.clone().into());
    let policy = &document.policy;
    for (name, count) in [
        ("emails", policy.emails.len()),
        ("domains", policy.domains.len()),
        ("claims", policy.claims.len()),
        ("revoked", document.revoked.len()),
        ("api_keys", document.api_keys.len()),
    ] {
        fields.insert(name.into(), count.into());
    }
    crate::core::json_text(&Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::tests::config_with;
    use serde_json::json;

    #[test]
    fn a_line_names_the_person_and_nothing_secret() {
        let c = config_with(json!({}));
        let claims = json!({"sub": "alice-7f3a", "email": "alice@x.fr", "siret": 13002526500013u64,
                            "acr": "eidas1", "access_token": "at-secret"});
        let who = Who::of(0, claims.as_object().unwrap());
        let outcome = Outcome::Denied {
            who,
            reason: "the access document revokes this person".into(),
            code: "revoked",
            sign_in: false,
        };
        let at = Context {
            time: 1_814_313_600,
            path: "/app",
            request_id: Some("req-1"),
        };
        let text = request_line(&c, &outcome, &at).unwrap();
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["audit"], "sesame");
        assert_eq!(v["event"], "access_refused");
        assert_eq!(v["reason"], "revoked");
        assert_eq!(v["detail"], "the access document revokes this person");
        assert_eq!(v["time"], "2027-06-30T00:00:00Z");
        assert_eq!(v["sub"], "alice-7f3a");
        assert_eq!(v["email"], "alice@x.fr");
        assert_eq!(v["siret"], "13002526500013");
        assert_eq!(v["acr"], "eidas1");
        assert_eq!(v["provider"], c.providers[0].id.as_str());
        assert_eq!(v["issuer"], c.providers[0].issuer.as_str());
        assert_eq!(v["path"], "/app");
        assert_eq!(v["request_id"], "req-1");
        assert!(v.get("idp_id").is_none());
        assert!(!text.contains("at-secret"));
        let key = Outcome::KeyRefused {
            key: Some("ci-bot".into()),
            reason: "expired_key",
        };
        let v: Value = serde_json::from_str(&request_line(&c, &key, &at).unwrap()).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["key"].as_str()),
            (Some("api_key_refused"), Some("ci-bot"))
        );
        assert!(request_line(&c, &Outcome::Passed, &at).is_none());
        assert!(!audited(&Outcome::Passed));
    }
}
