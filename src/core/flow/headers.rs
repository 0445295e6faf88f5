//! Identity headers to the upstream, and removal of spoofed copies.

use serde_json::Value;

use crate::core::config::{Config, ACCESS_TOKEN_HEADER, ID_TOKEN_HEADER, PROVIDER_HEADER};
use crate::core::session::cookies::{
    LOGIN_COOKIE_INFIX, LOGOUT_COOKIE_SUFFIX, REFUSAL_COOKIE_SUFFIX,
};
use crate::core::session::sealed::is_session_cookie;
pub use crate::core::session::Identity;
use crate::core::session::Session;

/// A header name byte as upstream frameworks may read it: lower case, with
/// `_` taken as `-` (CGI/WSGI turn both into the same variable).
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// Whether `name`, folded, begins with `prefix` (lower case, with `-`).
fn folded_starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| fold(a) == b)
}

/// Whether `name`, folded, is `owned` (lower case, with `-`).
fn folded_eq(name: &str, owned: &str) -> bool {
    name.len() == owned.len() && folded_starts_with(name, owned)
}

/// Identity headers of oauth2-proxy that Sésame never sets, but that an
/// application written for oauth2-proxy may read and trust: a client's copy
/// must not reach it either.
const PROXY_IDENTITY_HEADERS: &[&str] = &["x-forwarded-groups", "x-forwarded-access-token"];
/// oauth2-proxy's `X-Auth-Request-*` family (user, email, groups, tokens...):
/// only the authenticating proxy speaks it.
const PROXY_IDENTITY_PREFIX: &str = "x-auth-request-";

/// The `Cache-Control` of an upstream answer that Sésame adds a
/// `Set-Cookie` to (a refreshed session): kept by no cache.
pub const SET_COOKIE_CACHE_CONTROL: &str = "private, no-store";

/// What changes in a request's headers before it goes upstream: one hostcall
/// per removed name and per added header, none for the others (the client's
/// headers are never rewritten).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// Headers of the client that only Sésame may set: every copy removed.
    pub remove: Vec<String>,
    /// Identity headers added (lower-case names), after the removals.
    pub add: Identity,
    /// The `Cookie` header without Sésame's own cookies, when the request
    /// carried any ("" when nothing is left: the header goes).
    pub cookie: Option<String>,
}

impl Upstream {
    /// The changes every request needs: the client's copies of identity
    /// headers removed (see [`identity_removals`]), nothing added yet.
    pub fn stripping(config: &Config, headers: &[(&str, &str)]) -> Upstream {
        Upstream {
            remove: identity_removals(config, headers),
            add: Identity::default(),
            cookie: if config.strip_session_cookies {
                cookies_without_ours(config, headers)
            } else {
                None
            },
        }
    }

    /// Whether the request goes upstream exactly as it came.
    pub fn is_unchanged(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty() && self.cookie.is_none()
    }

    /// The headers the upstream gets for a request that came with `headers`.
    pub fn apply(&self, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let cookie = self
            .cookie
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|c| ("cookie".to_string(), c.clone()));
        headers
            .iter()
            .filter(|(n, _)| !self.remove.iter().any(|r| r.eq_ignore_ascii_case(n)))
            .filter(|(n, _)| self.cookie.is_none() || !n.eq_ignore_ascii_case("cookie"))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(cookie)
            .chain(self.add.iter().cloned())
            .collect()
    }

    /// These changes with `add` added.
    pub fn with(self, add: Identity) -> Upstream {
        Upstream { add, ..self }
    }
}

/// Whether a cookie is one of Sésame's: the session cookie and its chunks,
/// a sign-in's and a sign-out's.
pub fn is_sesame_cookie(config: &Config, name: &str) -> bool {
    let base = config.cookie_name.as_str();
    is_session_cookie(base, name)
        || name.strip_prefix(base).is_some_and(|rest| {
            rest == LOGOUT_COOKIE_SUFFIX
                || rest == REFUSAL_COOKIE_SUFFIX
                || rest.starts_with(LOGIN_COOKIE_INFIX)
        })
}

/// The request's cookies without Sésame's, as one `Cookie` header value;
/// `None` when it carries none of them (the header is left as it is, and
/// nothing is allocated). The application has no use for them, and they
/// hold the provider's tokens in sealed form.
fn cookies_without_ours(config: &Config, headers: &[(&str, &str)]) -> Option<String> {
    let ours =
        |pair: &str| is_sesame_cookie(config, pair.split('=').next().unwrap_or("").trim_ascii());
    let is_cookie = |name: &&str| name.eq_ignore_ascii_case("cookie");
    if !headers
        .iter()
        .any(|(name, value)| is_cookie(name) && value.split(';').any(ours))
    {
        return None;
    }
    let mut kept = String::new();
    for (name, value) in headers {
        if !is_cookie(name) {
            continue;
        }
        for pair in value.split(';').map(str::trim_ascii) {
            if !pair.is_empty() && !ours(pair) {
                if !kept.is_empty() {
                    kept.push_str("; ");
                }
                kept.push_str(pair);
            }
        }
    }
    Some(kept)
}

