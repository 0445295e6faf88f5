//! The identity provider: discovery document, signing keys, and the state of
//! our copy of them (fresh, being refreshed, unreachable).

use serde_json::{Map, Value};
use url::Url;

use crate::core::config::{Config, ProviderConfig};
use crate::core::http::{ProviderCall, ProviderResponse};
use crate::core::oidc::keys::KeySet;
use crate::core::text_field;

/// What Sésame needs from `/.well-known/openid-configuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    /// `None` for a plain OAuth 2.0 provider (no ID token to verify).
    pub jwks_uri: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    /// RFC 7662 token introspection (RFC 8414 metadata).
    pub introspection_endpoint: Option<Url>,
    /// RFC 7009 token revocation (RFC 8414 metadata).
    pub revocation_endpoint: Option<Url>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    Status(u16),
    NotJson(String),
    MissingField(&'static str),
    BadUrl(&'static str),
    IssuerMismatch { expected: String, found: String },
}

impl std::fmt::Display for DiscoveryError {
    #[cfg_attr(sesame_size, optimize(size))]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Status(0) => write!(f, "provider unreachable"),
            DiscoveryError::Status(s) => write!(f, "provider answered HTTP {s}"),
            DiscoveryError::NotJson(e) => write!(f, "not a JSON document: {e}"),
            DiscoveryError::MissingField(n) => write!(f, "`{n}` is missing"),
            DiscoveryError::BadUrl(n) => write!(f, "`{n}` is not an absolute http(s) URL"),
            DiscoveryError::IssuerMismatch { expected, found } => write!(
                f,
                "issuer {found:?} differs from the configured issuer {expected:?}"
            ),
        }
    }
}

/// The document's endpoint `name`: `None` when absent, an error when it is
/// not an absolute http(s) URL.
#[cfg_attr(sesame_size, optimize(size))]
fn endpoint(raw: &Map<String, Value>, name: &'static str) -> Result<Option<Url>, DiscoveryError> {
    let Some(text) = text_field(raw, name).map_err(|_| DiscoveryError::BadUrl(name))? else {
        return Ok(None);
    };
    match crate::core::parse_url(text) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => Ok(Some(u)),
        _ => Err(DiscoveryError::BadUrl(name)),
    }
}

/// The required endpoint `name`.
#[cfg_attr(sesame_size, optimize(size))]
fn required(raw: &Map<String, Value>, name: &'static str) -> Result<Url, DiscoveryError> {
    endpoint(raw, name)?.ok_or(DiscoveryError::MissingField(name))
}

impl ProviderMetadata {
    /// Parses a discovery document and checks that it is about the configured
    /// issuer (OpenID Connect Discovery §4.3).
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn parse(expected_issuer: &str, body: &[u8]) -> Result<Self, DiscoveryError> {
        let raw: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|e| DiscoveryError::NotJson(crate::core::json_error(&e)))?;
        let issuer = text_field(&raw, "issuer")
            .ok()
            .flatten()
            .ok_or(DiscoveryError::MissingField("issuer"))?;
        if issuer != expected_issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: expected_issuer.to_string(),
                found: issuer.to_string(),
            });
        }
        Ok(ProviderMetadata {
            issuer: issuer.to_string(),
            authorization_endpoint: required(&raw, "authorization_endpoint")?,
            token_endpoint: required(&raw, "token_endpoint")?,
            userinfo_endpoint: endpoint(&raw, "userinfo_endpoint")?,
            jwks_uri: Some(required(&raw, "jwks_uri")?),
            end_session_endpoint: endpoint(&raw, "end_session_endpoint")?,
            introspection_endpoint: endpoint(&raw, "introspection_endpoint")?,
            revocation_endpoint: endpoint(&raw, "revocation_endpoint")?,
        })
    }
}

/// Our copy of the provider's metadata and keys, and when to fetch them again.
#[derive(Debug, Clone, Default)]
pub struct ProviderState {
    pub metadata: Option<ProviderMetadata>,
    pub keys: Option<KeySet>,
    /// False after a failed fetch or call, until a fetch succeeds again.
    pub reachable: bool,
    /// Consecutive failures, for the back-off.
    pub failures: u32,
    /// When the next discovery fetch is due (unix seconds).
    pub next_fetch_at: u64,
    /// When the keys were last fetched (for the unknown-`kid` rate limit).
    pub keys_fetched_at: u64,
    /// A fetch is under way.
    pub fetching: bool,
    /// Last error, for logs.
    pub last_error: Option<String>,
    /// The documents as fetched, to share them with the other workers.
    pub discovery_raw: Vec<u8>,
    pub jwks_raw: Vec<u8>,
    /// Something other workers should see changed (a fetch ended, keys were
    /// refetched): the adapter publishes the state and clears this.
    pub changed: bool,
    /// Seed of the back-off jitter: different in every VM, so that workers
    /// and Envoys do not all retry at the same second.
    pub jitter: u64,
}

