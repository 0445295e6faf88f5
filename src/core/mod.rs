//! The pure core of Sésame: every decision, no I/O.
//!
//! Nothing in this module talks to Envoy. Functions take data (request headers,
//! response bodies, the current time, random bytes) and return decisions that the
//! proxy-wasm adapter carries out. Everything here compiles and is tested natively.

pub mod access;
pub mod audit;
pub mod config;
pub mod flow;
pub mod http;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod reader;
pub mod session;
pub mod shared;

/// A source of cryptographically secure random bytes.
///
/// The adapter fills it from the host (WASI `random_get`); tests may use anything.
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}

/// The time in unix seconds, as a request needs it.
///
/// Inside Envoy, each reading of the host's clock crosses into the host. A
/// request answered from a cache of this VM (a session opened before, a
/// bearer token checked before) asks only for `upper_bound`, which the adapter
/// answers from the VM's last reading; whatever else depends on the time reads
/// `now`.
pub trait Clock {
    /// The time now.
    fn now(&self) -> u64;
    /// A time not earlier than now: what is still valid then is still valid
    /// now, so a cache entry valid at this bound may be used as it is, and
    /// one that is not is looked at again with `now`.
    fn upper_bound(&self) -> u64;
}

/// A time already known: both `now` and its own bound.
impl Clock for u64 {
    fn now(&self) -> u64 {
        *self
    }

    fn upper_bound(&self) -> u64 {
        *self
    }
}

/// Random bytes from the operating system (WASI `random_get` inside Envoy).
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        // getrandom only fails when the platform has no entropy source at all; a
        // zeroed buffer would be a silent security failure, so refuse to go on.
        if getrandom::fill(buf).is_err() {
            panic!("no secure random source available");
        }
    }
}

/// Parses an absolute URL. Text that is not printable ASCII, or whose host
/// part holds a `%`, is refused before the `url` crate sees it: Sésame
/// handles host names without Unicode tables (`idna_adapter` 1.0.0), whose
/// code is only meant for ASCII host names, and `url` percent-decodes a host
/// before that step. An internationalised host name is written in its `xn--`
/// form, a path percent-encoded.
pub fn parse_url(text: &str) -> Result<url::Url, url::ParseError> {
    // The host part: after the scheme and its slashes (`url` reads `\` as
    // `/`), up to the path, the query or the fragment.
    let after_scheme = text.split_once(':').map_or("", |(_, rest)| rest);
    let authority = after_scheme
        .trim_start_matches(['/', '\\'])
        .split(['/', '\\', '?', '#'])
        .next()
        .unwrap_or("");
    if !text.bytes().all(|b| b.is_ascii_graphic()) || authority.contains('%') {
        return Err(url::ParseError::IdnaError);
    }
    url::Url::parse(text)
}

/// What is wrong with a JSON document, and where: serde_json's own text
/// without its `Display`, which would bring every I/O error's description
/// into the module (about 2 KB that a filter never shows).
pub fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "not valid JSON",
        Category::Eof => "JSON cut short",
        Category::Data => "JSON of an unexpected shape",
        Category::Io => "unreadable JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// A JSON field that is there with another type than the one expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

/// The text of `name` in a JSON object: `Ok(None)` when absent or null,
/// `Err(WrongType)` when it is there but not a string. Documents read this way
/// (rather than with a derived `Deserialize` each) share one JSON parser in
/// the module.
pub fn text_field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a str>, WrongType> {
    match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(WrongType),
    }
}

/// The fields of a JSON object that Sésame sealed itself (a session, a
/// sign-in's or a sign-out's state), read the way a derived `Deserialize`
/// read them: `None` for a field of another type or a required field
/// missing. Read through a `Map` (the parser the other documents share)
/// rather than a derived `Deserialize` each: about 1 KB of the module per
/// type.
pub(crate) struct Sealed(pub serde_json::Map<String, serde_json::Value>);

impl Sealed {
    /// Reads a sealed object into `T` with `read`, for a `Deserialize` impl.
    pub(crate) fn deserialize<'de, D, T>(
        deserializer: D,
        read: impl FnOnce(&mut Sealed) -> Option<T>,
    ) -> Result<T, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        use serde::Deserialize;
        let object = serde_json::Map::deserialize(deserializer)?;
        read(&mut Sealed(object)).ok_or_else(|| serde::de::Error::custom("not a sealed value"))
    }

    fn take(&mut self, name: &str) -> Option<serde_json::Value> {
        self.0.remove(name)
    }

    /// A required string.
    pub(crate) fn text(&mut self, name: &str) -> Option<String> {
        match self.take(name)? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An optional string: `Some(None)` when absent or null.
    pub(crate) fn opt_text(&mut self, name: &str) -> Option<Option<String>> {
        match self.take(name) {
            None | Some(serde_json::Value::Null) => Some(None),
            Some(serde_json::Value::String(s)) => Some(Some(s)),
            Some(_) => None,
        }
    }

    /// A required unsigned integer.
    pub(crate) fn number(&mut self, name: &str) -> Option<u64> {
        self.take(name)?.as_u64()
    }

    /// An optional unsigned integer: `Some(None)` when absent or null.
    pub(crate) fn opt_number(&mut self, name: &str) -> Option<Option<u64>> {
        match self.take(name) {
            None | Some(serde_json::Value::Null) => Some(None),
            Some(v) => v.as_u64().map(Some),
        }
    }
}

/// URL-safe base64 without padding, as used in JWTs, PKCE and our cookies.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes URL-safe base64, with or without padding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// A random token of `n` bytes, URL-safe base64 encoded (43 characters for 32 bytes).
pub fn random_token(entropy: &mut dyn Entropy, n: usize) -> String {
    let mut buf = vec![0u8; n];
    entropy.fill(&mut buf);
    b64url(&buf)
}

/// Compares two byte strings in time independent of where they differ.
/// A JSON value as text, on one line (through `to_vec`, as every JSON
/// Sésame writes: one serialiser in the module).
pub fn json_text(value: &serde_json::Value) -> String {
    String::from_utf8(serde_json::to_vec(value).unwrap_or_default()).unwrap_or_default()
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Entropy;

    /// Deterministic bytes for tests: a counter.
    pub struct CountingEntropy(pub u8);

    impl Entropy for CountingEntropy {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_enough_for_proconnect() {
        let t = random_token(&mut OsEntropy, 32);
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token(&mut OsEntropy, 32));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn json_errors_say_what_and_where() {
        let e = serde_json::from_slice::<serde_json::Value>(b"{\"a\": tru}").unwrap_err();
        assert_eq!(json_error(&e), "not valid JSON at line 1 column 10");
        let e = serde_json::from_slice::<serde_json::Value>(b"[1, 2").unwrap_err();
        assert!(json_error(&e).starts_with("JSON cut short"));
        let e = serde_json::from_slice::<Vec<u8>>(b"{}").unwrap_err();
        assert!(json_error(&e).starts_with("JSON of an unexpected shape"));
    }

    #[test]
    fn b64url_round_trip() {
        assert_eq!(
            b64url_decode(&b64url(b"\xff\x00hello")).unwrap(),
            b"\xff\x00hello"
        );
        assert!(b64url_decode("not base64 !").is_none());
    }
}
