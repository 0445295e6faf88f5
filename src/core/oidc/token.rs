//! Signed JWT validation: ID tokens, signed userinfo, JWT access tokens
//! (RFC 9068) and signed introspection answers (RFC 9701).
//!
//! This module does the JWS framing of the compact serialisation (RFC 7515)
//! and nothing else: exactly three parts, each strictly base64url-decoded (no
//! padding, no non-canonical trailing bits), a header and a payload that are
//! JSON objects without duplicate names, and the signature checked over the
//! ASCII bytes `header.payload`. The signature primitives all come from
//! RustCrypto and ed25519-compact: RSASSA-PKCS1-v1_5 and RSASSA-PSS (salt as
//! long as the hash, RFC 7518 §3.5) from `rsa`, ECDSA over P-256 and P-384
//! (raw `r || s`, RFC 7518 §3.4) from `p256`/`p384`, Ed25519 from
//! `ed25519-compact`.
//!
//! The algorithm allow-list is checked before anything else; only asymmetric
//! algorithms exist here, so neither `none` nor an HMAC keyed with a public key
//! can ever verify, and a key is only used with an algorithm of its own type. A
//! header with `crit` (we understand no extension) or with `b64` other than
//! `true` (RFC 7797) is refused. The OpenID Connect claim rules (`iss`, `aud`,
//! `azp`, `exp`, `iat`, `nbf`, `nonce`) are then checked explicitly.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::core::constant_time_eq;
use crate::core::oidc::keys::{signature_verifies, KeySet, SigningKey};

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Encoded JOSE headers larger than this are refused before any parsing.
const MAX_HEADER_LEN: usize = 2048;
/// Keys tried for a token without `kid`.
const MAX_KEYS_TRIED: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    AlgorithmNotAllowed(String),
    /// No key matches the token's `kid`: the keys may have rotated.
    UnknownKey(Option<String>),
    BadSignature,
    MissingClaim(&'static str),
    WrongIssuer,
    WrongAudience,
    WrongAuthorizedParty,
    Expired,
    NotYetValid,
    IssuedInFuture,
    NonceMismatch,
    SubjectMismatch,
    /// An ID token (it has a `nonce`) presented as an access token.
    NotAnAccessToken,
}

impl TokenError {
    /// A short, stable name, used in counters and logs.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::WrongAuthorizedParty => "wrong_azp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::NonceMismatch => "nonce_mismatch",
            TokenError::SubjectMismatch => "subject_mismatch",
            TokenError::NotAnAccessToken => "not_an_access_token",
        }
    }
}

impl std::fmt::Display for TokenError {
    #[cfg_attr(sesame_size, optimize(size))]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::AlgorithmNotAllowed(a) => write!(f, "algorithm {a:?} is not allowed"),
            TokenError::UnknownKey(Some(k)) => write!(f, "no provider key has kid {k:?}"),
            TokenError::MissingClaim(c) => write!(f, "claim `{c}` is missing"),
            other => f.write_str(other.reason()),
        }
    }
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub allowed_algs: &'a [String],
    pub now: u64,
    pub leeway: u64,
}

// ---------------------------------------------------------------------------
// JWS framing

/// Strict base64url: the unpadded alphabet only, and canonical (the unused
/// bits of the last character are zero), so that one token has one spelling.
#[cfg_attr(sesame_size, optimize(size))]
fn b64url_strict(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// A JSON value in which no object, at any depth, names a member twice
/// (`serde_json::Value` would silently keep the last one).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    #[cfg_attr(sesame_size, optimize(size))]
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    #[cfg_attr(sesame_size, optimize(size))]
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value without duplicate member names")
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    #[cfg_attr(sesame_size, optimize(size))]
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.insert(name, value).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(map))
    }
}

/// A base64url part that decodes to a JSON object without duplicate names.
#[cfg_attr(sesame_size, optimize(size))]
fn json_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(&b64url_strict(part)?)
        .ok()?
        .0
    {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// An optional string member (`null` counts as absent).
#[cfg_attr(sesame_size, optimize(size))]
fn optional_str<'a>(
    map: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, TokenError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// The JOSE header rules beyond `alg` and `kid`.
#[cfg_attr(sesame_size, optimize(size))]
fn check_header(header: &Map<String, Value>) -> Result<(), TokenError> {
    // No extension is understood, so none can be critical (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    // An unencoded payload (RFC 7797) is never accepted.
    if header.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
        return Err(TokenError::Malformed);
    }
    // `typ`, when present, names a JWT: `JWT`, `at+jwt`, `token-introspection+jwt`...
    if let Some(typ) = optional_str(header, "typ")? {
        let typ = typ.to_ascii_uppercase();
        if typ != "JWT" && !typ.ends_with("+JWT") {
            return Err(TokenError::Malformed);
        }
    }
    Ok(())
}

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds, integer or
/// not (the fraction is dropped).
#[cfg_attr(sesame_size, optimize(size))]
fn numeric_date(value: &Value) -> Result<u64, TokenError> {
    let Value::Number(n) = value else {
        return Err(TokenError::Malformed);
    };
    if let Some(secs) = n.as_u64() {
        return Ok(secs);
    }
    match n.as_f64() {
        // `as` saturates: a date past u64::MAX seconds is u64::MAX.
        Some(f) if f >= 0.0 => Ok(f as u64),
        _ => Err(TokenError::Malformed),
    }
}

/// A verified token's payload. `custom` holds every claim but `aud`, `exp`,
/// `iat`, `nbf`, `jti` and `nonce`, which are only read here.
#[derive(Debug)]
struct Claims {
    issuer: Option<String>,
    subject: Option<String>,
    audiences: Option<BTreeSet<String>>,
    nonce: Option<String>,
    expires_at: Option<u64>,
    issued_at: Option<u64>,
    invalid_before: Option<u64>,
    custom: Map<String, Value>,
}

impl Claims {
    /// Reads the registered claims, refusing ill-typed ones.
    #[cfg_attr(sesame_size, optimize(size))]
    fn parse(mut map: Map<String, Value>) -> Result<Claims, TokenError> {
        let mut string = |name: &str, keep: bool| -> Result<Option<String>, TokenError> {
            let value = optional_str(&map, name)?.map(str::to_string);
            if !keep || value.is_none() {
                map.remove(name);
            }
            Ok(value)
        };
        let issuer = string("iss", true)?;
        let subject = string("sub", true)?;
        let nonce = string("nonce", false)?;
        string("jti", false)?;
        let audiences = match map.remove("aud") {
            None => None,
            Some(Value::String(a)) => Some(BTreeSet::from([a])),
            // A `BTreeSet<String>` as the configuration's sets (its code
            // once in the module), inserted one by one.
            Some(Value::Array(items)) => {
                let mut audiences = BTreeSet::new();
                for item in items {
                    let Value::String(a) = item else {
                        return Err(TokenError::Malformed);
                    };
                    audiences.insert(a);
                }
                Some(audiences)
            }
            Some(_) => return Err(TokenError::Malformed),
        };
        let mut date = |name: &str| map.remove(name).as_ref().map(numeric_date).transpose();
        Ok(Claims {
            expires_at: date("exp")?,
            issued_at: date("iat")?,
            invalid_before: date("nbf")?,
            issuer,
            subject,
            audiences,
            nonce,
            custom: map,
        })
    }