/// What one worker shares with the others: the documents as fetched, and
/// where the refresh stands (a JSON object).
#[derive(Debug)]
struct Snapshot {
    discovery: String,
    jwks: String,
    reachable: bool,
    failures: u32,
    next_fetch_at: u64,
    keys_fetched_at: u64,
    last_error: Option<String>,
}

impl Snapshot {
    #[cfg_attr(sesame_size, optimize(size))]
    fn to_bytes(&self) -> Option<Vec<u8>> {
        let value = serde_json::json!({
            "discovery": self.discovery,
            "jwks": self.jwks,
            "reachable": self.reachable,
            "failures": self.failures,
            "next_fetch_at": self.next_fetch_at,
            "keys_fetched_at": self.keys_fetched_at,
            "last_error": self.last_error,
        });
        serde_json::to_vec(&value).ok()
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn parse(bytes: &[u8]) -> Result<Snapshot, String> {
        let raw: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| crate::core::json_error(&e))?;
        let text = |name: &str| match text_field(&raw, name) {
            Ok(Some(t)) => Ok(t.to_string()),
            _ => Err(format!("`{name}` is not a string")),
        };
        let number = |name: &str| {
            raw.get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("`{name}` is not a number"))
        };
        Ok(Snapshot {
            discovery: text("discovery")?,
            jwks: text("jwks")?,
            reachable: raw
                .get("reachable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            failures: u32::try_from(number("failures")?).unwrap_or(u32::MAX),
            next_fetch_at: number("next_fetch_at")?,
            keys_fetched_at: number("keys_fetched_at")?,
            last_error: text_field(&raw, "last_error")
                .ok()
                .flatten()
                .map(str::to_string),
        })
    }
}

