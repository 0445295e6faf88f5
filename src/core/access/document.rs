//! Access managed from outside the configuration: the access document
//! (`access_source`), API keys, and when a time given as text is.
//!
//! The document holds the filter-level rules, revocations and API keys. It
//! is read here (every problem reported at once, nothing taken from a
//! document with a problem); fetching it, sharing it with the other workers
//! and keeping the last good one is the access source's (`source.rs`).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::access::policy::Policy;
use crate::core::constant_time_eq;
use crate::core::reader::{read_entries, read_policy, ConfigError, Reader};

/// Most API keys one list holds.
pub const MAX_API_KEYS: usize = 1000;
/// Most entries of `revoked`.
pub const MAX_REVOKED: usize = 10_000;
/// The prefix of the bearer tokens Sésame issues or recommends (personal
/// tokens, API keys): a token with it is never sent to a provider.
pub const OWN_TOKEN_PREFIX: &str = "sesame_";

/// The keys an access document may hold.
const DOCUMENT_KEYS: &[&str] = &[
    "allowed_emails",
    "allowed_email_domains",
    "allowed_claims",
    "allow_all_users",
    "revoked",
    "api_keys",
];

/// A key a script presents as `Authorization: Bearer <key>`; only the
/// SHA-256 of the key is known here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The name the upstream and the audit lines know the key by.
    pub id: String,
    pub digest: [u8; 32],
    pub scopes: Vec<String>,
    /// Unix seconds; `None`: until removed.
    pub expires: Option<u64>,
}

/// API keys, found by the SHA-256 of what is presented, compared with
/// every listed digest in constant time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn new(keys: Vec<ApiKey>) -> ApiKeys {
        ApiKeys { keys }
    }

    /// The key whose SHA-256 is `digest`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn find(&self, digest: &[u8; 32]) -> Option<&ApiKey> {
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.digest, digest) {
                found = Some(key);
            }
        }
        found
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One entry of `revoked`: an identity matching every field given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Lower case.
    pub email: Option<String>,
    pub sub: Option<String>,
    /// The provider's index.
    pub provider: Option<usize>,
}

impl Revocation {
    #[cfg_attr(sesame_size, optimize(size))]
    fn matches(&self, provider: usize, claims: &Map<String, Value>) -> bool {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        self.provider.is_none_or(|p| p == provider)
            && self.sub.as_deref().is_none_or(|s| text("sub") == Some(s))
            && self.email.as_deref().is_none_or(|e| {
                text("email").is_some_and(|mine| mine.trim().eq_ignore_ascii_case(e))
            })
    }
}

/// An access document in force.
#[derive(Debug, Clone, Default)]
pub struct AccessDocument {
    /// The filter-level rules.
    pub policy: Policy,
    pub revoked: Vec<Revocation>,
    pub api_keys: ApiKeys,
    /// The first 16 hex digits of the document's SHA-256 (audit lines).
    pub digest: String,
}

impl AccessDocument {
    /// Reads a document: `provider_ids` are the configured providers' ids
    /// (revocations may name one), `kept` the claims sessions keep (the
    /// only ones `allowed_claims` may name). `Err`: every problem found.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn parse(
        bytes: &[u8],
        provider_ids: &[&str],
        kept: &dyn Fn(&str) -> bool,
    ) -> Result<AccessDocument, Vec<String>> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| vec![format!("not JSON: {}", crate::core::json_error(&e))])?;
        let Value::Object(obj) = value else {
            return Err(vec!["not a JSON object".into()]);
        };
        let mut r = Reader {
            obj: &obj,
            errors: Vec::new(),
        };
        for key in obj.keys() {
            if !DOCUMENT_KEYS.contains(&key.as_str()) {
                r.err(key, "is not a known key (check its spelling)");
            }
        }
        let policy = read_policy(&mut r);
        for (claim, _) in &policy.claims {
            if !kept(claim) {
                r.err(
                    "allowed_claims",
                    format!("{claim:?} is not kept in sessions: name it in access_source.claims"),
                );
            }
        }
        let revoked = read_revocations(&mut r, provider_ids);
        let api_keys = read_api_keys(&mut r);
        if !r.errors.is_empty() {
            let problem = |e: &ConfigError| format!("`{}`: {}", e.key, e.message);
            return Err(r.errors.iter().map(problem).collect());
        }
        let digest = Sha256::digest(bytes)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(AccessDocument {
            policy,
            revoked,
            api_keys: ApiKeys::new(api_keys),
            digest,
        })
    }

    /// Whether the identity from `provider` with `claims` is revoked.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn revokes(&self, provider: usize, claims: &Map<String, Value>) -> bool {
        self.revoked.iter().any(|r| r.matches(provider, claims))
    }
}

