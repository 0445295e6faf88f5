//! Sessions and sealed cookies.
//!
//! A session is serialised to JSON, sealed with AES-256-GCM under a key derived
//! from `cookie_secret` (a different key for each purpose), and carried in one
//! cookie, or in numbered chunks (`_sesame_0`, `_sesame_1`, ...) when it would not
//! fit in one. The cookie's name is authenticated data: a value moved to another
//! cookie does not open. Anything that does not open is simply "no session".
//!
//! Each provider has its own keys (bound to its issuer and client). The first
//! byte of a sealed value names the provider whose keys sealed it (`1` for the
//! first): a value changed to name another provider does not open with that
//! provider's keys, so what a value opens to always comes from the provider
//! it names.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::session::cookies::{clear_cookie, set_cookie, CookieAttributes};
use crate::core::{b64url, b64url_decode, Entropy, Sealed};

/// Largest cookie value written in one piece; browsers allow ~4096 bytes per
/// cookie including name and attributes.
pub const CHUNK_SIZE: usize = 3800;
/// Most chunks written and read back: a session that would need more is
/// never written (see [`SessionCookie::fits`]).
pub const MAX_CHUNKS: usize = 8;
/// The first byte of a value sealed with the first provider's keys.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// What a sealed cookie is for. Each purpose has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Login,
    Logout,
    /// Who a refused sign-in's page names (see `Filter::refusal_page`).
    Refusal,
    /// A personal token (see `Filter::personal_token_endpoint`).
    Token,
}

/// AES-256-GCM sealing with keys derived from the cookie secret: one set of
/// keys per provider.
#[derive(Clone)]
pub struct Sealer {
    keys: Vec<Keys>,
}

/// One provider's keys, one per purpose.
#[derive(Clone)]
struct Keys {
    session: Aes256Gcm,
    login: Aes256Gcm,
    logout: Aes256Gcm,
    refusal: Aes256Gcm,
    token: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<keys redacted>)")
    }
}

/// A key for one purpose, bound to the provider and the client: a
/// deployment that shares the cookie secret but signs in at another issuer
/// (a staging set-up on an integration environment) or as another client
/// seals with other keys, so its cookies do not open here.
fn derive_key(secret: &[u8], issuer: &str, client_id: &str, label: &str) -> Aes256Gcm {
    let mut h = Sha256::new();
    h.update(b"sesame cookie key v2\0");
    for part in [label.as_bytes(), issuer.as_bytes(), client_id.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(secret);
    let key = h.finalize();
    Aes256Gcm::new_from_slice(&key).expect("SHA-256 output is a valid AES-256 key")
}

impl Sealer {
    /// Keys from the cookie secret, for the provider `issuer` and the client
    /// `client_id`.
    pub fn new(secret: &[u8], issuer: &str, client_id: &str) -> Self {
        Sealer::for_providers(secret, &[(issuer, client_id)])
    }

    /// Keys from the cookie secret for each provider, named by its issuer
    /// and our client id there (at most `MAX_PROVIDERS`).
    pub fn for_providers(secret: &[u8], providers: &[(&str, &str)]) -> Self {
        let keys = providers
            .iter()
            .map(|(issuer, client_id)| Keys {
                session: derive_key(secret, issuer, client_id, "session"),
                login: derive_key(secret, issuer, client_id, "login"),
                logout: derive_key(secret, issuer, client_id, "logout"),
                refusal: derive_key(secret, issuer, client_id, "refusal"),
                token: derive_key(secret, issuer, client_id, "token"),
            })
            .collect();
        Sealer { keys }
    }

    fn cipher(&self, provider: usize, purpose: Purpose) -> Option<&Aes256Gcm> {
        let keys = self.keys.get(provider)?;
        Some(match purpose {
            Purpose::Session => &keys.session,
            Purpose::Login => &keys.login,
            Purpose::Logout => &keys.logout,
            Purpose::Refusal => &keys.refusal,
            Purpose::Token => &keys.token,
        })
    }

    /// Seals a value with the first provider's keys.
    pub fn seal<T: Serialize>(
        &self,
        purpose: Purpose,
        name: &str,
        value: &T,
        entropy: &mut dyn Entropy,
    ) -> String {
        self.seal_for(0, purpose, name, value, entropy)
    }

    /// Seals a value with provider `provider`'s keys:
    /// `base64url(1 + provider || nonce || ciphertext+tag)`.
    pub fn seal_for<T: Serialize>(
        &self,
        provider: usize,
        purpose: Purpose,
        name: &str,
        value: &T,
        entropy: &mut dyn Entropy,
    ) -> String {
        let plain = serde_json::to_vec(value).expect("session types serialise");
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce);
        let cipher = self
            .cipher(provider, purpose)
            .expect("sealing for a configured provider");
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a small buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION + provider as u8);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        b64url(&out)
    }

    /// Opens a sealed value; `None` for anything tampered, truncated, foreign or
    /// malformed.
    pub fn open<T: DeserializeOwned>(&self, purpose: Purpose, name: &str, text: &str) -> Option<T> {
        self.open_from(purpose, name, text).map(|(_, value)| value)
    }

    /// Opens a sealed value, with the provider whose keys sealed it.
    pub fn open_from<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        name: &str,
        text: &str,
    ) -> Option<(usize, T)> {
        let raw = b64url_decode(text)?;
        if raw.len() < 1 + NONCE_LEN + 16 || raw[0] < VERSION {
            return None;
        }
        let provider = usize::from(raw[0] - VERSION);
        let (nonce, sealed) = raw[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher(provider, purpose)?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok().map(|v| (provider, v))
    }
}