    /// The time claims that are present, against the clock give or take the
    /// leeway: not issued in the future, already valid, not expired.
    #[cfg_attr(sesame_size, optimize(size))]
    fn check_window(&self, now: u64, leeway: u64) -> Result<(), TokenError> {
        let later = now.saturating_add(leeway);
        if self.issued_at.is_some_and(|iat| iat > later) {
            return Err(TokenError::IssuedInFuture);
        }
        if self.invalid_before.is_some_and(|nbf| nbf > later) {
            return Err(TokenError::NotYetValid);
        }
        if self
            .expires_at
            .is_some_and(|exp| now < leeway || now - leeway > exp)
        {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// Checks the signature with the provider's keys and returns the claims; the
/// time claims that are present are checked too (`check_times` then requires
/// them where they are mandatory).
#[cfg_attr(sesame_size, optimize(size))]
fn verify_signature(token: &str, keys: &KeySet, exp: &Expectations) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header_b64.len() > MAX_HEADER_LEN {
        return Err(TokenError::Malformed);
    }
    let header = json_object(header_b64).ok_or(TokenError::Malformed)?;
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(TokenError::Malformed);
    };
    if !exp.allowed_algs.contains(alg) {
        return Err(TokenError::AlgorithmNotAllowed(alg.clone()));
    }
    let kid = optional_str(&header, "kid")?;
    check_header(&header)?;
    let candidates: Vec<&SigningKey> = keys.candidates(alg, kid).take(MAX_KEYS_TRIED).collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey(kid.map(str::to_string)));
    }
    let signature = b64url_strict(signature_b64).ok_or(TokenError::BadSignature)?;
    let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    if !candidates
        .iter()
        .any(|key| signature_verifies(&key.material, alg, signed, &signature))
    {
        return Err(TokenError::BadSignature);
    }
    let claims = Claims::parse(json_object(payload_b64).ok_or(TokenError::Malformed)?)?;
    claims.check_window(exp.now, exp.leeway)?;
    Ok(claims)
}

#[cfg_attr(sesame_size, optimize(size))]
fn check_audience(claims: &Claims, client_id: &str) -> Result<(), TokenError> {
    let audiences = claims
        .audiences
        .as_ref()
        .ok_or(TokenError::MissingClaim("aud"))?;
    if !audiences.contains(client_id) {
        return Err(TokenError::WrongAudience);
    }
    let azp = claims.custom.get("azp").and_then(Value::as_str);
    if audiences.len() > 1 && azp.is_none() {
        return Err(TokenError::WrongAuthorizedParty);
    }
    if azp.is_some_and(|a| a != client_id) {
        return Err(TokenError::WrongAuthorizedParty);
    }
    Ok(())
}

