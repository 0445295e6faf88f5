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
use super::headers::Identity;
use super::policy::Admissions;
use super::{b64url, b64url_decode, Entropy};

/// Largest cookie value written in one piece; browsers allow ~4096 bytes per
/// cookie including name and attributes.
pub const CHUNK_SIZE: usize = 3800;
/// Most chunks written and read back: a session that would need more is
/// never written (see [`SessionCookie::fits`]).
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
        Sealer {
            session: derive_key(secret, issuer, client_id, "session"),
            login: derive_key(secret, issuer, client_id, "login"),
            logout: derive_key(secret, issuer, client_id, "logout"),
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
        name.strip_prefix(self.name)
            .is_some_and(|rest| rest.is_empty() || chunk_index(rest).is_some())
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
                // One digit, 2 to MAX_CHUNKS (8).
                let count = match count.as_bytes() {
                    [d @ b'2'..=b'8'] => usize::from(d - b'0'),
                    _ => return None,
                };
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
        let session: Session = self.sealer.open(Purpose::Session, self.name, &text)?;
        (now < session.expires_at).then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cookies;
    use crate::core::http::str_pairs;
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
    fn the_cache_finds_only_the_exact_cookie() {
        let sealer = Sealer::new(&[7u8; 32], ISSUER, "client");
        let jar = jar(&sealer);
        let text = "A".repeat(100) + &"t".repeat(TAG_CHARS);
        let key = SessionKey::of(&jar, &[("_sesame", &text)]).unwrap();
        let mut cache = SessionCache::default();
        let entry = CachedSession::new(2000, None, Map::new(), Identity::default(), &key);
        cache.insert(&key, entry, 10, 1000);
        assert!(cache.get(&key, 1000).is_some());
        assert!(cache.get(&key, 2000).is_none(), "expired");
        // Same tag, the text altered before it: another key, no entry.
        for other in [
            "B".to_string() + &text[1..],
            text[..50].to_string() + "B" + &text[51..],
            text[1..].to_string(),
            "A".to_string() + &text,
        ] {
            let k = SessionKey::of(&jar, &[("_sesame", &other)]).unwrap();
            assert_eq!(k.tag, key.tag);
            assert!(cache.get(&k, 1000).is_none(), "{other}");
        }
        // The same text in chunks is the same session; chunks swapped are not.
        let (a, b) = text.split_at(60);
        let first = format!("2.{a}");
        let chunks = SessionKey::of(&jar, &[("_sesame_0", &first), ("_sesame_1", b)]).unwrap();
        assert_eq!(chunks.tag, key.tag);
        // A last chunk shorter than the tag: the tag spans two chunks.
        let (e, f) = text.split_at(text.len() - 5);
        let first = format!("2.{e}");
        let short = SessionKey::of(&jar, &[("_sesame_0", &first), ("_sesame_1", f)]).unwrap();
        assert_eq!((short.tag, short.len), (key.tag, key.len));
        let (c, d) = b.split_at(20);
        let first = format!("3.{c}");
        let swapped = SessionKey::of(
            &jar,
            &[("_sesame_0", &first), ("_sesame_1", a), ("_sesame_2", d)],
        )
        .unwrap();
        assert!(cache.get(&swapped, 1000).is_none());
        // Too short to hold a tag: no key at all.
        assert!(SessionKey::of(&jar, &[("_sesame", "short")]).is_none());
    }

    #[test]
    fn the_checksum_changes_with_any_byte_of_any_part() {
        let sum = |parts: &[&[u8]]| {
            let mut c = Checksum::default();
            for part in parts {
                c.write(part);
            }
            c.finish()
        };
        // Every length through two 32-byte blocks, so that the tail falls
        // after 0 to 3 words of the last block; the part checked first,
        // alone and before another part, then last.
        let text: Vec<u8> = (0..80u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..text.len() {
            let t = &text[..len];
            let other: &[u8] = b"another part";
            let (alone, first, last) = (sum(&[t]), sum(&[t, other]), sum(&[other, t]));
            for i in 0..len {
                let mut altered = t.to_vec();
                altered[i] ^= 0x20;
                let a = altered.as_slice();
                assert_ne!(sum(&[a]), alone, "length {len}, byte {i}");
                assert_ne!(
                    sum(&[a, other]),
                    first,
                    "length {len}, byte {i}, first part"
                );
                assert_ne!(sum(&[other, a]), last, "length {len}, byte {i}, last part");
            }
            let mut longer = t.to_vec();
            longer.push(0);
            assert_ne!(sum(&[&longer]), alone, "length {len} and a NUL");
        }
        // The same bytes cut into other parts: another checksum.
        assert_ne!(
            sum(&[&text[..40], &text[40..]]),
            sum(&[&text[..41], &text[41..]])
        );
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
}

/// Sessions opened lately, so that a request with a session costs a lookup
/// rather than base64, AES-GCM and JSON.
///
/// Keyed by the end of the sealed text: its last [`TAG_CHARS`] characters
/// carry the AES-GCM authentication tag, which no one can produce for a text
/// without the key. An entry also holds the length and a checksum of the whole
/// text it was opened from (every chunk, in order), so that a text that differs
/// anywhere from it (a tampered or truncated cookie) does not find it and is
/// opened, and refused, like any other.
/// Bounded; expiry checked on every use; sessions due for a refresh are not
/// served from here.
#[derive(Debug, Default)]
pub struct SessionCache {
    entries: std::collections::HashMap<[u8; TAG_CHARS], CachedSession>,
}

/// Base64url characters at the end of a sealed text that hold its 16-byte
/// authentication tag (and a few bits of the ciphertext before it).
pub const TAG_CHARS: usize = 22;

/// How a request's sealed session text is looked up in the [`SessionCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    tag: [u8; TAG_CHARS],
    len: usize,
    check: u64,
}

impl SessionKey {
    /// The key of the session the request carries, without joining its chunks.
    pub fn of(jar: &SessionCookie, present: &[(&str, &str)]) -> Option<SessionKey> {
        let parts = jar.sealed_parts(present)?;
        // The text's last TAG_CHARS characters, which may span chunks.
        let mut tag = [0u8; TAG_CHARS];
        let mut missing = TAG_CHARS;
        for part in parts.iter().rev() {
            let take = missing.min(part.len());
            tag[missing - take..missing].copy_from_slice(&part.as_bytes()[part.len() - take..]);
            missing -= take;
            if missing == 0 {
                break;
            }
        }
        if missing > 0 {
            return None;
        }
        let mut check = Checksum::default();
        let mut len = 0;
        for part in &parts {
            check.write(part.as_bytes());
            len += part.len();
        }
        Some(SessionKey {
            tag,
            len,
            check: check.finish(),
        })
    }
}

/// A fast checksum of a text, 8 bytes per step: any change within one 8-byte
/// word of it changes the result (each step is a bijection of the state, and
/// of the word). The words go to four lanes in turn, so that the steps of a
/// long cookie do not each wait for the one before (0.3 µs less per request
/// with a 2.5 KB cookie in V8 than one lane, `bench/vm-bench.mjs`), and
/// `finish` folds the lanes the same way.
/// Not a MAC: the tag the key is looked up by is what an attacker cannot
/// make; this only tells the exact text apart from altered copies.
#[derive(Default)]
struct Checksum([u64; 4]);

impl Checksum {
    fn step(state: u64, word: u64) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        (state.rotate_left(5) ^ word).wrapping_mul(K)
    }

    /// An 8-byte word of the text.
    fn word(bytes: &[u8]) -> u64 {
        u64::from_le_bytes(bytes.try_into().unwrap_or_default())
    }

    /// Adds one part of the text (a chunk), its length included.
    fn write(&mut self, bytes: &[u8]) {
        let mut blocks = bytes.chunks_exact(32);
        let [mut a, mut b, mut c, mut d] = self.0;
        for block in &mut blocks {
            a = Self::step(a, Self::word(&block[..8]));
            b = Self::step(b, Self::word(&block[8..16]));
            c = Self::step(c, Self::word(&block[16..24]));
            d = Self::step(d, Self::word(&block[24..]));
        }
        self.0 = [a, b, c, d];
        // Up to 3 words left, then the tail (0 to 7 bytes) in the next lane.
        let mut words = blocks.remainder().chunks_exact(8);
        let mut lane = 0;
        for word in &mut words {
            self.0[lane % 4] = Self::step(self.0[lane % 4], Self::word(word));
            lane += 1;
        }
        // The tail's length goes in too, so that "ab" and "ab\0" differ.
        let rest = words.remainder();
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        tail[7] ^= rest.len() as u8;
        self.0[lane % 4] = Self::step(self.0[lane % 4], u64::from_le_bytes(tail));
    }

    fn finish(&self) -> u64 {
        self.0[1..]
            .iter()
            .fold(self.0[0], |s, &lane| Self::step(s, lane))
    }
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
    pub headers: Identity,
    /// Length and checksum of the sealed text it was opened from.
    len: usize,
    check: u64,
    /// What the access rules of each slot answered (see `Filter::policy_slot`).
    pub admissions: Admissions,
}

impl CachedSession {
    pub fn new(
        expires_at: u64,
        refresh_at: Option<u64>,
        claims: Map<String, Value>,
        headers: Identity,
        key: &SessionKey,
    ) -> Self {
        CachedSession {
            expires_at,
            refresh_at,
            claims,
            headers,
            len: key.len,
            check: key.check,
            admissions: Admissions::default(),
        }
    }
}

impl SessionCache {
    /// A session seen before, still valid and not due for a refresh.
    pub fn get(&self, key: &SessionKey, now: u64) -> Option<&CachedSession> {
        self.entries.get(&key.tag).filter(|c| {
            c.len == key.len
                && c.check == key.check
                && now < c.expires_at
                && c.refresh_at.is_none_or(|r| now < r)
        })
    }

    pub fn insert(&mut self, key: &SessionKey, entry: CachedSession, capacity: usize, now: u64) {
        if capacity == 0 {
            return;
        }
        let key = key.tag;
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
