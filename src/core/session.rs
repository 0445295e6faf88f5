//! Sessions and sealed cookies.
//!
//! A session is serialised to JSON, sealed with AES-256-GCM under a key derived
//! from `cookie_secret` (a different key for each purpose), and carried in one
//! cookie, or in numbered chunks (`_sesame_0`, `_sesame_1`, ...) when it would not
//! fit in one. The cookie's name is authenticated data: a value moved to another
//! cookie does not open. Anything that does not open is simply "no session".

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::cookies::{clear_cookie, set_cookie, CookieAttributes};
use super::{b64url, b64url_decode, Entropy};

/// Largest cookie value written in one piece; browsers allow ~4096 bytes per
/// cookie including name and attributes.
pub const CHUNK_SIZE: usize = 3800;
/// Most chunks read back; beyond this the session is refused.
pub const MAX_CHUNKS: usize = 8;
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// What a sealed cookie is for. Each purpose has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Login,
    Logout,
}

/// AES-256-GCM sealing with keys derived from the cookie secret.
#[derive(Clone)]
pub struct Sealer {
    session: Aes256Gcm,
    login: Aes256Gcm,
    logout: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<keys redacted>)")
    }
}

fn derive_key(secret: &[u8], label: &str) -> Aes256Gcm {
    let mut h = Sha256::new();
    h.update(b"sesame cookie key v1\0");
    h.update(label.as_bytes());
    h.update([0]);
    h.update(secret);
    let key = h.finalize();
    Aes256Gcm::new_from_slice(&key).expect("SHA-256 output is a valid AES-256 key")
}

impl Sealer {
    pub fn new(secret: &[u8]) -> Self {
        Sealer {
            session: derive_key(secret, "session"),
            login: derive_key(secret, "login"),
            logout: derive_key(secret, "logout"),
        }
    }

    fn cipher(&self, purpose: Purpose) -> &Aes256Gcm {
        match purpose {
            Purpose::Session => &self.session,
            Purpose::Login => &self.login,
            Purpose::Logout => &self.logout,
        }
    }

    /// Seals a value: `base64url(version || nonce || ciphertext+tag)`.
    pub fn seal<T: Serialize>(
        &self,
        purpose: Purpose,
        name: &str,
        value: &T,
        entropy: &mut dyn Entropy,
    ) -> String {
        let plain = serde_json::to_vec(value).expect("session types serialise");
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce);
        let sealed = self
            .cipher(purpose)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a small buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        b64url(&out)
    }

    /// Opens a sealed value; `None` for anything tampered, truncated, foreign or
    /// malformed.
    pub fn open<T: DeserializeOwned>(&self, purpose: Purpose, name: &str, text: &str) -> Option<T> {
        let raw = b64url_decode(text)?;
        if raw.len() < 1 + NONCE_LEN + 16 || raw[0] != VERSION {
            return None;
        }
        let (nonce, sealed) = raw[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher(purpose)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

/// A signed-in person: the identity claims kept, the provider's tokens, and the
/// absolute expiry of the session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "c")]
    pub claims: Map<String, Value>,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(rename = "t")]
    pub created_at: u64,
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// Random identifier of this sign-in, kept across refreshes (the key of
    /// the refresh lock shared by Envoy's workers).
    #[serde(rename = "s", default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    /// The provider's refresh token, when it issued one.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires (from `expires_in`), when known.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
}

impl Session {
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn sub(&self) -> &str {
        self.claim_str("sub").unwrap_or("")
    }

    pub fn email(&self) -> Option<&str> {
        self.claim_str("email")
    }
}

/// The session cookie (single or chunked) of one configuration.
#[derive(Debug, Clone)]
pub struct SessionCookie<'a> {
    pub name: &'a str,
    pub sealer: &'a Sealer,
}

fn chunk_name(base: &str, i: usize) -> String {
    format!("{base}_{i}")
}