#[cfg_attr(sesame_size, optimize(size))]
fn check_times(claims: &Claims, exp: &Expectations) -> Result<(), TokenError> {
    let now = exp.now;
    let expires = claims.expires_at.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= expires.saturating_add(exp.leeway) {
        return Err(TokenError::Expired);
    }
    let issued = claims.issued_at.ok_or(TokenError::MissingClaim("iat"))?;
    if issued > now.saturating_add(exp.leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if let Some(nbf) = claims.invalid_before {
        if nbf > now.saturating_add(exp.leeway) {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}

/// The claims of a verified token as one JSON object, for the session and the
/// access rules: every claim but `aud`, `exp`, `iat`, `nbf`, `jti` and `nonce`.
#[cfg_attr(sesame_size, optimize(size))]
fn into_map(claims: Claims) -> Map<String, Value> {
    claims.custom
}

/// The checks every ID token passes: signature, `iss`, `aud`/`azp`, times.
#[cfg_attr(sesame_size, optimize(size))]
fn verified_id_token(token: &str, keys: &KeySet, exp: &Expectations) -> Result<Claims, TokenError> {
    let claims = verify_signature(token, keys, exp)?;
    if claims.issuer.as_deref() != Some(exp.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    check_audience(&claims, exp.client_id)?;
    check_times(&claims, exp)?;
    Ok(claims)
}

/// Validates an ID token (OpenID Connect Core §3.1.3.7) and returns its claims.
#[cfg_attr(sesame_size, optimize(size))]
pub fn validate_id_token(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
    expected_nonce: &str,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verified_id_token(token, keys, exp)?;
    match claims.nonce.as_deref() {
        Some(n) if constant_time_eq(n.as_bytes(), expected_nonce.as_bytes()) => {}
        _ => return Err(TokenError::NonceMismatch),
    }
    if claims.subject.as_deref().is_none_or(str::is_empty) {
        return Err(TokenError::MissingClaim("sub"));
    }
    Ok(into_map(claims))
}

/// Validates the ID token of a refresh (OpenID Connect Core §12.2): like the
/// sign-in's, but without a `nonce` to compare, and for the same `sub`.
#[cfg_attr(sesame_size, optimize(size))]
pub fn validate_refreshed_id_token(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
    expected_sub: &str,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verified_id_token(token, keys, exp)?;
    if claims.subject.as_deref() != Some(expected_sub) {
        return Err(TokenError::SubjectMismatch);
    }
    Ok(into_map(claims))
}

/// Whether claim `name` is `value`, or a list that holds it.
#[cfg_attr(sesame_size, optimize(size))]
pub fn claim_contains(claims: &Map<String, Value>, name: &str, value: &str) -> bool {
    match claims.get(name) {
        Some(Value::String(s)) => s == value,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(value)),
        _ => false,
    }
}

/// Validates a JWT access token (RFC 9068) presented to this resource server:
/// signature against the provider's keys, `iss`, `exp`/`iat`/`nbf`, and our
/// audience in `audience_claim` (`aud` at ProConnect, `client_id` or `azp`
/// elsewhere). An ID token (it carries a `nonce`) is not an access token.
/// The JOSE header of a compact JWT, when it reads as a JSON object.
#[cfg_attr(sesame_size, optimize(size))]
fn header_of(token: &str) -> Option<Map<String, Value>> {
    json_object(token.split('.').next()?)
}

/// The `iss` a JWT says it comes from, before any check: only to pick
/// whose keys verify it (the verification then checks `iss` again).
#[cfg_attr(sesame_size, optimize(size))]
pub fn claimed_issuer(token: &str) -> Option<String> {
    json_object(token.split('.').nth(1)?)?
        .get("iss")?
        .as_str()
        .map(str::to_string)
}

/// Whether a JWT's header names its key (`kid`).
#[cfg_attr(sesame_size, optimize(size))]
pub fn names_kid(token: &str) -> bool {
    header_of(token).is_some_and(|h| h.contains_key("kid"))
}

/// Whether a JWT's header says it is an access token: `typ` `at+jwt`
/// (RFC 9068 §2.1; `application/at+jwt` too, and in any case).
#[cfg_attr(sesame_size, optimize(size))]
fn typed_as_access_token(token: &str) -> bool {
    header_of(token)
        .and_then(|h| {
            h.get("typ")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
        .is_some_and(|typ| typ == "at+jwt" || typ == "application/at+jwt")
}

/// Validates a JWT access token (RFC 9068): signature, `iss`, times, and
/// the audience in `audience_claim`. With `require_typ`, its header must say
/// `typ: at+jwt`; without, it must at least not look like an ID token (no
/// `nonce`, `at_hash` or `c_hash`, no `typ: ID` claim as Keycloak writes).
/// An ID token is never an access token: Sésame itself passes ID tokens to
/// the upstream and in `id_token_hint` URLs.
#[cfg_attr(sesame_size, optimize(size))]
pub fn validate_access_token(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
    audience: &str,
    audience_claim: &str,
    require_typ: bool,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verify_signature(token, keys, exp)?;
    if claims.issuer.as_deref() != Some(exp.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    check_times(&claims, exp)?;
    if require_typ && !typed_as_access_token(token) {
        return Err(TokenError::NotAnAccessToken);
    }
    let id_token_marks = ["at_hash", "c_hash"]
        .iter()
        .any(|c| claims.custom.contains_key(*c))
        || claims
            .custom
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("id"));
    if claims.nonce.is_some() || id_token_marks {
        return Err(TokenError::NotAnAccessToken);
    }
    let in_aud = claims
        .audiences
        .as_ref()
        .is_some_and(|a| a.contains(audience));
    let expires = claims.expires_at;
    let mut map = into_map(claims);
    let ours = if audience_claim == "aud" {
        in_aud
    } else {
        claim_contains(&map, audience_claim, audience)
    };
    if !ours {
        return Err(TokenError::WrongAudience);
    }
    if let Some(e) = expires {
        map.insert("exp".into(), Value::from(e));
    }
    Ok(map)
}

/// Validates an introspection answer signed as a JWT (RFC 9701): signature,
/// `iss`, `aud` naming this client, `iat`; returns its `token_introspection`
/// object.
#[cfg_attr(sesame_size, optimize(size))]
pub fn validate_introspection_jwt(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verify_signature(token, keys, exp)?;
    if claims.issuer.as_deref() != Some(exp.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let audiences = claims
        .audiences
        .as_ref()
        .ok_or(TokenError::MissingClaim("aud"))?;
    if !audiences.contains(exp.client_id) {
        return Err(TokenError::WrongAudience);
    }
    let issued = claims.issued_at.ok_or(TokenError::MissingClaim("iat"))?;
    if issued > exp.now.saturating_add(exp.leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    match into_map(claims).remove("token_introspection") {
        Some(Value::Object(answer)) => Ok(answer),
        _ => Err(TokenError::MissingClaim("token_introspection")),
    }
}

/// Validates a userinfo answer signed as a JWT (`application/jwt`): signature
/// against the provider's keys, `iss` and `aud` when present, `sub` equal to the
/// ID token's.
#[cfg_attr(sesame_size, optimize(size))]
pub fn validate_userinfo_jwt(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
    expected_sub: &str,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verify_signature(token, keys, exp)?;
    if claims.issuer.as_deref().is_some_and(|i| i != exp.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    if claims.audiences.is_some() {
        check_audience(&claims, exp.client_id)?;
    }
    if claims.subject.as_deref() != Some(expected_sub) {
        return Err(TokenError::SubjectMismatch);
    }
    Ok(into_map(claims))
}

/// Checks plain JSON userinfo: an object whose `sub` equals the ID token's.
#[cfg_attr(sesame_size, optimize(size))]
pub fn validate_userinfo_json(
    body: &[u8],
    expected_sub: &str,
) -> Result<Map<String, Value>, TokenError> {
    let map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| TokenError::Malformed)?;
    if map.get("sub").and_then(Value::as_str) != Some(expected_sub) {
        return Err(TokenError::SubjectMismatch);
    }
    Ok(map)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::b64url;
    use crate::core::oidc::keys::*;
    use jwt_simple::prelude::*;
    use serde_json::json;
    use std::sync::OnceLock;

    /// The claims of a test token, as jwt-simple signs them.
    pub type Claims = JWTClaims<Map<String, Value>>;

    pub const ISSUER: &str = "http://127.0.0.1:9000";
    pub const CLIENT: &str = "sesame";
    pub const NOW: u64 = 1_800_000_000;

    pub struct TestKeys {
        pub es: ES256KeyPair,
        pub rs: RS256KeyPair,
        pub ed: Ed25519KeyPair,
    }

    pub fn keys() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| TestKeys {
            es: ES256KeyPair::generate().with_key_id("ec-1"),
            rs: RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-1"),
            ed: Ed25519KeyPair::generate().with_key_id("ed-1"),
        })
    }

    /// A JWKS with the three test keys plus entries that must be skipped.
    pub fn test_jwks() -> Value {
        let k = keys();
        let ec = k.es.public_key().public_key().to_bytes_uncompressed();
        let rsa = k.rs.public_key().to_components();
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
             "x": b64url(&ec[1..33]), "y": b64url(&ec[33..65])},
            {"kty": "RSA", "kid": "rsa-1", "n": b64url(&rsa.n), "e": b64url(&rsa.e)},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
             "x": b64url(&k.ed.public_key().to_bytes())},
            {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": b64url(&rsa.n), "e": b64url(&rsa.e)},
            {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "XYZ", "kid": "future"},
            {"kty": "EC", "crv": "P-256", "kid": "broken", "x": "AAAA", "y": "AAAA"},
        ]})
    }

    pub fn key_set() -> KeySet {
        KeySet::parse(test_jwks().to_string().as_bytes()).unwrap()
    }

    pub fn algs() -> Vec<String> {
        crate::core::config::SUPPORTED_SIGNING_ALGS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    pub fn exp(algs: &[String]) -> Expectations<'_> {
        Expectations {
            issuer: ISSUER,
            client_id: CLIENT,
            allowed_algs: algs,
            now: NOW,
            leeway: 60,
        }
    }

    pub fn claims(extra: Value) -> Claims {
        let custom = extra.as_object().cloned().unwrap_or_default();
        let mut c = Claims {
            issued_at: Some(UnixTimeStamp::from_secs(NOW - 10)),
            expires_at: Some(UnixTimeStamp::from_secs(NOW + 3600)),
            invalid_before: None,
            issuer: Some(ISSUER.into()),
            subject: Some("alice-7f3a".into()),
            audiences: Some(Audiences::AsString(CLIENT.into())),
            jwt_id: None,
            nonce: Some("n".repeat(43)),
            custom,
        };
        c.custom.remove("__");
        c
    }

    pub fn es256(c: Claims) -> String {
        keys().es.sign(c).unwrap()
    }

    /// An access token: ES256 with `typ: at+jwt`.
    pub fn es256_at(c: Claims) -> String {
        let options = HeaderOptions {
            signature_type: Some("at+jwt".into()),
            ..Default::default()
        };
        keys().es.sign_with_options(c, &options).unwrap()
    }

    fn check(token: &str) -> Result<Map<String, Value>, TokenError> {
        let a = algs();
        validate_id_token(token, &key_set(), &exp(&a), &"n".repeat(43))
    }

    #[test]
    fn valid_tokens_of_each_key_type() {
        let c = claims(json!({"acr": "eidas1"}));
        let m = check(&es256(c.clone())).unwrap();
        assert_eq!(m["sub"], "alice-7f3a");
        assert_eq!(m["acr"], "eidas1");
        assert!(check(&keys().rs.sign(c.clone()).unwrap()).is_ok());
        assert!(check(&keys().ed.sign(c).unwrap()).is_ok());
    }

    #[test]
    fn claim_rules() {
        let mut c = claims(json!({}));
        c.issuer = Some("http://evil".into());
        assert_eq!(check(&es256(c)), Err(TokenError::WrongIssuer));
        let mut c = claims(json!({}));
        c.audiences = Some(Audiences::AsString("other".into()));
        assert_eq!(check(&es256(c)), Err(TokenError::WrongAudience));
        let mut c = claims(json!({}));
        c.audiences = Some(Audiences::AsSet(
            [CLIENT.to_string(), "other".into()].into(),
        ));
        assert_eq!(
            check(&es256(c.clone())),
            Err(TokenError::WrongAuthorizedParty)
        );
        c.custom.insert("azp".into(), json!("other"));
        assert_eq!(
            check(&es256(c.clone())),
            Err(TokenError::WrongAuthorizedParty)
        );
        c.custom.insert("azp".into(), json!(CLIENT));
        assert!(check(&es256(c)).is_ok());
        let mut c = claims(json!({}));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW - 120));
        assert_eq!(check(&es256(c)), Err(TokenError::Expired));
        let mut c = claims(json!({}));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW - 30));
        assert!(check(&es256(c)).is_ok(), "within leeway");
        let mut c = claims(json!({}));
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW + 3000));
        assert_eq!(check(&es256(c)), Err(TokenError::IssuedInFuture));
        let mut c = claims(json!({}));
        c.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 3000));
        assert_eq!(check(&es256(c)), Err(TokenError::NotYetValid));
        let mut c = claims(json!({}));
        c.nonce = Some("x".repeat(43));
        assert_eq!(check(&es256(c)), Err(TokenError::NonceMismatch));
        let mut c = claims(json!({}));
        c.nonce = None;
        assert_eq!(check(&es256(c)), Err(TokenError::NonceMismatch));
        let mut c = claims(json!({}));
        c.expires_at = None;
        assert_eq!(check(&es256(c)), Err(TokenError::MissingClaim("exp")));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let good = es256(claims(json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        // alg: none
        let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            check(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::AlgorithmNotAllowed("none".into()))
        );
        // HS256 keyed with the provider's public key.
        let rsa = keys().rs.public_key().to_components();
        let hs = HS256Key::from_bytes(&rsa.n).with_key_id("rsa-1");
        assert!(matches!(
            check(&hs.authenticate(claims(json!({}))).unwrap()),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
        // Payload swapped under a valid signature.
        let mut c = claims(json!({}));
        c.subject = Some("admin".into());
        let other = es256(c);
        let other_payload = other.split('.').nth(1).unwrap();
        assert_eq!(
            check(&format!("{}.{other_payload}.{}", parts[0], parts[2])),
            Err(TokenError::BadSignature)
        );
        // A key we do not know.
        let stranger = ES256KeyPair::generate().with_key_id("ec-9");
        assert_eq!(
            check(&stranger.sign(claims(json!({}))).unwrap()),
            Err(TokenError::UnknownKey(Some("ec-9".into())))
        );
        // Our kid, another key.
        let impostor = ES256KeyPair::generate().with_key_id("ec-1");
        assert_eq!(
            check(&impostor.sign(claims(json!({}))).unwrap()),
            Err(TokenError::BadSignature)
        );
        // No kid: matched by algorithm, but the signature still has to verify.
        let no_kid = ES256KeyPair::from_bytes(&keys().es.to_bytes()).unwrap();
        assert!(check(&no_kid.sign(claims(json!({}))).unwrap()).is_ok());
        let no_kid_stranger = ES256KeyPair::generate();
        assert_eq!(
            check(&no_kid_stranger.sign(claims(json!({}))).unwrap()),
            Err(TokenError::BadSignature)
        );
        // An algorithm outside the allow-list.
        let only_rs: Vec<String> = vec!["RS256".into()];
        assert!(matches!(
            validate_id_token(&good, &key_set(), &exp(&only_rs), &"n".repeat(43)),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
        for junk in ["", "a.b", "a.b.c", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(check(junk).is_err());
        }
    }

    #[test]
    fn userinfo_jwt_and_json() {
        let a = algs();
        let mut c = claims(json!({"email": "alice@numerique.gouv.fr"}));
        c.nonce = None;
        c.expires_at = None;
        let jwt = es256(c.clone());
        let m = validate_userinfo_jwt(&jwt, &key_set(), &exp(&a), "alice-7f3a").unwrap();
        assert_eq!(m["email"], "alice@numerique.gouv.fr");
        assert_eq!(
            validate_userinfo_jwt(&jwt, &key_set(), &exp(&a), "bob"),
            Err(TokenError::SubjectMismatch)
        );
        let stranger = ES256KeyPair::generate().with_key_id("ec-1");
        assert_eq!(
            validate_userinfo_jwt(
                &stranger.sign(c).unwrap(),
                &key_set(),
                &exp(&a),
                "alice-7f3a"
            ),
            Err(TokenError::BadSignature)
        );
        assert!(
            validate_userinfo_json(br#"{"sub":"alice-7f3a","email":"a@b.fr"}"#, "alice-7f3a")
                .is_ok()
        );
        assert_eq!(
            validate_userinfo_json(br#"{"sub":"bob"}"#, "alice-7f3a"),
            Err(TokenError::SubjectMismatch)
        );
        assert_eq!(
            validate_userinfo_json(b"[]", "alice-7f3a"),
            Err(TokenError::Malformed)
        );
    }

    // -----------------------------------------------------------------------
    // The JWS layer

    /// Signs the ASCII `header_b64.payload_b64` with the Ed25519 test key
    /// (`ed-1`), whatever the parts hold.
    fn sign_parts(header_b64: &str, payload_b64: &str) -> String {
        let pair = ed25519_compact::KeyPair::from_slice(&keys().ed.to_bytes()).unwrap();
        let signed = format!("{header_b64}.{payload_b64}");
        let signature = pair.sk.sign(signed.as_bytes(), None);
        format!("{signed}.{}", b64url(signature.as_ref()))
    }

    /// A token with this exact header and payload text, signed by `ed-1`.
    fn raw(header: &str, payload: &str) -> String {
        sign_parts(&b64url(header.as_bytes()), &b64url(payload.as_bytes()))
    }

    const ED_HEADER: &str = r#"{"alg":"EdDSA","kid":"ed-1"}"#;
    const AT_HEADER: &str = r#"{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt"}"#;

    /// The payload of a valid ID token, with `extra` members appended.
    fn payload(extra: &str) -> String {
        format!(
            r#"{{"iss":"{ISSUER}","aud":"{CLIENT}","sub":"alice-7f3a","nonce":"{}","iat":{},"exp":{}{extra}}}"#,
            "n".repeat(43),
            NOW - 10,
            NOW + 600
        )
    }

    /// The same base64url text with non-zero unused bits in its last
    /// character: a lenient decoder reads the same bytes.
    fn non_canonical(part: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        assert!(part.len() % 4 >= 2, "no unused bits in {part}");
        let last = part.as_bytes()[part.len() - 1];
        let index = ALPHABET.iter().position(|&c| c == last).unwrap();
        let twisted = ALPHABET[index | 1] as char;
        assert_ne!(twisted as u8, last);
        format!("{}{twisted}", &part[..part.len() - 1])
    }

    /// One byte of the decoded signature changed.
    fn flip_signature_byte(token: &str) -> String {
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let mut bytes = b64url_strict(sig).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        format!("{signed}.{}", b64url(&bytes))
    }

    /// A key set with one key of each type: RSA (any RS*/PS*), P-256, P-384,
    /// Ed25519.
    struct AllAlgs {
        es384: ES384KeyPair,
        set: KeySet,
    }

    fn all_algs() -> &'static AllAlgs {
        static ALL: OnceLock<AllAlgs> = OnceLock::new();
        ALL.get_or_init(|| {
            let k = keys();
            let es384 = ES384KeyPair::generate().with_key_id("ec384-1");
            let ec = k.es.public_key().public_key().to_bytes_uncompressed();
            let ec384 = es384.public_key().public_key().to_bytes_uncompressed();
            let rsa = k.rs.public_key().to_components();
            let jwks = json!({"keys": [
                {"kty": "RSA", "kid": "rsa-1", "n": b64url(&rsa.n), "e": b64url(&rsa.e)},
                {"kty": "EC", "crv": "P-256", "kid": "ec-1",
                 "x": b64url(&ec[1..33]), "y": b64url(&ec[33..65])},
                {"kty": "EC", "crv": "P-384", "kid": "ec384-1",
                 "x": b64url(&ec384[1..49]), "y": b64url(&ec384[49..97])},
                {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64url(&k.ed.public_key().to_bytes())},
            ]});
            let set = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
            assert_eq!(set.keys.len(), 4);
            AllAlgs { es384, set }
        })
    }

    /// A token for every supported algorithm, signed by jwt-simple.
    fn signed_by_each_alg() -> Vec<(&'static str, String)> {
        let k = keys();
        let der = k.rs.to_der().unwrap();
        let c = || claims(json!({"acr": "eidas1"}));
        vec![
            ("RS256", k.rs.sign(c()).unwrap()),
            (
                "RS384",
                RS384KeyPair::from_der(&der)
                    .unwrap()
                    .with_key_id("rsa-1")
                    .sign(c())
                    .unwrap(),
            ),
            (
                "RS512",
                RS512KeyPair::from_der(&der)
                    .unwrap()
                    .with_key_id("rsa-1")
                    .sign(c())
                    .unwrap(),
            ),
            (
                "PS256",
                PS256KeyPair::from_der(&der)
                    .unwrap()
                    .with_key_id("rsa-1")
                    .sign(c())
                    .unwrap(),
            ),
            (
                "PS384",
                PS384KeyPair::from_der(&der)
                    .unwrap()
                    .with_key_id("rsa-1")
                    .sign(c())
                    .unwrap(),
            ),
            (
                "PS512",
                PS512KeyPair::from_der(&der)
                    .unwrap()
                    .with_key_id("rsa-1")
                    .sign(c())
                    .unwrap(),
            ),
            ("ES256", k.es.sign(c()).unwrap()),
            ("ES384", all_algs().es384.sign(c()).unwrap()),
            ("EdDSA", k.ed.sign(c()).unwrap()),
        ]
    }

    fn check_all(token: &str) -> Result<Map<String, Value>, TokenError> {
        let a = algs();
        validate_id_token(token, &all_algs().set, &exp(&a), &"n".repeat(43))
    }

    #[test]
    fn every_algorithm_verifies_and_a_flipped_signature_byte_does_not() {
        for (alg, token) in signed_by_each_alg() {
            let header = json_object(token.split('.').next().unwrap()).unwrap();
            assert_eq!(header["alg"], alg);
            let claims = check_all(&token).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(claims["acr"], "eidas1", "{alg}");
            assert_eq!(
                check_all(&flip_signature_byte(&token)),
                Err(TokenError::BadSignature),
                "{alg}"
            );
            // Only this algorithm allowed: still fine; every other one: refused.
            let only: Vec<String> = vec![alg.into()];
            let e = exp(&only);
            let nonce = "n".repeat(43);
            assert!(validate_id_token(&token, &all_algs().set, &e, &nonce).is_ok());
            let others: Vec<String> = algs().into_iter().filter(|a| a != alg).collect();
            assert_eq!(
                validate_id_token(&token, &all_algs().set, &exp(&others), &nonce),
                Err(TokenError::AlgorithmNotAllowed(alg.into()))
            );
        }
    }

    #[test]
    fn pss_salt_is_as_long_as_the_hash() {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let der = keys().rs.to_der().unwrap();
        let private = rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der))
            .unwrap();
        let header = b64url(br#"{"alg":"PS256","kid":"rsa-1"}"#);
        let body = b64url(payload("").as_bytes());
        let signed = format!("{header}.{body}");
        let mut rng = crate::core::oidc::jwe::tests::TestRng(7);
        for (salt, expected) in [
            (32, Ok(())),
            (20, Err(TokenError::BadSignature)),
            (0, Err(TokenError::BadSignature)),
        ] {
            let key =
                rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(private.clone(), salt);
            let signature = key.sign_with_rng(&mut rng, signed.as_bytes()).to_vec();
            let token = format!("{signed}.{}", b64url(&signature));
            assert_eq!(
                check_all(&token).map(|_| ()),
                expected,
                "salt of {salt} bytes"
            );
        }
    }

    #[test]
    fn an_rsa_signature_plus_the_modulus_is_refused() {
        use rsa::traits::PublicKeyParts;
        use rsa::{Pkcs1v15Sign, Pss};
        use sha2::{Digest, Sha256};
        // A 2,050-bit modulus: s + n still fits in the signature's 257 bytes.
        let mut rng = crate::core::oidc::jwe::tests::TestRng(11);
        let private = rsa::RsaPrivateKey::new(&mut rng, 2050).unwrap();
        let n = private.n().to_bytes_be();
        let key = KeyMaterial::Rsa {
            n: n.clone(),
            e: private.e().to_bytes_be(),
        };
        let message = b"header.payload";
        let hashed = Sha256::digest(message);
        for (alg, signature) in [
            (
                "RS256",
                private
                    .sign(Pkcs1v15Sign::new::<Sha256>(), &hashed)
                    .unwrap(),
            ),
            (
                "PS256",
                private
                    .sign_with_rng(&mut rng, Pss::new::<Sha256>(), &hashed)
                    .unwrap(),
            ),
        ] {
            assert_eq!(signature.len(), n.len());
            assert!(signature_verifies(&key, alg, message, &signature), "{alg}");
            let plus = rsa::BigUint::from_bytes_be(&signature) + rsa::BigUint::from_bytes_be(&n);
            let mut plus = plus.to_bytes_be();
            while plus.len() < n.len() {
                plus.insert(0, 0);
            }
            assert_eq!(plus.len(), n.len());
            assert!(
                !signature_verifies(&key, alg, message, &plus),
                "{alg}: s + n"
            );
            assert!(!signature_verifies(&key, alg, message, &n), "{alg}: n");
        }
    }

    #[test]
    fn a_key_is_only_used_with_an_algorithm_of_its_type() {
        // An ES256 token naming the RSA key: that key is no candidate.
        let mut c = claims(json!({}));
        c.nonce = Some("n".repeat(43));
        let es = ES256KeyPair::from_bytes(&keys().es.to_bytes())
            .unwrap()
            .with_key_id("rsa-1");
        assert_eq!(
            check_all(&es.sign(c).unwrap()),
            Err(TokenError::UnknownKey(Some("rsa-1".into())))
        );
        // And the verifier itself refuses every mismatched pair, even with a
        // signature that is good for the key's own algorithm.
        let set = &all_algs().set;
        for (alg, token) in signed_by_each_alg() {
            let (signed, sig) = token.rsplit_once('.').unwrap();
            let sig = b64url_strict(sig).unwrap();
            for key in &set.keys {
                let fits = key.material.fits(alg);
                let own = signature_verifies(&key.material, alg, signed.as_bytes(), &sig);
                if !fits {
                    assert!(!own, "{alg} checked with {:?}", key.kid);
                }
                for other in SUPPORTED_OTHER_ALGS {
                    if !key.material.fits(other) {
                        assert!(!signature_verifies(
                            &key.material,
                            other,
                            signed.as_bytes(),
                            &sig
                        ));
                    }
                }
            }
        }
    }

    const SUPPORTED_OTHER_ALGS: &[&str] = &[
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "none",
        "HS256", "HS384", "HS512", "ES256K", "Ed25519", "",
    ];

    #[test]
    fn none_and_hmac_never_verify_even_if_allowed() {
        let loose: Vec<String> = ["none", "HS256", "HS512"].map(String::from).to_vec();
        let e = exp(&loose);
        let nonce = "n".repeat(43);
        let body = b64url(payload("").as_bytes());
        for kid in [r#","kid":"ed-1""#, r#","kid":"rsa-1""#, ""] {
            let none = format!(
                "{}.{body}.",
                b64url(format!(r#"{{"alg":"none"{kid}}}"#).as_bytes())
            );
            assert!(matches!(
                validate_id_token(&none, &all_algs().set, &e, &nonce),
                Err(TokenError::UnknownKey(_))
            ));
        }
        let rsa = keys().rs.public_key().to_components();
        let hs = HS256Key::from_bytes(&rsa.n).with_key_id("rsa-1");
        let token = hs.authenticate(claims(json!({}))).unwrap();
        assert!(matches!(
            validate_id_token(&token, &all_algs().set, &e, &nonce),
            Err(TokenError::UnknownKey(_))
        ));
        assert_eq!(
            check_all(&token),
            Err(TokenError::AlgorithmNotAllowed("HS256".into()))
        );
    }

    #[test]
    fn header_rules() {
        assert!(check_all(&raw(ED_HEADER, &payload(""))).is_ok());
        for header in [
            r#"{"alg":"EdDSA","kid":"ed-1","crit":["exp"],"exp":1}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","crit":[]}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","b64":false}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","b64":"false"}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","typ":"JOSE"}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","typ":7}"#,
            r#"{"alg":"EdDSA","kid":7}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","alg":"EdDSA"}"#,
            r#"{"alg":["EdDSA"],"kid":"ed-1"}"#,
            r#"{"kid":"ed-1"}"#,
            r#"["EdDSA"]"#,
            r#"{"alg":"EdDSA","kid":"ed-1"} "x""#,
        ] {
            assert_eq!(
                check_all(&raw(header, &payload(""))),
                Err(TokenError::Malformed),
                "{header}"
            );
        }
        for header in [
            r#"{"alg":"EdDSA","kid":"ed-1","b64":true}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","typ":"JWT"}"#,
            r#"{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt"}"#,
            r#"{"alg":"EdDSA","kid":null}"#,
            r#"{"alg":"EdDSA"}"#,
        ] {
            assert!(check_all(&raw(header, &payload(""))).is_ok(), "{header}");
        }
        // The allow-list comes first, even before the header rules.
        assert_eq!(
            check_all(&raw(r#"{"alg":"none","crit":["x"]}"#, &payload(""))),
            Err(TokenError::AlgorithmNotAllowed("none".into()))
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        for extra in [
            r#","sub":"admin""#,
            r#","\u0073ub":"admin""#,
            r#","acr":"eidas1","acr":"eidas3""#,
            r#","exp":1"#,
            r#","aud":"other""#,
            r#","address":{"country":"FR","country":"DE"}"#,
            r#","list":[{"a":1,"a":2}]"#,
        ] {
            assert_eq!(
                check_all(&raw(ED_HEADER, &payload(extra))),
                Err(TokenError::Malformed),
                "{extra}"
            );
        }
        assert_eq!(
            check_all(&raw(
                r#"{"alg":"EdDSA","kid":"ed-1","kid":"rsa-1"}"#,
                &payload("")
            )),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            check_all(&raw(
                r#"{"alg":"RS256","kid":"ed-1","alg":"EdDSA"}"#,
                &payload("")
            )),
            Err(TokenError::Malformed)
        );
        // The same members once each are fine.
        assert!(check_all(&raw(ED_HEADER, &payload(r#","address":{"country":"FR"}"#))).is_ok());
    }

    #[test]
    fn base64url_is_strict() {
        let header = b64url(ED_HEADER.as_bytes());
        // A payload whose encoding has unused bits.
        let mut text = payload("");
        while text.len().is_multiple_of(3) {
            text.push(' ');
        }
        let body = b64url(text.as_bytes());
        let good = sign_parts(&header, &body);
        assert!(check_all(&good).is_ok());
        let (signed, sig) = good.rsplit_once('.').unwrap();
        // The signature: padded, non-canonical, another alphabet, spaces.
        for bad in [
            format!("{sig}=="),
            non_canonical(sig),
            sig.replace('-', "+").replace('_', "/"),
            format!(" {sig}"),
        ] {
            if bad != sig {
                assert_eq!(
                    check_all(&format!("{signed}.{bad}")),
                    Err(TokenError::BadSignature),
                    "{bad}"
                );
            }
        }
        // Header and payload, signed as written: refused all the same.
        for (h, p) in [
            (format!("{header}=="), body.clone()),
            (non_canonical(&header), body.clone()),
            (header.clone(), format!("{body}=")),
            (header.clone(), non_canonical(&body)),
            (header.clone(), format!("{body}\n")),
        ] {
            assert_eq!(
                check_all(&sign_parts(&h, &p)),
                Err(TokenError::Malformed),
                "{h}.{p}"
            );
        }
    }

    #[test]
    fn ecdsa_signatures_are_raw_r_and_s() {
        for (alg, token) in signed_by_each_alg() {
            let (signed, sig) = token.rsplit_once('.').unwrap();
            let sig = b64url_strict(sig).unwrap();
            let size = match alg {
                "ES256" => 64,
                "ES384" => 96,
                _ => continue,
            };
            assert_eq!(sig.len(), size);
            let mut longer = sig.clone();
            longer.push(0);
            let mut padded = vec![0];
            padded.extend(&sig);
            for bad in [
                sig[..size - 1].to_vec(),
                longer,
                padded,
                [&sig[..], &sig[..]].concat(),
                vec![0; size],
                Vec::new(),
            ] {
                assert_eq!(
                    check_all(&format!("{signed}.{}", b64url(&bad))),
                    Err(TokenError::BadSignature),
                    "{alg} with {} bytes",
                    bad.len()
                );
            }
        }
        // A P-384 signature under an ES256 header, and the reverse.
        let tokens = signed_by_each_alg();
        let find = |alg: &str| tokens.iter().find(|(a, _)| *a == alg).unwrap().1.clone();
        let (es256, es384) = (find("ES256"), find("ES384"));
        let sig384 = es384.rsplit_once('.').unwrap().1;
        let signed256 = es256.rsplit_once('.').unwrap().0;
        assert_eq!(
            check_all(&format!("{signed256}.{sig384}")),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn framing_limits() {
        let good = raw(ED_HEADER, &payload(""));
        assert!(check_all(&good).is_ok());
        assert_eq!(check_all(&format!("{good}.")), Err(TokenError::Malformed));
        assert_eq!(check_all(&format!("{good}.x")), Err(TokenError::Malformed));
        let (first, rest) = good.split_once('.').unwrap();
        assert_eq!(
            check_all(&format!("{first}..{rest}")),
            Err(TokenError::Malformed)
        );
        // A header over 2048 encoded bytes, even a valid one.
        let big = format!(
            r#"{{"alg":"EdDSA","kid":"ed-1","x":"{}"}}"#,
            "a".repeat(1600)
        );
        assert!(b64url(big.as_bytes()).len() > MAX_HEADER_LEN);
        assert_eq!(
            check_all(&raw(&big, &payload(""))),
            Err(TokenError::Malformed)
        );
        let fits = format!(
            r#"{{"alg":"EdDSA","kid":"ed-1","x":"{}"}}"#,
            "a".repeat(1400)
        );
        assert!(b64url(fits.as_bytes()).len() <= MAX_HEADER_LEN);
        assert!(check_all(&raw(&fits, &payload(""))).is_ok());
        // A token over the limit, even a valid one.
        let padding = format!(r#","pad":"{}""#, "p".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            check_all(&raw(ED_HEADER, &payload(&padding))),
            Err(TokenError::Malformed)
        );
        // A payload that is not an object.
        for text in ["[]", "\"x\"", "", "{", "null"] {
            assert_eq!(
                check_all(&raw(ED_HEADER, text)),
                Err(TokenError::Malformed),
                "{text}"
            );
        }
    }

    #[test]
    fn registered_claims_are_typed() {
        let n = "n".repeat(43);
        let with = |iat: &str, exp: &str, extra: &str| {
            format!(
                r#"{{"iss":"{ISSUER}","aud":"{CLIENT}","sub":"alice-7f3a","nonce":"{n}","iat":{iat},"exp":{exp}{extra}}}"#
            )
        };
        let (iat, exp_at) = ((NOW - 10).to_string(), (NOW + 600).to_string());
        // NumericDate: integers or not.
        assert!(check_all(&raw(
            ED_HEADER,
            &with(&format!("{iat}.25"), &format!("{exp_at}.5"), "")
        ))
        .is_ok());
        assert!(check_all(&raw(ED_HEADER, &with(&format!("{iat}e0"), &exp_at, ""))).is_ok());
        for (i, e, extra) in [
            (iat.as_str(), format!("\"{exp_at}\""), ""),
            (iat.as_str(), "null".into(), ""),
            (iat.as_str(), "-1".into(), ""),
            (iat.as_str(), "-1.5".into(), ""),
            (iat.as_str(), "true".into(), ""),
            ("\"1\"", exp_at.clone(), ""),
            (iat.as_str(), exp_at.clone(), r#","nbf":"0""#),
            (iat.as_str(), exp_at.clone(), r#","nbf":null"#),
        ] {
            assert_eq!(
                check_all(&raw(ED_HEADER, &with(i, &e, extra))),
                Err(TokenError::Malformed),
                "{i} {e} {extra}"
            );
        }
        // Strings, and `aud` a string or a list of strings.
        for bad in [
            payload("").replace(r#""sub":"alice-7f3a""#, r#""sub":7"#),
            payload("").replace(&format!(r#""iss":"{ISSUER}""#), r#""iss":["x"]"#),
            payload("").replace(&format!(r#""aud":"{CLIENT}""#), r#""aud":7"#),
            payload("").replace(
                &format!(r#""aud":"{CLIENT}""#),
                &format!(r#""aud":["{CLIENT}",7]"#),
            ),
            payload("").replace(&format!(r#""aud":"{CLIENT}""#), r#""aud":null"#),
            payload(r#","jti":5"#),
            payload("").replace(r#""nonce":""#, r#""nonce":1,"x":""#),
        ] {
            assert_eq!(
                check_all(&raw(ED_HEADER, &bad)),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        let aud_list = payload("").replace(
            &format!(r#""aud":"{CLIENT}""#),
            &format!(r#""aud":["{CLIENT}"]"#),
        );
        assert!(check_all(&raw(ED_HEADER, &aud_list)).is_ok());
        // `null` strings count as absent, as before.
        let no_sub = payload("").replace(r#""sub":"alice-7f3a""#, r#""sub":null"#);
        assert_eq!(
            check_all(&raw(ED_HEADER, &no_sub)),
            Err(TokenError::MissingClaim("sub"))
        );
    }

    #[test]
    fn the_claims_map_leaves_out_what_only_the_checks_read() {
        let extra = r#","nbf":5,"jti":"j-1","acr":"eidas1","email":"a@b.fr""#;
        let m = check_all(&raw(ED_HEADER, &payload(extra))).unwrap();
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(names, ["acr", "email", "iss", "sub"]);
        // An access token keeps its expiry, as an integer.
        let a = algs();
        let mut e = exp(&a);
        e.client_id = "api";
        let access = format!(
            r#"{{"iss":"{ISSUER}","aud":"api","sub":"alice-7f3a","client_id":"app","iat":{},"exp":{}.9,"jti":"x","scope":"read"}}"#,
            NOW - 10,
            NOW + 600
        );
        let m = validate_access_token(
            &raw(AT_HEADER, &access),
            &all_algs().set,
            &e,
            "api",
            "aud",
            true,
        )
        .unwrap();
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(names, ["client_id", "exp", "iss", "scope", "sub"]);
        assert_eq!(m["exp"], json!(NOW + 600));
    }

    #[test]
    fn time_claims_of_every_signed_answer() {
        let a = algs();
        let e = exp(&a);
        let set = &all_algs().set;
        // Userinfo and introspection answers have no `check_times`, but the
        // time claims they carry still count.
        let userinfo = |extra: &str| {
            raw(
                ED_HEADER,
                &format!(r#"{{"sub":"alice-7f3a","email":"a@b.fr"{extra}}}"#),
            )
        };
        assert!(validate_userinfo_jwt(&userinfo(""), set, &e, "alice-7f3a").is_ok());
        for (extra, error) in [
            (format!(r#","exp":{}"#, NOW - 61), TokenError::Expired),
            (
                format!(r#","iat":{}"#, NOW + 61),
                TokenError::IssuedInFuture,
            ),
            (format!(r#","nbf":{}"#, NOW + 61), TokenError::NotYetValid),
        ] {
            assert_eq!(
                validate_userinfo_jwt(&userinfo(&extra), set, &e, "alice-7f3a"),
                Err(error)
            );
        }
        for extra in [
            format!(r#","exp":{}"#, NOW - 60),
            format!(r#","iat":{}"#, NOW + 60),
            format!(r#","nbf":{}"#, NOW + 60),
        ] {
            assert!(
                validate_userinfo_jwt(&userinfo(&extra), set, &e, "alice-7f3a").is_ok(),
                "{extra}"
            );
        }
        // ID tokens: `exp` needs more than the leeway left, as before.
        let at = |exp_at: u64| {
            let text = payload("").replace(
                &format!(r#""exp":{}"#, NOW + 600),
                &format!(r#""exp":{exp_at}"#),
            );
            check_all(&raw(ED_HEADER, &text))
        };
        assert!(at(NOW - 59).is_ok());
        assert_eq!(at(NOW - 60), Err(TokenError::Expired));
        // A time fault is reported as such without `kid`, whatever the keys' order.
        let text = payload("").replace(
            &format!(r#""exp":{}"#, NOW + 600),
            &format!(r#""exp":{}"#, NOW - 600),
        );
        assert_eq!(
            check_all(&raw(r#"{"alg":"EdDSA"}"#, &text)),
            Err(TokenError::Expired)
        );
        // A date past 2106 is not wrapped around.
        let far = payload("").replace(&format!(r#""exp":{}"#, NOW + 600), r#""exp":4294967400"#);
        assert!(check_all(&raw(ED_HEADER, &far)).is_ok());
    }

    #[test]
    fn key_policy() {
        let rsa = keys().rs.public_key().to_components();
        let key = |material| SigningKey {
            kid: None,
            alg: None,
            material,
        };
        let rsa_key = |n: Vec<u8>, e: Vec<u8>| key(KeyMaterial::Rsa { n, e });
        assert!(check_key_loads(&rsa_key(rsa.n.clone(), rsa.e.clone())));
        assert!(check_key_loads(&rsa_key(
            [&[0u8][..], &rsa.n].concat(),
            vec![0, 1, 0, 1]
        )));
        // Exponent 65537 only; an odd modulus of 2048 to 4096 bits.
        assert!(!check_key_loads(&rsa_key(rsa.n.clone(), vec![3])));
        assert!(!check_key_loads(&rsa_key(rsa.n.clone(), vec![1, 0, 0, 1])));
        let mut even = rsa.n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(!check_key_loads(&rsa_key(even, rsa.e.clone())));
        assert!(!check_key_loads(&rsa_key(
            rsa.n[1..].to_vec(),
            rsa.e.clone()
        )));
        let mut big = vec![0xffu8; 513];
        big[512] = 0xff;
        assert!(!check_key_loads(&rsa_key(big, rsa.e.clone())));
        assert!(check_key_loads(&rsa_key(vec![0xff; 512], rsa.e.clone())));
        // Curve points: on the curve, not the identity; Ed25519: not small order.
        let ec = keys().es.public_key().public_key().to_bytes_uncompressed();
        assert!(check_key_loads(&key(KeyMaterial::P256(ec.clone()))));
        let mut off = ec.clone();
        off[64] ^= 1;
        assert!(!check_key_loads(&key(KeyMaterial::P256(off))));
        assert!(!check_key_loads(&key(KeyMaterial::P384(ec.clone()))));
        // The origin (not on the curve), a compressed point, short or long
        // points.
        let mut origin = vec![0u8; 65];
        origin[0] = 4;
        assert!(!check_key_loads(&key(KeyMaterial::P256(origin))));
        let mut compressed = vec![2 + (ec[64] & 1)];
        compressed.extend_from_slice(&ec[1..33]);
        assert!(!check_key_loads(&key(KeyMaterial::P256(compressed))));
        // (0, √b) is on P-256; the same point with x written as p is not
        // accepted.
        let d = |text| crate::core::b64url_decode(text).unwrap();
        let root_b = d("ZkhceA4vg9ckM71dhKBrtlQcKvMdrocXKL-FahdPk_Q");
        let on_axis = [&[4u8][..], &[0; 32], &root_b].concat();
        assert!(check_key_loads(&key(KeyMaterial::P256(on_axis))));
        let prime = d("_____wAAAAEAAAAAAAAAAAAAAAD_______________8");
        let past = [&[4u8][..], &prime, &root_b].concat();
        assert!(!check_key_loads(&key(KeyMaterial::P256(past))));
        assert!(!check_key_loads(&key(KeyMaterial::P256(ec[..64].to_vec()))));
        assert!(!check_key_loads(&key(KeyMaterial::P256(
            [&ec[..], &[0]].concat()
        ))));
        let ec384 = all_algs()
            .es384
            .public_key()
            .public_key()
            .to_bytes_uncompressed();
        assert!(check_key_loads(&key(KeyMaterial::P384(ec384.clone()))));
        let mut off384 = ec384;
        off384[96] ^= 1;
        assert!(!check_key_loads(&key(KeyMaterial::P384(off384))));
        let ed = keys().ed.public_key().to_bytes();
        assert!(check_key_loads(&key(KeyMaterial::Ed25519(ed))));
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        assert!(!check_key_loads(&key(KeyMaterial::Ed25519(identity))));
    }
}