/// A signed-in person: the identity claims kept, the provider's tokens, and the
/// absolute expiry of the session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    /// The provider that signed the person in (its index): whose keys
    /// sealed the session, never a field of the sealed text.
    #[serde(skip)]
    pub provider: usize,
}

/// Reads what `Serialize` writes, as a derived `Deserialize` did (see
/// [`Sealed`]): `c`, `t` and `e` required, the others optional.
impl<'de> Deserialize<'de> for Session {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Sealed::deserialize(deserializer, |o| {
            Some(Session {
                claims: match o.0.remove("c")? {
                    Value::Object(claims) => claims,
                    _ => return None,
                },
                id_token: o.opt_text("i")?,
                access_token: o.opt_text("a")?,
                created_at: o.number("t")?,
                expires_at: o.number("e")?,
                sid: match o.0.remove("s") {
                    None => String::new(),
                    Some(Value::String(sid)) => sid,
                    Some(_) => return None,
                },
                refresh_token: o.opt_text("r")?,
                access_expires_at: o.opt_number("x")?,
                provider: 0,
            })
        })
    }
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

    /// How a page names the person: the email, or else `sub`.
    pub fn who(&self) -> &str {
        self.email().unwrap_or_else(|| self.sub())
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

/// Whether `name` is the session cookie `base` or one of its chunks.
pub(crate) fn is_session_cookie(base: &str, name: &str) -> bool {
    name.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || chunk_index(rest).is_some())
}