/// The request headers to remove before the request goes upstream: every
/// header Sésame owns, and oauth2-proxy's other identity headers, in any case
/// and with `_` for `-`. Each name once, as the client spelled it. Nothing is
/// allocated unless the client sent one.
pub fn identity_removals(config: &Config, headers: &[(&str, &str)]) -> Vec<String> {
    let owned = config.identity_header_names();
    let mut remove: Vec<String> = Vec::new();
    for (name, _) in headers {
        if name.starts_with(':') {
            continue;
        }
        let spoofed = owned.iter().any(|o| folded_eq(name, o))
            || PROXY_IDENTITY_HEADERS.iter().any(|o| folded_eq(name, o))
            || folded_starts_with(name, PROXY_IDENTITY_PREFIX);
        if spoofed && !remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            remove.push(name.to_string());
        }
    }
    remove
}

/// A claim as a header value, or `None` when it has no safe representation
/// (objects, or text with control characters).
fn claim_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        _ => return None,
    };
    (!text.is_empty() && !text.chars().any(|c| c.is_control())).then_some(text)
}

/// The identity headers for a session, in configuration order, then, with
/// several providers, the provider's id (`X-Auth-Request-Provider`; with
/// one, it would say the same on every request: a hostcall for nothing).
pub fn identity_headers(config: &Config, session: &Session) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(config.claim_headers.len() + 4);
    let provider = config
        .providers
        .get(session.provider)
        .map_or("", |p| p.id.as_str());
    for (header, claim) in &config.claim_headers {
        if let Some(mut v) = session.claims.get(claim).and_then(claim_value) {
            // `<provider id>:<sub>` on the user headers: unique across
            // providers, whose `sub`s may coincide.
            if config.qualified_user && claim == "sub" && is_user_header(header) {
                v = format!("{provider}:{v}");
            }
            out.push((header.to_ascii_lowercase(), v));
        }
    }
    if config.providers.len() > 1 {
        out.push((PROVIDER_HEADER.to_ascii_lowercase(), provider.to_string()));
    }
    if config.pass_id_token {
        if let Some(t) = &session.id_token {
            out.push((ID_TOKEN_HEADER.to_ascii_lowercase(), t.clone()));
        }
    }
    if config.pass_access_token {
        if let Some(t) = &session.access_token {
            out.push((ACCESS_TOKEN_HEADER.to_ascii_lowercase(), t.clone()));
        }
    }
    if config.set_authorization_header {
        if let Some(t) = &session.id_token {
            out.push(("authorization".into(), format!("Bearer {t}")));
        }
    }
    out
}

/// Whether a header is one of the user headers (`X-Forwarded-User`,
/// `X-Auth-Request-User`) that `qualified_user` qualifies.
fn is_user_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("x-forwarded-user")
        || name.eq_ignore_ascii_case("x-auth-request-user")
}