impl ProviderState {
    /// The state of a provider configured rather than discovered (plain
    /// OAuth 2.0): ready from the start, never fetched. `None` for an
    /// OpenID provider.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn configured(provider: &ProviderConfig) -> Option<ProviderState> {
        let e = provider.oauth2.as_ref()?;
        Some(ProviderState {
            metadata: Some(ProviderMetadata {
                issuer: provider.issuer.clone(),
                authorization_endpoint: e.authorization_endpoint.clone(),
                token_endpoint: e.token_endpoint.clone(),
                userinfo_endpoint: Some(e.userinfo_endpoint.clone()),
                jwks_uri: None,
                end_session_endpoint: None,
                introspection_endpoint: None,
                revocation_endpoint: None,
            }),
            keys: Some(KeySet::default()),
            reachable: true,
            next_fetch_at: u64::MAX,
            ..Default::default()
        })
    }

    /// Logins can start: metadata and keys known, and the provider answered last
    /// time we asked.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn ready(&self) -> bool {
        self.reachable && self.metadata.is_some() && self.keys.is_some()
    }

    /// Whether a discovery fetch should start now.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn fetch_due(&self, now: u64) -> bool {
        !self.fetching && now >= self.next_fetch_at
    }

    /// Records success of the full refresh (discovery and keys).
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn refreshed(
        &mut self,
        metadata: ProviderMetadata,
        keys: KeySet,
        now: u64,
        refresh_interval: u64,
    ) {
        self.metadata = Some(metadata);
        self.keys = Some(keys);
        self.keys_fetched_at = now;
        self.reachable = true;
        self.failures = 0;
        self.fetching = false;
        self.last_error = None;
        self.next_fetch_at = now + refresh_interval;
    }

    /// Records a failure (of a fetch, or of a call made for a login): keep the
    /// last good copy, mark the provider unreachable, retry with exponential
    /// back-off (1, 2, 4... seconds up to `retry_max`) and jitter: the wait is
    /// between half the back-off and the whole of it.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn failed(&mut self, error: String, now: u64, retry_max: u64) {
        self.reachable = false;
        self.fetching = false;
        self.changed = true;
        self.failures = self.failures.saturating_add(1);
        let backoff = (1u64 << self.failures.min(16).saturating_sub(1)).min(retry_max.max(1));
        // xorshift64: cheap, and only has to differ between VMs.
        let mut x = self.jitter | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter = x;
        let half = backoff.div_ceil(2);
        self.next_fetch_at = now + half + x % (backoff - half + 1);
        self.last_error = Some(error);
    }

    /// The state to share with the other workers, when there is a copy to share.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        if self.discovery_raw.is_empty() || self.jwks_raw.is_empty() {
            return None;
        }
        let snapshot = Snapshot {
            discovery: String::from_utf8_lossy(&self.discovery_raw).into_owned(),
            jwks: String::from_utf8_lossy(&self.jwks_raw).into_owned(),
            reachable: self.reachable,
            failures: self.failures,
            next_fetch_at: self.next_fetch_at,
            keys_fetched_at: self.keys_fetched_at,
            last_error: self.last_error.clone(),
        };
        snapshot.to_bytes()
    }

    /// Takes the state another worker shared. The documents are checked as if
    /// fetched here; on any problem our own copy stays.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn adopt(&mut self, provider: &ProviderConfig, bytes: &[u8]) -> Result<(), String> {
        let s = Snapshot::parse(bytes)?;
        // Check both documents before taking either.
        let metadata = (s.discovery.as_bytes() != self.discovery_raw.as_slice())
            .then(|| ProviderMetadata::parse(&provider.issuer, s.discovery.as_bytes()))
            .transpose()
            .map_err(|e| e.to_string())?;
        let keys = (s.jwks.as_bytes() != self.jwks_raw.as_slice())
            .then(|| KeySet::parse(s.jwks.as_bytes()))
            .transpose()?;
        if let Some(metadata) = metadata {
            self.metadata = Some(metadata);
            self.discovery_raw = s.discovery.into_bytes();
        }
        if let Some(keys) = keys {
            self.keys = Some(keys);
            self.jwks_raw = s.jwks.into_bytes();
        }
        self.reachable = s.reachable;
        self.failures = s.failures;
        self.next_fetch_at = s.next_fetch_at;
        self.keys_fetched_at = s.keys_fetched_at;
        self.last_error = s.last_error;
        Ok(())
    }

    /// Keys fetched again after an unknown `kid`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn keys_refetched(&mut self, keys: KeySet, raw: &[u8], now: u64) {
        self.keys = Some(keys);
        self.jwks_raw = raw.to_vec();
        self.keys_fetched_at = now;
        self.changed = true;
    }

    /// Whether an unknown `kid` may trigger a key refetch now.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn may_refetch_keys(&self, now: u64, min_interval: u64) -> bool {
        now >= self.keys_fetched_at.saturating_add(min_interval)
    }
}

/// A fetch the root context makes to keep our copy of the provider fresh.
#[derive(Debug, Clone)]
pub enum Fetch {
    Discovery,
    /// The keys, after this discovery document (parsed, and as fetched).
    Keys(Box<ProviderMetadata>, Vec<u8>),
}

/// How the refresh went, for logs and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// Another fetch must follow (the keys after the discovery document).
    Next,
    /// Discovery and keys are fresh.
    Refreshed { keys: usize, skipped: usize },
    /// The fetch failed; the message says why.
    Failed(String),
}