/// `revoked`: entries of `email` and/or `sub`, and `provider`.
#[cfg_attr(sesame_size, optimize(size))]
fn read_revocations(r: &mut Reader, provider_ids: &[&str]) -> Vec<Revocation> {
    let items = match r.obj.get("revoked") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            r.err("revoked", "must be an array of objects");
            return Vec::new();
        }
    };
    let shape = "must be an object with `email` and/or `sub`, and optionally `provider`";
    read_entries(
        r,
        "revoked",
        items,
        (MAX_REVOKED, "entries"),
        shape,
        |sub, _| {
            for key in sub.obj.keys() {
                if !["email", "sub", "provider"].contains(&key.as_str()) {
                    sub.err(key, "is not a known key (email, sub, provider)");
                }
            }
            let email = sub.string("email").map(|e| e.trim().to_ascii_lowercase());
            if email.as_ref().is_some_and(|e| !e.contains('@')) {
                sub.err("email", "is not an email address");
            }
            let who = sub.string("sub");
            if email.is_none() && who.is_none() {
                sub.err("email", "or `sub` is required");
            }
            let provider = sub.string("provider").and_then(|id| {
                let found = provider_ids.iter().position(|p| *p == id);
                if found.is_none() {
                    sub.err("provider", format!("{id:?} is not a configured provider"));
                }
                found
            });
            Some(Revocation {
                email,
                sub: who,
                provider,
            })
        },
    )
}

/// `api_keys` of `r` (the configuration, or an access document).
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn read_api_keys(r: &mut Reader) -> Vec<ApiKey> {
    let items = match r.obj.get("api_keys") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            r.err("api_keys", "must be an array of objects");
            return Vec::new();
        }
    };
    let shape = "must be an object with `id`, `sha256`, `scopes` and optionally `expires`";
    read_entries(
        r,
        "api_keys",
        items,
        (MAX_API_KEYS, "keys"),
        shape,
        |sub, earlier: &[ApiKey]| {
            for key in sub.obj.keys() {
                if !["id", "sha256", "scopes", "expires"].contains(&key.as_str()) {
                    sub.err(key, "is not a known key (id, sha256, scopes, expires)");
                }
            }
            let id = sub.required_string("id").unwrap_or_default();
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !id_ok {
                sub.err("id", "must be 1 to 64 letters, digits, `.`, `_` or `-`");
            } else if earlier.iter().any(|k| k.id == id) {
                sub.err("id", format!("{id:?} is used by another key"));
            }
            let hex = sub.required_string("sha256").unwrap_or_default();
            let digest = hex_digest(&hex);
            if digest.is_none() {
                sub.err(
                "sha256",
                "must be the key's SHA-256 in hex, 64 digits (`printf %s \"$key\" | sha256sum`)",
            );
            } else if digest.is_some_and(|d| earlier.iter().any(|k| k.digest == d)) {
                sub.err("sha256", "is the hash of another key");
            }
            let scopes = sub.string_list("scopes").unwrap_or_default();
            if scopes.is_empty() {
                sub.err(
                "scopes",
                "at least one scope is required: a key opens the routes whose scopes it carries",
            );
            }
            let expires = sub.string("expires").and_then(|t| {
                let at = parse_time(&t);
                if at.is_none() {
                    sub.err(
                        "expires",
                        "must be an RFC 3339 time, e.g. \"2027-06-30T00:00:00Z\"",
                    );
                }
                at
            });
            Some(ApiKey {
                id,
                digest: digest?,
                scopes,
                expires,
            })
        },
    )
}

#[cfg_attr(sesame_size, optimize(size))]
fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar.
#[cfg_attr(sesame_size, optimize(size))]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 time (`2027-06-30T00:00:00Z`, `...T02:00:00+02:00`,
/// fractions of a second ignored) in unix seconds.
#[cfg_attr(sesame_size, optimize(size))]
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = t.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| t.get(i).is_some_and(|b| c.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let max_day = if mo == 2 && leap {
        29
    } else {
        *month_days.get(usize::try_from(mo - 1).ok()?)?
    };
    if d < 1 || d > max_day || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let minutes = two(*h1, *h2)? * 60 + two(*m1, *m2)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    u64::try_from(secs).ok()
}

