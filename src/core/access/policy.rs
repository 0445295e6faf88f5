//! Who may enter.
//!
//! Rules combine like this: when `allowed_emails` or `allowed_email_domains` is
//! set, the person's (verified) email must be in the list **or** in one of the
//! domains; and every claim named in `allowed_claims` must carry one of its
//! accepted values (a list claim passes when any of its items is accepted).
//! All groups that are set must pass.

use std::cell::Cell;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// What a cached identity's access checks answered, per rule set (`slot`):
/// the rules and the claims of a cache entry never change, so each set is
/// checked once. Slots from 64 on are checked every time.
#[derive(Debug, Clone, Default)]
pub struct Admissions {
    checked: Cell<u64>,
    admitted: Cell<u64>,
}

impl Admissions {
    /// Whether the rules of `slot` admit the entry: `check` runs them the
    /// first time, the answer is kept.
    pub fn admitted_by(&self, slot: usize, check: impl FnOnce() -> bool) -> bool {
        let Some(bit) = u32::try_from(slot).ok().and_then(|s| 1u64.checked_shl(s)) else {
            return check();
        };
        if self.checked.get() & bit == 0 {
            let ok = check();
            self.checked.set(self.checked.get() | bit);
            if ok {
                self.admitted.set(self.admitted.get() | bit);
            }
        }
        self.admitted.get() & bit != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRule {
    /// `*`: any domain.
    Any,
    /// `example.fr`: exactly that domain.
    Exact(String),
    /// `*.gouv.fr`: any sub-domain of `gouv.fr` (not `gouv.fr` itself).
    Subdomains(String),
}

impl DomainRule {
    pub fn parse(text: &str) -> Option<DomainRule> {
        let t = text.trim().to_ascii_lowercase();
        if t == "*" {
            return Some(DomainRule::Any);
        }
        let (sub, domain) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, t.trim_start_matches('@').to_string()),
        };
        let valid = !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !valid {
            return None;
        }
        Some(if sub {
            DomainRule::Subdomains(domain)
        } else {
            DomainRule::Exact(domain)
        })
    }

    fn matches(&self, domain: &str) -> bool {
        match self {
            DomainRule::Any => true,
            DomainRule::Exact(d) => domain == d,
            DomainRule::Subdomains(d) => domain
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `allow_all_users`: everyone the provider signs in (a provider that
    /// knows no email, such as OpenStreetMap).
    pub everyone: bool,
    pub emails: BTreeSet<String>,
    pub domains: Vec<DomainRule>,
    pub claims: Vec<(String, Vec<String>)>,
}

/// Why someone was not let in. Safe to log: it names claims, never tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NoEmail,
    EmailNotVerified,
    EmailNotAllowed,
    ClaimNotAllowed(String),
    /// The route admits people signed in with other providers only.
    ProviderNotAllowed,
    /// The access document revokes the person.
    Revoked,
    /// No rule admits anyone: the access document has none (or none is in
    /// force yet).
    NoRule,
    /// The route needs a stronger authentication (`acr`) than the
    /// person's (step-up, RFC 9470).
    AcrTooLow,
}

impl Denial {
    /// A stable name for the audit lines.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NoEmail => "no_email",
            Denial::EmailNotVerified => "email_not_verified",
            Denial::EmailNotAllowed => "email_not_allowed",
            Denial::ClaimNotAllowed(_) => "claim_not_allowed",
            Denial::ProviderNotAllowed => "provider_not_allowed",
            Denial::Revoked => "revoked",
            Denial::NoRule => "no_rule",
            Denial::AcrTooLow => "acr_too_low",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Denial::NoEmail => "the identity has no email address".into(),
            Denial::EmailNotVerified => "the email address is not verified".into(),
            Denial::EmailNotAllowed => {
                "the email address is not in the allowed emails or domains".into()
            }
            Denial::ClaimNotAllowed(c) => format!("claim `{c}` has no accepted value"),
            Denial::ProviderNotAllowed => {
                "the route does not admit people signed in with this provider".into()
            }
            Denial::Revoked => "the access document revokes this person".into(),
            Denial::NoRule => "the access document has no rule that admits anyone".into(),
            Denial::AcrTooLow => "the route needs a stronger authentication (acr)".into(),
        }
    }
}

/// Whether the email counts as verified: `email_verified` absent (ProConnect
/// sends none: its addresses come from the administrations' own
/// directories), `true`, or the string `"true"`. Any other value (`false`,
/// `"false"`, `0`, `null`, ...) means unverified.
pub fn email_verified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        Some(_) => false,
    }
}