/// The chunk number of what follows the session cookie's name (`_0`,
/// `_12`...).
pub(crate) fn chunk_index(rest: &str) -> Option<usize> {
    let digits = rest.strip_prefix('_')?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        digits
            .bytes()
            .fold(0, |n, b| n * 10 + usize::from(b - b'0')),
    )
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
        let sealed = self.sealer.seal_for(
            session.provider,
            Purpose::Session,
            self.name,
            session,
            entropy,
        );
        self.write_sealed(
            &sealed,
            session.expires_at.saturating_sub(now),
            attrs,
            present,
        )
    }

    /// Whether a sealed session of `len` characters can be written so that
    /// it is read back: at most [`MAX_CHUNKS`] chunks.
    pub fn fits(len: usize) -> bool {
        len <= MAX_CHUNKS * CHUNK_SIZE
    }

    /// `Set-Cookie` values carrying an already sealed session for `max_age`
    /// seconds, and clearing the previous chunks the new value does not overwrite.
    /// A chunked session's first chunk starts with the number of chunks and
    /// a `.` (not a base64url character), so that chunks left over from a
    /// longer session are never read with it.
    /// The caller checks [`SessionCookie::fits`] first.
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
            let count = sealed.len().div_ceil(CHUNK_SIZE);
            for (i, chunk) in sealed.as_bytes().chunks(CHUNK_SIZE).enumerate() {
                let name = chunk_name(self.name, i);
                // base64url is ASCII, so byte chunks are valid UTF-8.
                let chunk = std::str::from_utf8(chunk).unwrap_or("");
                let value = if i == 0 {
                    format!("{count}.{chunk}")
                } else {
                    chunk.to_string()
                };
                out.push(set_cookie(&name, &value, max_age, attrs));
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
        is_session_cookie(self.name, name)
    }

    /// The parts of the sealed text in the request's cookies, in order: the
    /// single cookie, or the chunks `_0`, `_1`, ... as many as the first
    /// chunk says. `None` when absent, incomplete, or ambiguous: a cookie
    /// name sent twice (a cookie planted for a parent domain or another
    /// path beside ours), or a single cookie and chunks at once.
    pub fn sealed_parts<'p>(&self, present: &[(&str, &'p str)]) -> Option<Vec<&'p str>> {
        let mut single: Option<&'p str> = None;
        let mut chunks: [Option<&'p str>; MAX_CHUNKS] = [None; MAX_CHUNKS];
        let mut chunked = false;
        for (name, value) in present {
            let Some(rest) = name.strip_prefix(self.name) else {
                continue;
            };
            let slot = if rest.is_empty() {
                &mut single
            } else if let Some(i) = chunk_index(rest) {
                chunked = true;
                match chunks.get_mut(i) {
                    Some(slot) => slot,
                    None => continue,
                }
            } else {
                continue;
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        // An emptied cookie the browser still sends counts as absent.
        match (single.filter(|v| !v.is_empty()), chunked) {
            (Some(v), false) => Some(vec![v]),
            (None, true) => {
                let (count, first) = chunks[0]?.split_once('.')?;
                // One digit, 2 to MAX_CHUNKS.
                let count = match count.as_bytes() {
                    [d @ b'2'..=b'9'] => usize::from(d - b'0'),
                    _ => return None,
                };
                if count > MAX_CHUNKS {
                    return None;
                }
                let mut parts = Vec::with_capacity(count);
                parts.push(first);
                for chunk in &chunks[1..count] {
                    parts.push((*chunk)?);
                }
                Some(parts)
            }
            _ => None,
        }
    }

    /// The sealed text from the request's cookies: its parts joined.
    pub fn sealed_text(&self, present: &[(&str, &str)]) -> Option<String> {
        self.sealed_parts(present).map(|parts| parts.concat())
    }

    /// Opens the session from the request's cookies. `None` means "not logged
    /// in": absent, tampered, truncated, foreign or expired.
    pub fn read(&self, present: &[(&str, &str)], now: u64) -> Option<Session> {
        let text = self.sealed_text(present)?;
        self.open(&text, now)
    }

    /// Opens a sealed session (valid at `now`), with its provider.
    pub fn open(&self, text: &str, now: u64) -> Option<Session> {
        let (provider, mut session): (usize, Session) =
            self.sealer.open_from(Purpose::Session, self.name, text)?;
        session.provider = provider;
        (now < session.expires_at).then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http::str_pairs;
    use crate::core::session::cookies;
    use crate::core::testing::CountingEntropy;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.fr";

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

    /// The session cookie `_sesame` sealed by `sealer`.
    fn jar(sealer: &Sealer) -> SessionCookie<'_> {
        SessionCookie {
            name: "_sesame",
            sealer,
        }
    }

    #[test]
    fn small_session_round_trip_in_one_cookie() {
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let set = jar.write(&session(100), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        assert_eq!(set.len(), 1);
        assert!(
            set[0].starts_with("_sesame=")
                && set[0].contains("HttpOnly")
                && set[0].contains("Max-Age=1000")
        );
        let sent = browser_cookies(&set);
        assert_eq!(jar.read(&str_pairs(&sent), 1500), Some(session(100)));
        assert_eq!(
            jar.read(&str_pairs(&sent), 2000),
            None,
            "expired session must not open"
        );
    }

    #[test]
    fn large_session_is_chunked_and_reassembled() {
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let set = jar.write(&session(9000), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        assert!(set.len() >= 3, "{}", set.len());
        assert!(set
            .iter()
            .all(|c| c.split(';').next().unwrap().len() < 4000));
        let sent = browser_cookies(&set);
        assert_eq!(sent[0].0, "_sesame_0");
        assert_eq!(jar.read(&str_pairs(&sent), 1500), Some(session(9000)));

        // Missing chunk, reordered chunks, truncated chunk: all "no session".
        let mut missing = sent.clone();
        missing.remove(1);
        assert_eq!(jar.read(&str_pairs(&missing), 1500), None);
        let mut reordered = sent.clone();
        let (a, b) = (reordered[0].1.clone(), reordered[1].1.clone());
        reordered[0].1 = b;
        reordered[1].1 = a;
        assert_eq!(jar.read(&str_pairs(&reordered), 1500), None);
        let mut truncated = sent.clone();
        let last = truncated.len() - 1;
        truncated.remove(last);
        assert_eq!(jar.read(&str_pairs(&truncated), 1500), None);
    }

    #[test]
    fn rewriting_a_smaller_session_clears_old_chunks() {
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
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
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let set = jar.write(&session(10), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        let value = browser_cookies(&set)[0].1.clone();
        // Flip one character in the middle.
        let mut bytes = value.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(jar.read(&[("_sesame", &tampered)], 1500), None);
        // Sealed with another secret.
        let other = Sealer::new(&[8u8; 32], ISSUER, "client");
        let foreign = SessionCookie {
            name: "_sesame",
            sealer: &other,
        };
        assert_eq!(foreign.read(&[("_sesame", &value)], 1500), None);
        // The same secret for another issuer or another client: other keys.
        for (issuer, client) in [
            ("https://idp.example.fr/staging", "client"),
            (ISSUER, "other"),
        ] {
            let other = Sealer::new(&[7u8; 32], issuer, client);
            let elsewhere = SessionCookie {
                name: "_sesame",
                sealer: &other,
            };
            assert_eq!(
                elsewhere.read(&[("_sesame", &value)], 1500),
                None,
                "{issuer} {client}"
            );
        }
        // The parts are length-prefixed: moving a character from the issuer
        // to the client gives other keys too.
        let shifted = Sealer::new(&[7u8; 32], "https://idp.example.f", "rclient");
        let elsewhere = SessionCookie {
            name: "_sesame",
            sealer: &shifted,
        };
        assert_eq!(elsewhere.read(&[("_sesame", &value)], 1500), None);
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
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let many: Vec<(String, String)> = (0..20)
            .map(|i| (format!("_sesame_{i}"), "QUFB".into()))
            .collect();
        assert_eq!(jar.sealed_text(&str_pairs(&many)), None);
        assert!(jar.is_ours("_sesame_3"));
        assert!(!jar.is_ours("_sesame_csrf_abc"));
        assert!(!jar.is_ours("_sesamex"));
        let parsed = cookies::parse(std::iter::once("_sesame_0=2.a; _sesame_1=b"));
        assert_eq!(jar.sealed_text(&parsed).as_deref(), Some("ab"));
        // A count beyond what is read, or chunks without a count: refused.
        for header in [
            "_sesame_0=9.a; _sesame_1=b",
            "_sesame_0=1.a; _sesame_1=b",
            "_sesame_0=a; _sesame_1=b",
            "_sesame_0=3.a; _sesame_1=b",
        ] {
            let parsed = cookies::parse(std::iter::once(header));
            assert_eq!(jar.sealed_text(&parsed), None, "{header}");
        }
    }

    #[test]
    fn stale_chunks_of_a_longer_session_are_not_read() {
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let long = jar.write(&session(20000), 1000, &ATTRS, &[], &mut CountingEntropy(0));
        let short = jar.write(&session(5000), 1000, &ATTRS, &[], &mut CountingEntropy(9));
        assert!(long.len() > short.len() && short.len() >= 2);
        // The browser kept the long session's last chunks (their clearing
        // was lost): the short session still opens.
        let mut sent = browser_cookies(&short);
        sent.extend(browser_cookies(&long).into_iter().skip(short.len()));
        assert_eq!(jar.read(&str_pairs(&sent), 1500), Some(session(5000)));
    }

    #[test]
    fn a_session_cookie_sent_twice_or_in_both_forms_is_no_session() {
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let one =
            browser_cookies(&jar.write(&session(10), 1000, &ATTRS, &[], &mut CountingEntropy(0)));
        let other =
            browser_cookies(&jar.write(&session(20), 1000, &ATTRS, &[], &mut CountingEntropy(5)));
        let chunked =
            browser_cookies(&jar.write(&session(9000), 1000, &ATTRS, &[], &mut CountingEntropy(7)));
        assert!(jar.read(&str_pairs(&one), 1500).is_some());
        // Ours and one planted beside it (another path or a parent domain).
        let twice: Vec<(String, String)> = one.iter().chain(other.iter()).cloned().collect();
        assert_eq!(jar.read(&str_pairs(&twice), 1500), None);
        let twice: Vec<(String, String)> = other.iter().chain(one.iter()).cloned().collect();
        assert_eq!(jar.read(&str_pairs(&twice), 1500), None);
        // A single cookie and chunks: which one is current cannot be told.
        let both: Vec<(String, String)> = one.iter().chain(chunked.iter()).cloned().collect();
        assert_eq!(jar.read(&str_pairs(&both), 1500), None);
        // A chunk sent twice.
        let mut dup = chunked.clone();
        dup.push(chunked[1].clone());
        assert_eq!(jar.read(&str_pairs(&dup), 1500), None);
        assert!(jar.read(&str_pairs(&chunked), 1500).is_some());
    }

    /// Two sessions, their JSON and their sealed text as the build with a
    /// derived `Deserialize` wrote them (keys 1 and 2 from `[7; 32]`, the
    /// nonces from `CountingEntropy(0)`).
    const FULL_JSON: &str = r#"{"c":{"email":"alice@numerique.gouv.fr","groups":["a","b"],"n":3,"sub":"alice"},"i":"id.token.sig","a":"at","t":1000,"e":4000000000,"s":"sid-1","r":"rt","x":5000}"#;
    const MINIMAL_JSON: &str = r#"{"c":{"sub":"bob"},"t":10,"e":4000000000}"#;
    const FULL_SEALED: &str = "AgECAwQFBgcICQoLDNc4kjlPc9srRmTQQVN_M37vTpl9xfvw2N_BVSVZ7lv-K0YWVh_nlVHnuIRIcSQhtFCnN96hEk8_fBWxW2FdZwj06Wtu3AVdMMccs0HrcQNvUk2mnKsUxPa5h7NyC0Hf9qQ7rZJhitFxR7oKmCHtNOBlBajRQVD03-czbCvwcJLCjIx6yAsgUEa5WUnv03pYKLD90Vn7nxAoMTGesIkMcaDr0MusbzfDGp0eYi1eclCvOro";
    const MINIMAL_SEALED: &str = "AQ0ODxAREhMUFRYXGJ3Wx6CiIxRr2DD5vWZDko4F_1sTLgbWC8MgC86iLFj0mxX-2p4mhw4Gf2AJ84S9kcIwiy_6thZzMg";

    fn two_providers() -> Sealer {
        Sealer::for_providers(
            &[7u8; 32],
            &[(ISSUER, "client"), ("https://other.example.fr", "client2")],
        )
    }

    fn full_session() -> Session {
        Session {
            claims: json!({"sub": "alice", "email": "alice@numerique.gouv.fr", "groups": ["a", "b"], "n": 3})
                .as_object()
                .unwrap()
                .clone(),
            id_token: Some("id.token.sig".into()),
            access_token: Some("at".into()),
            created_at: 1000,
            expires_at: 4_000_000_000,
            sid: "sid-1".into(),
            refresh_token: Some("rt".into()),
            access_expires_at: Some(5000),
            provider: 1,
        }
    }

    fn minimal_session() -> Session {
        Session {
            claims: json!({"sub": "bob"}).as_object().unwrap().clone(),
            created_at: 10,
            expires_at: 4_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn sessions_sealed_by_the_derived_serialisation_open_and_seal_the_same() {
        // The JSON reads back, and is written byte for byte as before.
        let full: Session = serde_json::from_str(FULL_JSON).unwrap();
        assert_eq!(
            full,
            Session {
                provider: 0,
                ..full_session()
            }
        );
        assert_eq!(serde_json::to_string(&full_session()).unwrap(), FULL_JSON);
        let minimal: Session = serde_json::from_str(MINIMAL_JSON).unwrap();
        assert_eq!(minimal, minimal_session());
        assert_eq!(serde_json::to_string(&minimal).unwrap(), MINIMAL_JSON);

        // The sealed texts open, and sealing again gives the same texts.
        let sealer = two_providers();
        let cookie = jar(&sealer);
        assert_eq!(cookie.open(FULL_SEALED, 2000), Some(full_session()));
        assert_eq!(cookie.open(MINIMAL_SEALED, 2000), Some(minimal_session()));
        let mut entropy = CountingEntropy(0);
        let full = sealer.seal_for(
            1,
            Purpose::Session,
            "_sesame",
            &full_session(),
            &mut entropy,
        );
        assert_eq!(full, FULL_SEALED);
        let minimal = sealer.seal_for(
            0,
            Purpose::Session,
            "_sesame",
            &minimal_session(),
            &mut entropy,
        );
        assert_eq!(minimal, MINIMAL_SEALED);
    }

    #[test]
    fn session_json_is_read_as_the_derived_deserialize_read_it() {
        let read = |text: &str| serde_json::from_str::<Session>(text).ok();
        // Nulls for the optional fields, and unknown keys, are accepted.
        let nulls = r#"{"c":{},"i":null,"a":null,"t":1,"e":2,"r":null,"x":null,"z":[1]}"#;
        let session = read(nulls).unwrap();
        assert_eq!((session.created_at, session.expires_at), (1, 2));
        assert_eq!(session.id_token, None);
        // Required fields missing, or fields of another type, are refused.
        for text in [
            r#"{"t":1,"e":2}"#,
            r#"{"c":{},"e":2}"#,
            r#"{"c":{},"t":1}"#,
            r#"{"c":[],"t":1,"e":2}"#,
            r#"{"c":null,"t":1,"e":2}"#,
            r#"{"c":{},"t":-1,"e":2}"#,
            r#"{"c":{},"t":1.5,"e":2}"#,
            r#"{"c":{},"t":"1","e":2}"#,
            r#"{"c":{},"t":1,"e":2,"i":3}"#,
            r#"{"c":{},"t":1,"e":2,"a":true}"#,
            r#"{"c":{},"t":1,"e":2,"r":[]}"#,
            r#"{"c":{},"t":1,"e":2,"s":null}"#,
            r#"{"c":{},"t":1,"e":2,"s":1}"#,
            r#"{"c":{},"t":1,"e":2,"x":"5"}"#,
            r#""session""#,
        ] {
            assert_eq!(read(text), None, "{text}");
        }
        // Two differences, in texts Sésame never seals: the array form,
        // which the derived `Deserialize` also read, is refused; a key given
        // twice, which it refused, reads as its last value.
        assert_eq!(read(r#"[{},null,null,1,2]"#), None);
        let twice = read(r#"{"c":{},"t":1,"e":2,"e":3}"#).unwrap();
        assert_eq!(twice.expires_at, 3);
    }
}
