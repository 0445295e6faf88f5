//! Sessions opened lately, by the cookie that carried them.

use serde_json::{Map, Value};

use super::sealed::SessionCookie;
use crate::core::access::policy::Admissions;

/// The identity headers for the upstream: shared by every request of a
/// session (the cache of opened sessions hands out the same copy).
pub type Identity = std::rc::Rc<[(String, String)]>;

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
    /// The provider that signed the person in.
    pub provider: usize,
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
        provider: usize,
        expires_at: u64,
        refresh_at: Option<u64>,
        claims: Map<String, Value>,
        headers: Identity,
        key: &SessionKey,
    ) -> Self {
        CachedSession {
            provider,
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

    /// Forgets every session (the access rules changed).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::sealed::Sealer;

    /// The session cookie `_sesame` sealed by `sealer`.
    fn jar(sealer: &Sealer) -> SessionCookie<'_> {
        SessionCookie {
            name: "_sesame",
            sealer,
        }
    }

    #[test]
    fn the_cache_finds_only_the_exact_cookie() {
        let sealer = Sealer::new(&[7u8; 32], "https://idp.example.fr", "client");
        let jar = jar(&sealer);
        let text = "A".repeat(100) + &"t".repeat(TAG_CHARS);
        let key = SessionKey::of(&jar, &[("_sesame", &text)]).unwrap();
        let mut cache = SessionCache::default();
        let entry = CachedSession::new(0, 2000, None, Map::new(), Identity::default(), &key);
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
}