/// Unix seconds as an RFC 3339 time in UTC (`2026-12-05T18:00:00Z`).
#[cfg_attr(sesame_size, optimize(size))]
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // From days to a civil date (the inverse of `days_from_civil`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(doc: Value) -> Result<AccessDocument, Vec<String>> {
        AccessDocument::parse(doc.to_string().as_bytes(), &["pc", "staff"], &|c| {
            c == "siret"
        })
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn times_read_and_written() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2027-06-30T00:00:00Z"), Some(1_814_313_600));
        assert_eq!(parse_time("2027-06-30T02:00:00+02:00"), Some(1_814_313_600));
        assert_eq!(
            parse_time("2027-06-29T23:00:00.5-01:00"),
            Some(1_814_313_600)
        );
        assert_eq!(parse_time("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2027-06-30",
            "2027-13-01T00:00:00Z",
            "2027-06-30T00:00:00",
            "2027-06-30T24:00:00Z",
            "x",
            "2027-06-30T00:00:00+0200",
            "+027-06-30T00:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        for t in [0, 1_709_208_000, 1_814_313_600, 4_102_444_799] {
            assert_eq!(parse_time(&format_time(t)), Some(t));
        }
        assert_eq!(format_time(1_814_313_600), "2027-06-30T00:00:00Z");
    }

    #[test]
    fn a_document_is_read_whole_or_refused_with_every_problem() {
        let key = "ab".repeat(32);
        let doc = parse(json!({
            "allowed_emails": ["Alice@agents.gouv.fr"],
            "allowed_claims": {"siret": ["13002526500013"]},
            "revoked": [{"email": "Mallory@Agents.gouv.fr"}, {"sub": "s-1", "provider": "staff"}],
            "api_keys": [{"id": "ci-bot", "sha256": key, "scopes": ["api:read"], "expires": "2027-06-30T00:00:00Z"}]
        }))
        .unwrap();
        assert_eq!(doc.api_keys.len(), 1);
        let found = doc.api_keys.find(&[0xab; 32]).unwrap();
        assert_eq!(
            (found.id.as_str(), found.expires),
            ("ci-bot", Some(1_814_313_600))
        );
        assert!(doc.api_keys.find(&[0xac; 32]).is_none());
        assert!(doc.revokes(
            0,
            &claims(json!({"sub": "x", "email": "mallory@agents.gouv.fr"}))
        ));
        assert!(doc.revokes(1, &claims(json!({"sub": "s-1"}))));
        assert!(
            !doc.revokes(0, &claims(json!({"sub": "s-1"}))),
            "another provider's s-1"
        );
        assert!(!doc.revokes(
            0,
            &claims(json!({"sub": "y", "email": "alice@agents.gouv.fr"}))
        ));
        assert_eq!(doc.digest.len(), 16);

        let errors = parse(json!({
            "allowed_email": ["typo@x.fr"],
            "allowed_emails": ["not-an-email"],
            "allowed_claims": {"idp_id": ["x"]},
            "revoked": [{}, {"sub": "s", "provider": "nope"}, {"email": "x", "when": 1}],
            "api_keys": [
                {"id": "a b", "sha256": "12", "scopes": []},
                {"id": "k", "sha256": key, "scopes": ["s"], "expires": "tomorrow"},
                {"id": "k", "sha256": key, "scopes": ["s"]}
            ]
        }))
        .unwrap_err();
        let text = errors.join("\n");
        for needle in [
            "`allowed_email`",
            "`allowed_emails`",
            "\"idp_id\" is not kept",
            "`revoked[0].email`",
            "`revoked[1].provider`",
            "`revoked[2].when`",
            "`api_keys[0].id`",
            "`api_keys[0].sha256`",
            "`api_keys[0].scopes`",
            "`api_keys[1].expires`",
            "`api_keys[2].id`",
            "`api_keys[2].sha256`",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(parse(json!([])).is_err());
        assert!(AccessDocument::parse(b"{", &[], &|_| true).is_err());
    }

    #[test]
    fn a_document_without_rules_is_valid_and_its_policy_empty() {
        let doc = parse(json!({"revoked": [{"email": "a@b.fr"}]})).unwrap();
        assert!(doc.policy.is_empty());
    }
}