/// Whether every byte is ASCII (the adapter's test of a request's headers,
/// read in one piece): `<[u8]>::is_ascii` with 8 bytes per step
/// and no early exit (wasm32's takes 4 bytes per step, with a branch for
/// each): 0.1 µs less per request with a 2.5 KB cookie in V8
/// (`bench/vm-bench.mjs`).
pub fn all_ascii(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let high = (&mut words).fold(0u64, |seen, w| {
        seen | u64::from_le_bytes(w.try_into().unwrap_or_default())
    });
    high & 0x8080_8080_8080_8080 == 0 && words.remainder().is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::tests::config_with;
    use serde_json::json;

    fn session() -> Session {
        Session {
            claims: json!({"sub": "alice-7f3a", "email": "alice@numerique.gouv.fr", "siret": "13002526500013",
                           "roles": ["a", "b"], "evil": "x\r\nSet-Cookie: y", "obj": {"a": 1}})
                .as_object()
                .unwrap()
                .clone(),
            id_token: Some("eyJ.id.tok".into()),
            access_token: Some("opaque-at".into()),
            created_at: 0,
            expires_at: 10,
            ..Default::default()
        }
    }

    #[test]
    fn spoofed_headers_are_removed_in_any_spelling() {
        let c = config_with(
            json!({"set_authorization_header": true, "claim_headers": {"X-Siret": "siret"}}),
        );
        let h = [
            (":path", "/"),
            ("X-Forwarded-Email", "boss@x"),
            ("x-forwarded-user", "boss"),
            ("X_FORWARDED_EMAIL", "boss@x"),
            ("x-auth-request-email", "boss@x"),
            ("X-Auth_Request-User", "boss"),
            ("x-forwarded-id-token", "forged"),
            ("x-auth-request-access-token", "forged"),
            ("authorization", "Bearer forged"),
            ("x-siret", "000"),
            ("x-forwarded-for", "1.2.3.4"),
            ("accept", "*/*"),
        ];
        let upstream = Upstream::stripping(&c, &h);
        let kept = upstream.apply(&h);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec![":path", "x-forwarded-for", "accept"]);
        assert_eq!(
            upstream.remove.len(),
            9,
            "each name once: {:?}",
            upstream.remove
        );
    }

    #[test]
    fn oauth2_proxy_identity_headers_sesame_does_not_set_are_removed_too() {
        let c = config_with(json!({}));
        let h = [
            ("X-Forwarded-Groups", "admins"),
            ("x_forwarded_access_token", "forged"),
            ("X-Auth-Request-Groups", "admins"),
            ("x_auth_request_roles", "admin"),
            ("X-AUTH-REQUEST-PREFERRED-USERNAME", "boss"),
            ("x-forwarded-host", "app.example.fr"),
            ("x-auth-requested", "kept: not the family"),
        ];
        let upstream = Upstream::stripping(&c, &h);
        let kept = upstream.apply(&h);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["x-forwarded-host", "x-auth-requested"]);
    }

    #[test]
    fn authorization_passes_when_sesame_does_not_set_it() {
        let c = config_with(json!({}));
        let h = [("Authorization", "Bearer app"), ("accept", "*/*")];
        assert!(identity_removals(&c, &h).is_empty());
    }

    #[test]
    fn sesame_cookies_never_reach_the_upstream() {
        let c = config_with(json!({}));
        let h = [
            ("cookie", "_ga=1; _sesame=sealed; theme=dark"),
            (
                "cookie",
                "_sesame_0=2.a; _sesame_1=b; _sesame_csrf_abc=x; _sesame_logout=y",
            ),
            ("cookie", "_sesamex=app; lang=fr"),
            ("accept", "*/*"),
        ];
        let upstream = Upstream::stripping(&c, &h);
        assert_eq!(
            upstream.cookie.as_deref(),
            Some("_ga=1; theme=dark; _sesamex=app; lang=fr")
        );
        let sent = upstream.apply(&h);
        let cookies: Vec<&str> = sent
            .iter()
            .filter(|(n, _)| n == "cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cookies, ["_ga=1; theme=dark; _sesamex=app; lang=fr"]);
        // Only ours: the header goes.
        let only = [("cookie", "_sesame=sealed")];
        let upstream = Upstream::stripping(&c, &only);
        assert_eq!(upstream.cookie.as_deref(), Some(""));
        assert!(!upstream.apply(&only).iter().any(|(n, _)| n == "cookie"));
        // None of ours: nothing to change.
        let theirs = [("cookie", "_ga=1; x_sesame=2")];
        assert!(Upstream::stripping(&c, &theirs).is_unchanged());
        // Turned off: the cookies go on.
        let keep = config_with(json!({"strip_session_cookies": false}));
        assert_eq!(Upstream::stripping(&keep, &h).cookie, None);
    }

    #[test]
    fn identity_headers_from_claims() {
        let c = config_with(
            json!({"set_authorization_header": true, "pass_access_token": true, "pass_id_token": true,
            "claim_headers": {"X-Siret": "siret", "X-Roles": "roles", "X-Evil": "evil", "X-Obj": "obj"}}),
        );
        let h = identity_headers(&c, &session());
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-forwarded-user"), Some("alice-7f3a"));
        assert_eq!(get("x-forwarded-email"), Some("alice@numerique.gouv.fr"));
        assert_eq!(get("x-auth-request-email"), Some("alice@numerique.gouv.fr"));
        assert_eq!(get("x-auth-request-user"), Some("alice-7f3a"));
        assert_eq!(get("x-siret"), Some("13002526500013"));
        assert_eq!(get("x-roles"), Some("a,b"));
        assert_eq!(
            get("x-evil"),
            None,
            "control characters must not reach a header"
        );
        assert_eq!(get("x-obj"), None);
        assert_eq!(get("x-forwarded-id-token"), Some("eyJ.id.tok"));
        assert_eq!(get("x-auth-request-access-token"), Some("opaque-at"));
        assert_eq!(get("authorization"), Some("Bearer eyJ.id.tok"));
        // The defaults pass no token.
        let quiet = config_with(json!({}));
        let h = identity_headers(&quiet, &session());
        assert!(!h
            .iter()
            .any(|(k, _)| k.contains("token") || k == "authorization"));
    }

    #[test]
    fn all_ascii_finds_any_byte_past_ascii_wherever_it_is() {
        let text: Vec<u8> = (0..40u8).map(|i| b' ' + i).collect();
        for len in 0..text.len() {
            assert!(all_ascii(&text[..len]), "{len}");
            for at in 0..len {
                for high in [0x80u8, 0xe9, 0xff] {
                    let mut t = text[..len].to_vec();
                    t[at] = high;
                    assert!(!all_ascii(&t), "{len} {at} {high:#x}");
                }
            }
        }
    }
}
