//! ID token and signed userinfo validation.
//!
//! Signatures are checked with `jwt-simple` (pure Rust) against the provider's
//! keys, with an algorithm allow-list; only asymmetric algorithms exist here, so
//! neither `none` nor an HMAC keyed with a public key can ever verify. The
//! OpenID Connect claim rules (`iss`, `aud`, `azp`, `exp`, `iat`, `nbf`, `nonce`)
//! are then checked explicitly.

use std::collections::HashSet;

use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde_json::{Map, Value};

use super::constant_time_eq;
use super::provider::{KeyMaterial, KeySet, SigningKey};

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
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

/// Checks that the verifier can load this key material.
pub(crate) fn check_key_loads(key: &SigningKey) -> bool {
    match &key.material {
        KeyMaterial::Rsa { n, e } => RS256PublicKey::from_components(n, e).is_ok(),
        KeyMaterial::P256(p) => ES256PublicKey::from_bytes(p).is_ok(),
        KeyMaterial::P384(p) => ES384PublicKey::from_bytes(p).is_ok(),
        KeyMaterial::Ed25519(x) => Ed25519PublicKey::from_bytes(x).is_ok(),
    }
}

type Claims = JWTClaims<Map<String, Value>>;

fn verify_with(
    key: &SigningKey,
    alg: &str,
    token: &str,
    opts: &VerificationOptions,
) -> Result<Claims, jwt_simple::Error> {
    let opts = Some(opts.clone());
    match (&key.material, alg) {
        (KeyMaterial::Rsa { n, e }, "RS256") => {
            RS256PublicKey::from_components(n, e)?.verify_token(token, opts)
        }
        (KeyMaterial::Rsa { n, e }, "RS384") => {
            RS384PublicKey::from_components(n, e)?.verify_token(token, opts)
        }
        (KeyMaterial::Rsa { n, e }, "RS512") => {
            RS512PublicKey::from_components(n, e)?.verify_token(token, opts)
        }
        (KeyMaterial::Rsa { n, e }, "PS256") => {
            PS256PublicKey::from_components(n, e)?.verify_token(token, opts)
        }
        (KeyMaterial::Rsa { n, e }, "PS384") => {
            PS384PublicKey::from_components(n, e)?.verify_token(token, opts)
        }
        (KeyMaterial::Rsa { n, e }, "PS512") => {
            PS512PublicKey::from_components(n, e)?.verify_token(token, opts)
        }
        (KeyMaterial::P256(p), "ES256") => ES256PublicKey::from_bytes(p)?.verify_token(token, opts),
        (KeyMaterial::P384(p), "ES384") => ES384PublicKey::from_bytes(p)?.verify_token(token, opts),
        (KeyMaterial::Ed25519(x), "EdDSA") => {
            Ed25519PublicKey::from_bytes(x)?.verify_token(token, opts)
        }
        _ => Err(jwt_simple::Error::msg("key does not fit the algorithm")),
    }
}

/// Checks the signature with the provider's keys and returns the claims. Time
/// claims are checked too (by the verifier, then again below).
fn verify_signature(token: &str, keys: &KeySet, exp: &Expectations) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
        return Err(TokenError::Malformed);
    }
    let meta = Token::decode_metadata(token).map_err(|_| TokenError::Malformed)?;
    let alg = meta.algorithm().to_string();
    if !exp.allowed_algs.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed(alg));
    }
    let kid = meta.key_id();
    let candidates: Vec<&SigningKey> = keys.candidates(&alg, kid).take(MAX_KEYS_TRIED).collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey(kid.map(str::to_string)));
    }
    let opts = VerificationOptions {
        artificial_time: Some(UnixTimeStamp::from_secs(exp.now)),
        time_tolerance: Some(Duration::from_secs(exp.leeway)),
        accept_future: false,
        max_token_length: Some(MAX_TOKEN_LEN),
        max_header_length: Some(2048),
        ..Default::default()
    };
    let mut last = TokenError::BadSignature;
    for key in candidates {
        match verify_with(key, &alg, token, &opts) {
            Ok(claims) => return Ok(claims),
            Err(e) => last = classify(&e),
        }
    }
    Err(last)
}

fn classify(e: &jwt_simple::Error) -> TokenError {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => TokenError::Expired,
        Some(JWTError::TokenNotValidYet) => TokenError::NotYetValid,
        Some(JWTError::ClockDrift) => TokenError::IssuedInFuture,
        _ => TokenError::BadSignature,
    }
}

fn check_audience(claims: &Claims, client_id: &str) -> Result<(), TokenError> {
    let audiences: HashSet<String> = match &claims.audiences {
        Some(a) => a.clone().into_set(),
        None => return Err(TokenError::MissingClaim("aud")),
    };
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

fn check_times(claims: &Claims, exp: &Expectations) -> Result<(), TokenError> {
    let now = exp.now;
    let expires = claims
        .expires_at
        .ok_or(TokenError::MissingClaim("exp"))?
        .as_secs();
    if now >= expires.saturating_add(exp.leeway) {
        return Err(TokenError::Expired);
    }
    let issued = claims
        .issued_at
        .ok_or(TokenError::MissingClaim("iat"))?
        .as_secs();
    if issued > now.saturating_add(exp.leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if let Some(nbf) = claims.invalid_before {
        if nbf.as_secs() > now.saturating_add(exp.leeway) {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}

/// All the claims of a verified token as one JSON object (registered claims
/// included), for the session and the access rules.
fn into_map(claims: Claims) -> Map<String, Value> {
    let mut map = claims.custom;
    if let Some(sub) = claims.subject {
        map.insert("sub".into(), Value::String(sub));
    }
    if let Some(iss) = claims.issuer {
        map.insert("iss".into(), Value::String(iss));
    }
    map
}

/// The checks every ID token passes: signature, `iss`, `aud`/`azp`, times.
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
pub fn validate_access_token(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
    audience: &str,
    audience_claim: &str,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verify_signature(token, keys, exp)?;
    if claims.issuer.as_deref() != Some(exp.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    check_times(&claims, exp)?;
    if claims.nonce.is_some() {
        return Err(TokenError::NotAnAccessToken);
    }
    let in_aud = claims
        .audiences
        .clone()
        .is_some_and(|a| a.into_set().contains(audience));
    let expires = claims.expires_at.map(|e| e.as_secs());
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
pub fn validate_introspection_jwt(
    token: &str,
    keys: &KeySet,
    exp: &Expectations,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verify_signature(token, keys, exp)?;
    if claims.issuer.as_deref() != Some(exp.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let audiences: HashSet<String> = match &claims.audiences {
        Some(a) => a.clone().into_set(),
        None => return Err(TokenError::MissingClaim("aud")),
    };
    if !audiences.contains(exp.client_id) {
        return Err(TokenError::WrongAudience);
    }
    let issued = claims
        .issued_at
        .ok_or(TokenError::MissingClaim("iat"))?
        .as_secs();
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
    use serde_json::json;
    use std::sync::OnceLock;

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
}