impl SessionCookie<'_> {
    /// `Set-Cookie` values carrying the session, and clearing any previous
    /// chunks the browser holds that the new value does not overwrite.
    pub fn write(
        &self,
        session: &Session,
        now: u64,
        attrs: &CookieAttributes,
        present: &[(&str, &str)],
        entropy: &mut dyn Entropy,
    ) -> Vec<String> {
        let sealed = self
            .sealer
            .seal(Purpose::Session, self.name, session, entropy);
        self.write_sealed(
            &sealed,
            session.expires_at.saturating_sub(now),
            attrs,
            present,
        )
    }

    /// `Set-Cookie` values carrying an already sealed session for `max_age`
    /// seconds, and clearing the previous chunks the new value does not overwrite.
    pub fn write_sealed(
        &self,
        sealed: &str,
        max_age: u64,
        attrs: &CookieAttributes,
        present: &[(&str, &str)],
    ) -> Vec<String> {
        let mut out = Vec::new();
        let written: Vec<String> = if sealed.len() <= CHUNK_SIZE {
            out.push(set_cookie(self.name, sealed, max_age, attrs));
            vec![self.name.to_string()]
        } else {
            let mut names = Vec::new();
            for (i, chunk) in sealed.as_bytes().chunks(CHUNK_SIZE).enumerate() {
                let name = chunk_name(self.name, i);
                // base64url is ASCII, so byte chunks are valid UTF-8.
                out.push(set_cookie(
                    &name,
                    std::str::from_utf8(chunk).unwrap_or(""),
                    max_age,
                    attrs,
                ));
                names.push(name);
            }
            names
        };
        for (name, _) in present {
            if self.is_ours(name) && !written.iter().any(|w| w == name) {
                out.push(clear_cookie(name, attrs));
            }
        }
        out
    }

    /// `Set-Cookie` values deleting every session cookie the browser sent.
    pub fn clear(&self, present: &[(&str, &str)], attrs: &CookieAttributes) -> Vec<String> {
        let mut out: Vec<String> = present
            .iter()
            .filter(|(n, _)| self.is_ours(n))
            .map(|(n, _)| clear_cookie(n, attrs))
            .collect();
        if out.is_empty() {
            out.push(clear_cookie(self.name, attrs));
        }
        out.dedup();
        out
    }

    /// Whether a cookie name is the session cookie or one of its chunks.
    pub fn is_ours(&self, name: &str) -> bool {
        name == self.name
            || name
                .strip_prefix(self.name)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|n| {
                    !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
                })
    }

    /// The parts of the sealed text in the request's cookies, in order: the
    /// single cookie, or the chunks `_0`, `_1`, ... `None` when absent or
    /// oversized.
    pub fn sealed_parts<'p>(&self, present: &[(&str, &'p str)]) -> Option<Vec<&'p str>> {
        let find = |name: &str| present.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        if let Some(v) = find(self.name) {
            return Some(vec![v]);
        }
        let mut parts = Vec::new();
        for i in 0..=MAX_CHUNKS {
            match find(&chunk_name(self.name, i)) {
                Some(_) if i == MAX_CHUNKS => return None,
                Some(v) => parts.push(v),
                None => break,
            }
        }
        (!parts.iter().all(|p| p.is_empty())).then_some(parts)
    }

    /// The sealed text from the request's cookies: its parts joined.
    pub fn sealed_text(&self, present: &[(&str, &str)]) -> Option<String> {
        self.sealed_parts(present).map(|parts| parts.concat())
    }

    /// Opens the session from the request's cookies. `None` means "not logged
    /// in": absent, tampered, truncated, foreign or expired.
    pub fn read(&self, present: &[(&str, &str)], now: u64) -> Option<Session> {
        let text = self.sealed_text(present)?;
        let session: Session = self.sealer.open(Purpose::Session, self.name, &text)?;
        (now < session.expires_at).then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cookies;
    use crate::core::testing::CountingEntropy;
    use serde_json::json;

    const ATTRS: CookieAttributes = CookieAttributes {
        path: "/",
        domain: None,
        secure: true,
    };

    fn session(token_len: usize) -> Session {
        Session {
            claims: json!({"sub": "alice", "email": "alice@numerique.gouv.fr"})
                .as_object()
                .unwrap()
                .clone(),
            id_token: Some("x".repeat(token_len)),
            access_token: Some("at".into()),
            created_at: 1000,
            expires_at: 2000,
            ..Default::default()
        }
    }

    /// Turns Set-Cookie values into what a browser sends back.
    fn browser_cookies(set: &[String]) -> Vec<(String, String)> {
        set.iter()
            .filter(|c| !c.contains("Max-Age=0"))
            .map(|c| {
                let pair = c.split(';').next().unwrap();
                let (n, v) = pair.split_once('=').unwrap();
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn small_session_round_trip_in_one_cookie() {
        let sealer = Sealer::new(&[7u8; 32]);
        let jar = SessionCookie {
            name: "_sesame",
            sealer: &sealer,
        };
        let set = jar.write(&session(100), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        assert_eq!(set.len(), 1);
        assert!(
            set[0].starts_with("_sesame=")
                && set[0].contains("HttpOnly")
                && set[0].contains("Max-Age=1000")
        );
        let sent = browser_cookies(&set);
        assert_eq!(jar.read(&as_refs(&sent), 1500), Some(session(100)));
        assert_eq!(
            jar.read(&as_refs(&sent), 2000),
            None,
            "expired session must not open"
        );
    }

    #[test]
    fn large_session_is_chunked_and_reassembled() {
        let sealer = Sealer::new(&[7u8; 32]);
        let jar = SessionCookie {
            name: "_sesame",
            sealer: &sealer,
        };
        let set = jar.write(&session(9000), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        assert!(set.len() >= 3, "{}", set.len());
        assert!(set
            .iter()
            .all(|c| c.split(';').next().unwrap().len() < 4000));
        let sent = browser_cookies(&set);
        assert_eq!(sent[0].0, "_sesame_0");
        assert_eq!(jar.read(&as_refs(&sent), 1500), Some(session(9000)));

        // Missing chunk, reordered chunks, truncated chunk: all "no session".
        let mut missing = sent.clone();
        missing.remove(1);
        assert_eq!(jar.read(&as_refs(&missing), 1500), None);
        let mut reordered = sent.clone();
        let (a, b) = (reordered[0].1.clone(), reordered[1].1.clone());
        reordered[0].1 = b;
        reordered[1].1 = a;
        assert_eq!(jar.read(&as_refs(&reordered), 1500), None);
        let mut truncated = sent.clone();
        let last = truncated.len() - 1;
        truncated.remove(last);
        assert_eq!(jar.read(&as_refs(&truncated), 1500), None);
    }

    #[test]
    fn rewriting_a_smaller_session_clears_old_chunks() {
        let sealer = Sealer::new(&[7u8; 32]);
        let jar = SessionCookie {
            name: "_sesame",
            sealer: &sealer,
        };
        let present = [("_sesame_0", "a"), ("_sesame_1", "b"), ("other", "c")];
        let set = jar.write(
            &session(10),
            1000,
            &ATTRS,
            &present,
            &mut CountingEntropy(0),
        );
        assert!(set
            .iter()
            .any(|c| c.starts_with("_sesame_0=;") && c.contains("Max-Age=0")));
        assert!(set.iter().any(|c| c.starts_with("_sesame_1=;")));
        assert!(!set.iter().any(|c| c.starts_with("other=")));
    }

    #[test]
    fn tampered_foreign_and_garbage_cookies_do_not_open() {
        let sealer = Sealer::new(&[7u8; 32]);
        let jar = SessionCookie {
            name: "_sesame",
            sealer: &sealer,
        };
        let set = jar.write(&session(10), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        let value = browser_cookies(&set)[0].1.clone();
        // Flip one character in the middle.
        let mut bytes = value.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(jar.read(&[("_sesame", &tampered)], 1500), None);
        // Sealed with another secret.
        let other = Sealer::new(&[8u8; 32]);
        let foreign = SessionCookie {
            name: "_sesame",
            sealer: &other,
        };
        assert_eq!(foreign.read(&[("_sesame", &value)], 1500), None);
        // Moved to another cookie name, or opened for another purpose.
        let renamed = SessionCookie {
            name: "_other",
            sealer: &sealer,
        };
        assert_eq!(renamed.read(&[("_other", &value)], 1500), None);
        assert!(sealer
            .open::<Session>(Purpose::Login, "_sesame", &value)
            .is_none());
        for junk in ["", "x", "%%%%", "AAAA", &"A".repeat(5000)] {
            assert_eq!(jar.read(&[("_sesame", junk)], 1500), None, "{junk}");
        }
    }

    #[test]
    fn too_many_chunks_are_refused() {
        let sealer = Sealer::new(&[7u8; 32]);
        let jar = SessionCookie {
            name: "_sesame",
            sealer: &sealer,
        };
        let many: Vec<(String, String)> = (0..20)
            .map(|i| (format!("_sesame_{i}"), "QUFB".into()))
            .collect();
        assert_eq!(jar.sealed_text(&as_refs(&many)), None);
        assert!(jar.is_ours("_sesame_3"));
        assert!(!jar.is_ours("_sesame_csrf_abc"));
        assert!(!jar.is_ours("_sesamex"));
        let parsed = cookies::parse(std::iter::once("_sesame_0=a; _sesame_1=b"));
        assert_eq!(jar.sealed_text(&parsed).as_deref(), Some("ab"));
    }
}

/// Sessions opened lately, so that a request with a session costs a lookup
/// rather than base64, AES-GCM and JSON. Keyed by a fingerprint of the whole
/// sealed text (every chunk, in order) under a secret per-VM key (SipHash, a
/// PRF): only the exact text that was opened and verified finds its entry.
/// Bounded; expiry checked on every use; sessions due for a refresh are not
/// served from here.
#[derive(Debug, Default)]
pub struct SessionCache {
    keys: std::collections::hash_map::RandomState,
    entries: std::collections::HashMap<u64, CachedSession>,
}

/// What a request with a known session needs.
#[derive(Debug)]
pub struct CachedSession {
    pub expires_at: u64,
    /// From then on, the session is due for a refresh: not served from here.
    pub refresh_at: Option<u64>,
    /// The claims the access rules look at.
    pub claims: Map<String, Value>,
    /// The identity headers, computed once.
    pub headers: Vec<(String, String)>,
}

impl SessionCache {
    /// The fingerprint of the session the request carries (every part of its
    /// sealed text, in order), without joining it.
    pub fn key(&self, jar: &SessionCookie, present: &[(&str, &str)]) -> Option<u64> {
        use std::hash::{BuildHasher, Hasher};
        let parts = jar.sealed_parts(present)?;
        let mut h = self.keys.build_hasher();
        let mut len = 0;
        for part in parts {
            h.write(part.as_bytes());
            len += part.len();
        }
        h.write_usize(len);
        Some(h.finish())
    }

    /// A session seen before, still valid and not due for a refresh.
    pub fn get(&self, key: u64, now: u64) -> Option<&CachedSession> {
        self.entries
            .get(&key)
            .filter(|c| now < c.expires_at && c.refresh_at.is_none_or(|r| now < r))
    }

    pub fn insert(&mut self, key: u64, entry: CachedSession, capacity: usize, now: u64) {
        if capacity == 0 {
            return;
        }
        if self.entries.len() >= capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, c| now < c.expires_at);
            if self.entries.len() >= capacity {
                // Full of live sessions: drop one (hash order: an arbitrary one).
                if let Some(k) = self.entries.keys().next().copied() {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