impl ProviderState {
    /// Starts a refresh when one is due: the discovery document first.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn start_refresh(
        &mut self,
        provider: &ProviderConfig,
        now: u64,
    ) -> Option<(ProviderCall, Fetch)> {
        let url = provider.discovery_url.as_ref()?;
        if !self.fetch_due(now) {
            return None;
        }
        self.fetching = true;
        Some((ProviderCall::get(url, "application/json"), Fetch::Discovery))
    }

    /// Takes the answer to a refresh fetch; returns the next call to make, if any.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn on_fetch(
        &mut self,
        config: &Config,
        provider: &ProviderConfig,
        fetch: Fetch,
        resp: &ProviderResponse,
        now: u64,
    ) -> (FetchResult, Option<(ProviderCall, Fetch)>) {
        let fail = |state: &mut ProviderState, what: &str, why: String| {
            let message = format!("{what}: {why}");
            state.failed(message.clone(), now, config.provider_retry_max);
            (FetchResult::Failed(message), None)
        };
        if resp.status != 200 {
            let what = match fetch {
                Fetch::Discovery => "discovery",
                Fetch::Keys(..) => "jwks",
            };
            return fail(self, what, DiscoveryError::Status(resp.status).to_string());
        }
        match fetch {
            Fetch::Discovery => match ProviderMetadata::parse(&provider.issuer, &resp.body) {
                Ok(metadata) => {
                    let Some(jwks_uri) = metadata.jwks_uri.as_ref() else {
                        return fail(self, "discovery", "`jwks_uri` is missing".into());
                    };
                    let call =
                        ProviderCall::get(jwks_uri, "application/json, application/jwk-set+json");
                    (
                        FetchResult::Next,
                        Some((call, Fetch::Keys(Box::new(metadata), resp.body.clone()))),
                    )
                }
                Err(e) => fail(self, "discovery", e.to_string()),
            },
            Fetch::Keys(metadata, discovery) => match KeySet::parse(&resp.body) {
                Ok(keys) => {
                    let result = FetchResult::Refreshed {
                        keys: keys.keys.len(),
                        skipped: keys.skipped,
                    };
                    self.refreshed(*metadata, keys, now, config.provider_refresh_interval);
                    self.discovery_raw = discovery;
                    self.jwks_raw = resp.body.clone();
                    self.changed = true;
                    (result, None)
                }
                Err(e) => fail(self, "jwks", e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::oidc::keys::*;
    use serde_json::json;

    const ISSUER: &str = "https://auth.example.fr/api/v2";

    fn discovery() -> serde_json::Value {
        json!({
            "issuer": ISSUER,
            "authorization_endpoint": "https://auth.example.fr/api/v2/authorize",
            "token_endpoint": "https://auth.example.fr/api/v2/token",
            "userinfo_endpoint": "https://auth.example.fr/api/v2/userinfo",
            "jwks_uri": "https://auth.example.fr/api/v2/jwks",
            "end_session_endpoint": "https://auth.example.fr/api/v2/session/end",
        })
    }

    #[test]
    fn discovery_parses_and_checks_issuer() {
        let m = ProviderMetadata::parse(ISSUER, discovery().to_string().as_bytes()).unwrap();
        assert_eq!(m.token_endpoint.path(), "/api/v2/token");
        let err = ProviderMetadata::parse("https://other", discovery().to_string().as_bytes())
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::IssuerMismatch { .. }));
        let mut d = discovery();
        d.as_object_mut().unwrap().remove("jwks_uri");
        assert_eq!(
            ProviderMetadata::parse(ISSUER, d.to_string().as_bytes()),
            Err(DiscoveryError::MissingField("jwks_uri"))
        );
        d["jwks_uri"] = json!("/relative");
        assert_eq!(
            ProviderMetadata::parse(ISSUER, d.to_string().as_bytes()),
            Err(DiscoveryError::BadUrl("jwks_uri"))
        );
        assert!(ProviderMetadata::parse(ISSUER, b"<html>").is_err());
    }

    #[test]
    fn jwks_keeps_signature_keys_and_skips_the_rest() {
        let jwks = crate::core::oidc::token::tests::test_jwks();
        let set = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
        let kinds: Vec<&str> = set
            .keys
            .iter()
            .map(|k| match k.material {
                KeyMaterial::Rsa { .. } => "rsa",
                KeyMaterial::P256(_) => "p256",
                KeyMaterial::P384(_) => "p384",
                KeyMaterial::Ed25519(_) => "ed25519",
            })
            .collect();
        assert!(
            kinds.contains(&"rsa") && kinds.contains(&"p256") && kinds.contains(&"ed25519"),
            "{kinds:?}"
        );
        // The `use: enc` key, the HS256 key, the unknown kty and the broken key are skipped.
        assert_eq!(set.skipped, 4);
        assert_eq!(set.candidates("ES256", Some("ec-1")).count(), 1);
        assert_eq!(set.candidates("ES256", Some("rsa-1")).count(), 0);
        assert_eq!(set.candidates("RS256", None).count(), 1);
        assert_eq!(set.candidates("HS256", None).count(), 0);
    }

    #[test]
    fn jwks_without_usable_key_is_an_error() {
        assert!(KeySet::parse(br#"{"keys":[{"kty":"oct","k":"abc"}]}"#).is_err());
        assert!(KeySet::parse(b"{}").is_err());
    }

    #[test]
    fn failures_back_off_and_keep_the_last_copy() {
        let mut s = ProviderState::default();
        assert!(s.fetch_due(0) && !s.ready());
        s.failed("down".into(), 100, 30);
        assert_eq!(s.next_fetch_at, 101);
        s.failed("down".into(), 101, 30);
        assert!((102..=103).contains(&s.next_fetch_at));
        for _ in 0..10 {
            s.failed("down".into(), 200, 30);
        }
        assert!(
            (215..=230).contains(&s.next_fetch_at),
            "{}",
            s.next_fetch_at
        );
        let m = ProviderMetadata::parse(ISSUER, discovery().to_string().as_bytes()).unwrap();
        let keys = KeySet::parse(
            crate::core::oidc::token::tests::test_jwks()
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        s.refreshed(m, keys, 300, 3600);
        assert!(s.ready());
        s.failed("down".into(), 400, 30);
        assert!(!s.ready() && s.metadata.is_some() && s.keys.is_some());
        assert!(!s.may_refetch_keys(310, 30) && s.may_refetch_keys(330, 30));
    }

    #[test]
    fn back_off_is_jittered_differently_in_each_vm() {
        let waits: std::collections::BTreeSet<u64> = (1..=20u64)
            .map(|seed| {
                let mut s = ProviderState {
                    jitter: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    ..Default::default()
                };
                for _ in 0..6 {
                    s.failed("down".into(), 1000, 30);
                }
                s.next_fetch_at - 1000
            })
            .collect();
        assert!(waits.iter().all(|w| (15..=30).contains(w)), "{waits:?}");
        assert!(waits.len() >= 5, "not spread: {waits:?}");
    }

    fn fetched(config: &Config) -> ProviderState {
        let mut s = ProviderState::default();
        let p = &config.providers[0];
        let (_, fetch) = s.start_refresh(p, 100).unwrap();
        let ok = |body: String| ProviderResponse {
            status: 200,
            headers: vec![],
            body: body.into_bytes(),
        };
        let (_, next) = s.on_fetch(config, p, fetch, &ok(discovery().to_string()), 100);
        let (result, _) = s.on_fetch(
            config,
            p,
            next.unwrap().1,
            &ok(crate::core::oidc::token::tests::test_jwks().to_string()),
            100,
        );
        assert!(matches!(result, FetchResult::Refreshed { .. }));
        s
    }

    #[test]
    fn one_worker_fetches_the_others_adopt_its_copy() {
        let config = crate::core::config::tests::config_with(serde_json::json!({"issuer": ISSUER}));
        let fetcher = fetched(&config);
        assert!(fetcher.changed);
        let snapshot = fetcher.snapshot().unwrap();
        let mut other = ProviderState::default();
        other.adopt(&config.providers[0], &snapshot).unwrap();
        assert!(other.ready());
        assert_eq!(other.next_fetch_at, fetcher.next_fetch_at);
        assert_eq!(
            other.metadata.as_ref().unwrap().token_endpoint,
            fetcher.metadata.as_ref().unwrap().token_endpoint
        );
        assert_eq!(
            other.keys.as_ref().unwrap().keys.len(),
            fetcher.keys.as_ref().unwrap().keys.len()
        );
        // A failure elsewhere is seen here too, with the last good copy kept.
        let mut down = fetcher.clone();
        down.failed("down".into(), 200, 30);
        other
            .adopt(&config.providers[0], &down.snapshot().unwrap())
            .unwrap();
        assert!(!other.ready() && other.keys.is_some());
        // A document that does not check out is refused; our copy stays.
        let bad = String::from_utf8(snapshot.clone())
            .unwrap()
            .replace(ISSUER, "https://evil.example");
        assert!(other.adopt(&config.providers[0], bad.as_bytes()).is_err());
        assert_eq!(other.metadata.as_ref().unwrap().issuer, ISSUER);
        // New documents with keys that do not parse: neither is taken.
        let mut half: serde_json::Value = serde_json::from_slice(&snapshot).unwrap();
        let moved = discovery().to_string().replace("/token", "/token2");
        half["discovery"] = serde_json::json!(moved);
        half["jwks"] = serde_json::json!("{}");
        assert!(other
            .adopt(&config.providers[0], half.to_string().as_bytes())
            .is_err());
        assert_eq!(
            other.metadata.as_ref().unwrap().token_endpoint.path(),
            "/api/v2/token"
        );
        assert!(ProviderState::default().snapshot().is_none());
    }
}
