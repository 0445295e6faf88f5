//! Fixed inputs shared by the fuzz targets and the seed generator: one valid
//! configuration, a provider whose discovery and keys are loaded, signing keys
//! derived from fixed bytes, a fixed clock and deterministic random bytes.
//!
//! Everything is deterministic so that a crash found once replays every time.

use std::sync::OnceLock;

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use sesame::core::config::{Config, SUPPORTED_SIGNING_ALGS};
use sesame::core::flow::headers::identity_removals;
use sesame::core::flow::{Action, Filter, Outcome, Step};
use sesame::core::http::{str_pairs, OwnedRequest, Request};
use sesame::core::oidc::keys::KeySet;
use sesame::core::oidc::provider::{ProviderMetadata, ProviderState};
use sesame::core::oidc::token::Expectations;
use sesame::core::{b64url, Entropy};

pub const ISSUER: &str = "http://127.0.0.1:9000";
pub const CLIENT_ID: &str = "sesame";
pub const CLIENT_SECRET: &str = "fuzz-client-secret-never-shown";
/// The clock of every target (2027-01-15).
pub const NOW: u64 = 1_800_000_000;
/// The subject of the seed tokens.
pub const SUB: &str = "alice-7f3a";

/// The configuration of the request target: defaults, a public route, an email
/// domain rule, and no userinfo call (so that a token answer ends the sign-in).
pub fn config_json() -> Value {
    json!({
        "issuer": ISSUER,
        "idp_cluster": "idp",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": "http://127.0.0.1:10000/oauth2/callback",
        "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "cookie_secure": false,
        "skip_auth_routes": ["GET=^/ping$", "^/static/"],
        "allowed_email_domains": ["*.gouv.fr"],
        "fetch_userinfo": false,
        "allowed_redirect_domains": [".example.fr"]
    })
}

/// A new filter with the fixed configuration (parsed once): each input gets
/// its own, so that no cache carries state from one input to the next.
pub fn filter() -> Filter {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Config::parse(config_json().to_string().as_bytes())
            .expect("the fixed fuzz configuration is valid")
    });
    Filter::new(config.clone())
}

/// Signing keys built from fixed bytes.
pub struct Keys {
    pub es: ES256KeyPair,
    pub ed: Ed25519KeyPair,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ed = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x42; 32]));
        Keys {
            es: ES256KeyPair::from_bytes(&[0x11; 32])
                .expect("a fixed P-256 scalar")
                .with_key_id("ec-1"),
            ed: Ed25519KeyPair::from_bytes(&ed[..])
                .expect("a fixed Ed25519 seed")
                .with_key_id("ed-1"),
        }
    })
}

/// The provider's JWKS: the two keys above, plus an RSA key nobody holds the
/// private half of (RS*/PS* signatures are parsed and checked, never valid),
/// plus entries the parser must skip.
pub fn jwks() -> Value {
    let k = keys();
    let ec = k.es.public_key().public_key().to_bytes_uncompressed();
    let mut n = vec![0xC5u8; 256];
    n[255] |= 1;
    json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
         "x": b64url(&ec[1..33]), "y": b64url(&ec[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
         "x": b64url(&k.ed.public_key().to_bytes())},
        {"kty": "RSA", "kid": "rsa-1", "n": b64url(&n), "e": "AQAB"},
        {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-256", "kid": "broken", "x": "AAAA", "y": "AAAA"},
    ]})
}

pub fn key_set() -> &'static KeySet {
    static SET: OnceLock<KeySet> = OnceLock::new();
    SET.get_or_init(|| {
        KeySet::parse(jwks().to_string().as_bytes()).expect("the fixed JWKS has keys")
    })
}

pub fn algs() -> &'static [String] {
    static ALGS: OnceLock<Vec<String>> = OnceLock::new();
    ALGS.get_or_init(|| {
        SUPPORTED_SIGNING_ALGS
            .iter()
            .map(|a| a.to_string())
            .collect()
    })
}

pub fn expectations() -> Expectations<'static> {
    Expectations {
        issuer: ISSUER,
        client_id: CLIENT_ID,
        allowed_algs: algs(),
        now: NOW,
        leeway: 60,
    }
}