/// Merges userinfo's identity claims into the ID token's: userinfo adds
/// and updates claims, but never turns an email the ID token calls
/// unverified into a verified one.
pub fn merge_userinfo(claims: &mut Map<String, Value>, userinfo: Map<String, Value>) {
    let unverified = claims
        .get("email_verified")
        .filter(|_| !email_verified(claims))
        .cloned();
    claims.extend(userinfo);
    if let Some(value) = unverified {
        claims.insert("email_verified".into(), value);
    }
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        !self.everyone
            && self.emails.is_empty()
            && self.domains.is_empty()
            && self.claims.is_empty()
    }

    /// Checks the identity claims against the rules.
    pub fn check(&self, claims: &Map<String, Value>) -> Result<(), Denial> {
        if !self.emails.is_empty() || !self.domains.is_empty() {
            let email = claims
                .get("email")
                .and_then(Value::as_str)
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .ok_or(Denial::NoEmail)?;
            if !email_verified(claims) {
                return Err(Denial::EmailNotVerified);
            }
            let domain = match email.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => domain,
                _ => return Err(Denial::EmailNotAllowed),
            };
            let listed = self.emails.contains(&email);
            if !listed && !self.domains.iter().any(|d| d.matches(domain)) {
                return Err(Denial::EmailNotAllowed);
            }
        }
        for (name, accepted) in &self.claims {
            let ok = match claims.get(name) {
                Some(Value::Array(items)) => items.iter().any(|v| value_accepted(v, accepted)),
                Some(v) => value_accepted(v, accepted),
                None => false,
            };
            if !ok {
                return Err(Denial::ClaimNotAllowed(name.clone()));
            }
        }
        Ok(())
    }
}