/// A provider whose discovery document and keys are loaded and fresh.
pub fn provider() -> ProviderState {
    let discovery = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/auth"),
        "token_endpoint": format!("{ISSUER}/token"),
        "userinfo_endpoint": format!("{ISSUER}/me"),
        "jwks_uri": format!("{ISSUER}/jwks"),
        "end_session_endpoint": format!("{ISSUER}/session/end"),
    });
    let metadata = ProviderMetadata::parse(ISSUER, discovery.to_string().as_bytes())
        .expect("the fixed discovery document is valid");
    let mut state = ProviderState::default();
    state.refreshed(metadata, key_set().clone(), NOW - 100, 3600);
    state
}

/// Deterministic "random" bytes: a counter.
pub struct CountingEntropy(pub u8);

impl Entropy for CountingEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

/// Reads the text form of a request used by the request target and its seeds:
///
/// ```text
/// GET /oauth2/callback?state=...&code=...
/// cookie: _sesame_csrf_...=...
/// accept: text/html
///
/// {"id_token": "...", "token_type": "Bearer"}
/// ```
///
/// The first line is the method and the path (the method may be left out), the
/// following lines are headers, and what follows the first empty line is the
/// body of the provider's answer to a call the filter makes, if it makes one.
pub fn parse_request(text: &str) -> (OwnedRequest, Option<&str>) {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, Some(b)),
        None => (text, None),
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let (method, path) = match first.split_once(' ') {
        Some((m, p)) => (m.to_string(), p.to_string()),
        None => ("GET".to_string(), first.to_string()),
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim_start().to_string()))
        .collect();
    (
        OwnedRequest {
            method,
            path,
            headers,
        },
        body,
    )
}

/// Properties every step of the filter must have, whatever the request and
/// the configuration: no 500 (and no status outside 2xx-5xx), and identity
/// headers sent by the client never passed upstream unless the filter itself
/// set them for a valid session.
pub fn check_step(filter: &Filter, req: &Request, step: &Step) {
    match &step.action {
        Action::Respond(r) => {
            assert!(
                (200..600).contains(&r.status) && r.status != 500,
                "status {} for {:?}",
                r.status,
                step.outcome
            );
        }
        Action::Continue => {
            assert!(
                identity_removals(&filter.config, &req.headers).is_empty(),
                "identity headers from the client passed unchanged ({:?})",
                step.outcome
            );
        }
        Action::ContinueWith(upstream) | Action::ContinueWithCookies(upstream, _) => {
            let forwarded = upstream.apply(&req.headers);
            let client = &forwarded[..forwarded.len() - upstream.add.len()];
            assert!(
                identity_removals(&filter.config, &str_pairs(client)).is_empty(),
                "identity headers from the client passed upstream ({:?})",
                step.outcome
            );
            if !matches!(
                step.outcome,
                Outcome::Passed
                    | Outcome::BearerPassed
                    | Outcome::Refreshed { .. }
                    | Outcome::RefreshAdopted
            ) {
                assert!(
                    identity_removals(&filter.config, &str_pairs(&upstream.add)).is_empty(),
                    "identity headers upstream without a session ({:?})",
                    step.outcome
                );
            }
        }
        Action::Call(..) => {}
    }
}

/// With the fixed configuration and provider: the client secret never shows in
/// an answer (unless the input itself carried it: answers may quote the
/// request), and calls only go to the provider.
pub fn check_fixed_step(input: &[u8], step: &Step) {
    match &step.action {
        Action::Respond(r) if !contains(input, CLIENT_SECRET.as_bytes()) => {
            let secret = CLIENT_SECRET.as_bytes();
            assert!(
                !contains(&r.body, secret)
                    && !r.headers.iter().any(|(n, v)| {
                        contains(n.as_bytes(), secret) || contains(v.as_bytes(), secret)
                    }),
                "client secret in an answer"
            );
        }
        Action::Call(call, _) => {
            assert_eq!(call.authority, "127.0.0.1:9000", "call to another host");
        }
        _ => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