fn value_accepted(value: &Value, accepted: &[String]) -> bool {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    accepted.contains(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn policy(emails: &[&str], domains: &[&str], claims: &[(&str, &[&str])]) -> Policy {
        Policy {
            everyone: false,
            emails: emails.iter().map(|s| s.to_string()).collect(),
            domains: domains
                .iter()
                .map(|d| DomainRule::parse(d).unwrap())
                .collect(),
            claims: claims
                .iter()
                .map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn domain_rules() {
        let p = policy(&[], &["*.gouv.fr", "example.com"], &[]);
        assert!(p
            .check(&claims(json!({"email": "a@numerique.gouv.fr"})))
            .is_ok());
        assert!(p
            .check(&claims(json!({"email": "A@Deep.Numerique.GOUV.fr"})))
            .is_ok());
        assert!(p.check(&claims(json!({"email": "a@example.com"}))).is_ok());
        assert_eq!(
            p.check(&claims(json!({"email": "a@gouv.fr"}))),
            Err(Denial::EmailNotAllowed)
        );
        assert_eq!(
            p.check(&claims(json!({"email": "a@evilgouv.fr"}))),
            Err(Denial::EmailNotAllowed)
        );
        assert_eq!(
            p.check(&claims(json!({"email": "a@sub.example.com"}))),
            Err(Denial::EmailNotAllowed)
        );
        assert_eq!(
            p.check(&claims(json!({"email": "a@gouv.fr.evil.com"}))),
            Err(Denial::EmailNotAllowed)
        );
        assert_eq!(p.check(&claims(json!({"sub": "x"}))), Err(Denial::NoEmail));
        assert!(policy(&[], &["*"], &[])
            .check(&claims(json!({"email": "x@y.z"})))
            .is_ok());
    }

    #[test]
    fn email_list_or_domain() {
        let p = policy(&["Bob@Interieur.gouv.fr"], &["numerique.gouv.fr"], &[]);
        let p = Policy {
            emails: p.emails.iter().map(|e| e.to_ascii_lowercase()).collect(),
            ..p
        };
        assert!(p
            .check(&claims(json!({"email": "bob@interieur.gouv.fr"})))
            .is_ok());
        assert!(p
            .check(&claims(json!({"email": "alice@numerique.gouv.fr"})))
            .is_ok());
        assert!(p
            .check(&claims(json!({"email": "eve@interieur.gouv.fr"})))
            .is_err());
    }

    #[test]
    fn unverified_email_is_refused() {
        let p = policy(&[], &["*"], &[]);
        assert_eq!(
            p.check(&claims(json!({"email": "a@b.fr", "email_verified": false}))),
            Err(Denial::EmailNotVerified)
        );
        assert!(p
            .check(&claims(json!({"email": "a@b.fr", "email_verified": true})))
            .is_ok());
        // Only true and "true" verify; any other value present does not.
        for value in [
            json!("false"),
            json!("False"),
            json!(0),
            json!(1),
            json!(null),
            json!("yes"),
        ] {
            assert_eq!(
                p.check(&claims(json!({"email": "a@b.fr", "email_verified": value}))),
                Err(Denial::EmailNotVerified),
                "{value}"
            );
        }
        assert!(p
            .check(&claims(
                json!({"email": "a@b.fr", "email_verified": "true"})
            ))
            .is_ok());
        assert!(p.check(&claims(json!({"email": "a@b.fr"}))).is_ok());
    }

    #[test]
    fn userinfo_never_verifies_what_the_id_token_did_not() {
        let p = policy(&[], &["*"], &[]);
        for (id_token, userinfo, verified) in [
            (json!(false), json!("false"), false),
            (json!(false), json!(true), false),
            (json!("false"), json!("true"), false),
            (json!(true), json!(false), false),
            (json!(true), json!("true"), true),
        ] {
            let mut c = claims(json!({"sub": "x", "email": "a@b.fr", "email_verified": id_token}));
            merge_userinfo(&mut c, claims(json!({"email_verified": userinfo})));
            assert_eq!(p.check(&c).is_ok(), verified, "{id_token} then {userinfo}");
        }
        // Without email_verified in the ID token, userinfo's value stands.
        let mut c = claims(json!({"sub": "x", "email": "a@b.fr"}));
        merge_userinfo(&mut c, claims(json!({"email_verified": "false"})));
        assert_eq!(p.check(&c), Err(Denial::EmailNotVerified));
    }

    #[test]
    fn claims_all_groups_must_pass() {
        let p = policy(
            &[],
            &["*.gouv.fr"],
            &[("siret", &["13002526500013"]), ("roles", &["admin", "ops"])],
        );
        let ok =
            json!({"email": "a@x.gouv.fr", "siret": "13002526500013", "roles": ["user", "ops"]});
        assert!(p.check(&claims(ok)).is_ok());
        let wrong_siret =
            json!({"email": "a@x.gouv.fr", "siret": "11000201100044", "roles": ["ops"]});
        assert_eq!(
            p.check(&claims(wrong_siret)),
            Err(Denial::ClaimNotAllowed("siret".into()))
        );
        let no_role = json!({"email": "a@x.gouv.fr", "siret": "13002526500013", "roles": ["user"]});
        assert_eq!(
            p.check(&claims(no_role)),
            Err(Denial::ClaimNotAllowed("roles".into()))
        );
        let missing = json!({"email": "a@x.gouv.fr", "roles": ["ops"]});
        assert!(p.check(&claims(missing)).is_err());
        let wrong_domain =
            json!({"email": "a@example.com", "siret": "13002526500013", "roles": ["ops"]});
        assert_eq!(p.check(&claims(wrong_domain)), Err(Denial::EmailNotAllowed));
    }

    #[test]
    fn claims_only_policy_needs_no_email() {
        let p = policy(&[], &[], &[("idp_id", &["fia1v2"])]);
        assert!(p.check(&claims(json!({"idp_id": "fia1v2"}))).is_ok());
        assert!(p.check(&claims(json!({"idp_id": ["fia1v2"]}))).is_ok());
        assert!(p
            .check(&claims(json!({"idp_id": {"x": "fia1v2"}})))
            .is_err());
    }

    #[test]
    fn domain_rule_parsing() {
        assert_eq!(DomainRule::parse("*"), Some(DomainRule::Any));
        assert_eq!(
            DomainRule::parse("*.Gouv.fr"),
            Some(DomainRule::Subdomains("gouv.fr".into()))
        );
        assert_eq!(
            DomainRule::parse("@example.com"),
            Some(DomainRule::Exact("example.com".into()))
        );
        assert_eq!(DomainRule::parse("a b.fr"), None);
        assert_eq!(DomainRule::parse("*."), None);
    }

    #[test]
    fn admission_is_remembered_per_rule_set() {
        let memo = Admissions::default();
        let runs = std::cell::Cell::new(0);
        let check = |ok: bool| {
            runs.set(runs.get() + 1);
            ok
        };
        assert!(memo.admitted_by(0, || check(true)));
        assert!(memo.admitted_by(0, || check(false)), "remembered");
        assert!(!memo.admitted_by(3, || check(false)));
        assert!(!memo.admitted_by(3, || check(true)), "remembered");
        assert_eq!(runs.get(), 2);
        assert!(memo.admitted_by(64, || check(true)));
        assert!(
            !memo.admitted_by(64, || check(false)),
            "slot 64 and beyond: every time"
        );
        assert_eq!(runs.get(), 4);
    }
}
