//! The provider's signing keys: the JWK set, read key by key (a key of an
//! unknown type, for encryption, or malformed is skipped, never spoils the
//! set), and the signature primitives each kind of key checks, all from
//! RustCrypto and ed25519-compact: RSASSA-PKCS1-v1_5 and RSASSA-PSS from
//! `rsa`, ECDSA over P-256 and P-384 (raw `r || s`) from `p256`/`p384`,
//! Ed25519 from `ed25519-compact`. A key only ever checks an algorithm of its
//! own type.

use crate::core::text_field;

use crate::core::{b64url_decode, json_error};

/// RSA moduli accepted, in bits.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Public key material, by key type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 uncompressed point (0x04 || x || y).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl KeyMaterial {
    /// Whether this key can check a signature made with `alg`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn fits(&self, alg: &str) -> bool {
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa { .. },
                "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
            ) | (KeyMaterial::P256(_), "ES256")
                | (KeyMaterial::P384(_), "ES384")
                | (KeyMaterial::Ed25519(_), "EdDSA")
        )
    }
}

/// One signing key from the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: Option<String>,
    /// The `alg` the key is restricted to, when the JWKS says so.
    pub alg: Option<String>,
    pub material: KeyMaterial,
}

/// The provider's signature keys. Keys for encryption (`use: enc`), of unknown
/// types, or malformed, are skipped one by one; they never spoil the set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<SigningKey>,
    /// How many entries were skipped, for the logs.
    pub skipped: usize,
}

#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn coordinate(v: Option<&str>, len: usize) -> Option<Vec<u8>> {
    let bytes = b64url_decode(v?)?;
    (bytes.len() == len).then_some(bytes)
}

/// A signing key from one JWK; `None` for anything that is not a usable
/// public signing key (a member of another type than the JWK's counts as
/// unusable).
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn parse_jwk(value: &serde_json::Value) -> Option<SigningKey> {
    let raw = value.as_object()?;
    let field = |name: &str| text_field(raw, name).ok();
    let (kty, kid, alg) = (field("kty")?, field("kid")?, field("alg")?);
    let (crv, x, y) = (field("crv")?, field("x")?, field("y")?);
    if field("use")?.is_some_and(|u| u != "sig") {
        return None;
    }
    match raw.get("key_ops") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(ops)) => {
            if ops.iter().any(|o| !o.is_string()) || !ops.iter().any(|o| o == "verify") {
                return None;
            }
        }
        Some(_) => return None,
    }
    if alg.is_some_and(|a| a.starts_with("HS") || a == "none") {
        return None;
    }
    let material = match (kty?, crv) {
        ("RSA", _) => {
            let n = b64url_decode(field("n")??)?;
            let e = b64url_decode(field("e")??)?;
            if n.len() < 256 || e.is_empty() {
                // RSA keys under 2048 bits are refused.
                return None;
            }
            KeyMaterial::Rsa { n, e }
        }
        ("EC", Some("P-256")) => {
            let mut point = vec![4u8];
            point.extend(coordinate(x, 32)?);
            point.extend(coordinate(y, 32)?);
            KeyMaterial::P256(point)
        }
        ("EC", Some("P-384")) => {
            let mut point = vec![4u8];
            point.extend(coordinate(x, 48)?);
            point.extend(coordinate(y, 48)?);
            KeyMaterial::P384(point)
        }
        ("OKP", Some("Ed25519")) => KeyMaterial::Ed25519(coordinate(x, 32)?),
        _ => return None,
    };
    if let Some(alg) = alg {
        if !material.fits(alg) {
            return None;
        }
    }
    let key = SigningKey {
        kid: kid.map(str::to_string),
        alg: alg.map(str::to_string),
        material,
    };
    // Reject material the verifier cannot load, now rather than at login.
    check_key_loads(&key).then_some(key)
}

impl KeySet {
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| format!("not a JWK set: {}", json_error(&e)))?;
        let Some(serde_json::Value::Array(entries)) = raw.get("keys") else {
            return Err("not a JWK set: `keys` is not a list".into());
        };
        let total = entries.len();
        let keys: Vec<SigningKey> = entries.iter().filter_map(parse_jwk).collect();
        let skipped = total - keys.len();
        if keys.is_empty() {
            return Err(format!("no usable signing key among {total}"));
        }
        Ok(KeySet { keys, skipped })
    }

    /// The keys that may have signed a token with this header.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn candidates<'a>(
        &'a self,
        alg: &'a str,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a SigningKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.material.fits(alg)
                && k.alg.as_deref().is_none_or(|a| a == alg)
                && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
        })
    }
}

/// The RSA public key, if it meets the policy: a 2048 to 4096-bit odd modulus
/// and the exponent 65537.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Option<rsa::RsaPublicKey> {
    let odd = n.last().is_some_and(|low| low & 1 == 1);
    let n = rsa::BigUint::from_bytes_be(n);
    let e = rsa::BigUint::from_bytes_be(e);
    if !odd || !RSA_MODULUS_BITS.contains(&n.bits()) || e != rsa::BigUint::from(65_537u32) {
        return None;
    }
    rsa::RsaPublicKey::new(n, e).ok()
}

#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn ed25519_public_key(x: &[u8]) -> Option<ed25519_compact::PublicKey> {
    let key = ed25519_compact::PublicKey::from_slice(x).ok()?;
    // Refuses small-order and non-canonical points.
    key.validate().ok()?;
    Some(key)
}

/// An ECDSA check over a prehashed message, once the curve's key and
/// signature are parsed (either failing to parse is a failed check).
#[cfg_attr(sesame_size, optimize(size))]
#[cfg_attr(feature = "native-crypto", allow(dead_code))]
pub(crate) fn ecdsa_verifies<K, S>(key: Option<K>, signature: Option<S>, prehash: &[u8]) -> bool
where
    K: p256::ecdsa::signature::hazmat::PrehashVerifier<S>,
{
    match (key, signature) {
        (Some(key), Some(signature)) => key.verify_prehash(prehash, &signature).is_ok(),
        _ => false,
    }
}

/// `x` and `y` of an uncompressed SEC1 point (`04 || x || y`, as a JWK's
/// key is kept), each `size` bytes.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn coordinates(sec1: &[u8], size: usize) -> Option<(&[u8], &[u8])> {
    let xy = sec1.strip_prefix(&[4])?;
    (xy.len() == 2 * size).then(|| xy.split_at(size))
}

/// A P-256 public key from its coordinates, refused unless the point is on
/// the curve and not the identity (invalid-curve attacks). From the
/// coordinates rather than through the SEC1 parser, which would bring point
/// decompression into the module (about 18 KB) for encodings a JWK never has.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn p256_public_key(x: &[u8], y: &[u8]) -> Option<p256::PublicKey> {
    use p256::elliptic_curve::point::AffineCoordinates as _;
    let point = p256::AffinePoint::from_coordinates(&x.try_into().ok()?, &y.try_into().ok()?);
    p256::PublicKey::from_affine(Option::from(point)?).ok()
}

/// A P-384 public key, as [`p256_public_key`].
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn p384_public_key(x: &[u8], y: &[u8]) -> Option<p384::PublicKey> {
    use p384::elliptic_curve::point::AffineCoordinates as _;
    let point = p384::AffinePoint::from_coordinates(&x.try_into().ok()?, &y.try_into().ok()?);
    p384::PublicKey::from_affine(Option::from(point)?).ok()
}

/// The ECDSA verifying key of a P-256 key's SEC1 point.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn p256_verifying_key(sec1: &[u8]) -> Option<p256::ecdsa::VerifyingKey> {
    let (x, y) = coordinates(sec1, 32)?;
    p256_public_key(x, y).map(Into::into)
}

/// The ECDSA verifying key of a P-384 key's SEC1 point.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn p384_verifying_key(sec1: &[u8]) -> Option<p384::ecdsa::VerifyingKey> {
    let (x, y) = coordinates(sec1, 48)?;
    p384_public_key(x, y).map(Into::into)
}

/// Checks that the verifier can load this key material.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn check_key_loads(key: &SigningKey) -> bool {
    match &key.material {
        KeyMaterial::Rsa { n, e } => rsa_public_key(n, e).is_some(),
        KeyMaterial::P256(p) => p256_verifying_key(p).is_some(),
        KeyMaterial::P384(p) => p384_verifying_key(p).is_some(),
        KeyMaterial::Ed25519(x) => ed25519_public_key(x).is_some(),
    }
}

/// The SHA-2 digest of `message` with `bits` (`"256"`, `"384"` or `"512"`).
/// One function for every algorithm that hashes the message: each hash's
/// code once in the module rather than at each call.
#[inline(never)]
fn digest(bits: &str, message: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Digest as _, Sha256, Sha384, Sha512};
    Some(match bits {
        "256" => Sha256::digest(message).to_vec(),
        "384" => Sha384::digest(message).to_vec(),
        "512" => Sha512::digest(message).to_vec(),
        _ => return None,
    })
}

/// ECDSA checks of a JWS signature (`r || s`) by an uncompressed SEC1
/// point: with `p256`/`p384`, or with `ring` in the native build
/// (`native-crypto`), whose assembly is several times faster.
mod ecdsa {
    use super::{digest, ecdsa_verifies, p256_verifying_key, p384_verifying_key};

    /// `p256`'s check.
    #[cfg_attr(feature = "native-crypto", allow(dead_code))]
    pub(super) fn rust_p256(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
        ecdsa_verifies(
            p256_verifying_key(point),
            p256::ecdsa::Signature::from_slice(signature).ok(),
            &digest("256", message).unwrap_or_default(),
        )
    }

    /// `p384`'s check.
    #[cfg_attr(feature = "native-crypto", allow(dead_code))]
    pub(super) fn rust_p384(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
        ecdsa_verifies(
            p384_verifying_key(point),
            p384::ecdsa::Signature::from_slice(signature).ok(),
            &digest("384", message).unwrap_or_default(),
        )
    }

    /// `ring`'s check (which also checks that the point is on the curve).
    #[cfg(feature = "native-crypto")]
    pub(super) fn ring(
        alg: &'static ring::signature::EcdsaVerificationAlgorithm,
        point: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        ring::signature::UnparsedPublicKey::new(alg, point)
            .verify(message, signature)
            .is_ok()
    }

    #[cfg(feature = "native-crypto")]
    pub(super) fn p256(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
        ring(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            point,
            message,
            signature,
        )
    }

    #[cfg(feature = "native-crypto")]
    pub(super) fn p384(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
        ring(
            &ring::signature::ECDSA_P384_SHA384_FIXED,
            point,
            message,
            signature,
        )
    }

    #[cfg(not(feature = "native-crypto"))]
    pub(super) use {rust_p256 as p256, rust_p384 as p384};
}

/// Whether `signature` is `alg`'s signature of `message` by `key`. A key is
/// only ever used with an algorithm of its own type.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn signature_verifies(
    key: &KeyMaterial,
    alg: &str,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use rsa::{Pkcs1v15Sign, Pss};
    use sha2::{Sha256, Sha384, Sha512};

    match (key, alg) {
        (KeyMaterial::Rsa { n, e }, _) => {
            let Some(public) = rsa_public_key(n, e) else {
                return false;
            };
            // The padding checks (PKCS#1 v1.5 DigestInfo; PSS with a salt as
            // long as the hash) are the `rsa` crate's, one code for every
            // hash (the digest is a value, not a type parameter).
            // The signature must be below the modulus: `rsa` checks it for
            // PKCS#1 v1.5, not for PSS with a runtime digest, and `s + n`
            // would otherwise pass as a second encoding of `s`.
            let modulus = rsa::traits::PublicKeyParts::n(&public).to_bytes_be();
            if signature.len() != modulus.len() || signature >= modulus.as_slice() {
                return false;
            }
            // One digest per hash, whichever the padding.
            let Some(hashed) = alg.get(2..).and_then(|bits| digest(bits, message)) else {
                return false;
            };
            let checked = match alg {
                "RS256" => public.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, signature),
                "RS384" => public.verify(Pkcs1v15Sign::new::<Sha384>(), &hashed, signature),
                "RS512" => public.verify(Pkcs1v15Sign::new::<Sha512>(), &hashed, signature),
                "PS256" => public.verify(Pss::new::<Sha256>(), &hashed, signature),
                "PS384" => public.verify(Pss::new::<Sha384>(), &hashed, signature),
                "PS512" => public.verify(Pss::new::<Sha512>(), &hashed, signature),
                _ => return false,
            };
            checked.is_ok()
        }
        // JWS carries `r || s` (RFC 7518 §3.4), never DER.
        (KeyMaterial::P256(point), "ES256") => {
            signature.len() == 64 && ecdsa::p256(point, message, signature)
        }
        (KeyMaterial::P384(point), "ES384") => {
            signature.len() == 96 && ecdsa::p384(point, message, signature)
        }
        (KeyMaterial::Ed25519(x), "EdDSA") => {
            match (
                ed25519_public_key(x),
                ed25519_compact::Signature::from_slice(signature),
            ) {
                (Some(key), Ok(sig)) => key.verify(message, &sig).is_ok(),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The two ECDSA checks agree: `make unit` runs the whole suite with each
/// (`cargo test` and `cargo test --features native-crypto`), and this
/// compares them on the same signatures, good and bad.
#[cfg(all(test, feature = "native-crypto"))]
mod ecdsa_agreement {
    use super::ecdsa;
    use crate::core::{Entropy, OsEntropy};

    /// A random scalar (below the curve's order but with a negligible
    /// chance: the top byte is cleared).
    fn secret(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        OsEntropy.fill(&mut bytes);
        bytes[0] &= 0x7f;
        bytes[len - 1] |= 1;
        bytes
    }

    /// What each check says of a signature: both the same, returned.
    fn both(which: &str, point: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (rust, ring) = match which {
            "P-256" => (
                ecdsa::rust_p256(point, message, signature),
                ecdsa::ring(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    point,
                    message,
                    signature,
                ),
            ),
            _ => (
                ecdsa::rust_p384(point, message, signature),
                ecdsa::ring(
                    &ring::signature::ECDSA_P384_SHA384_FIXED,
                    point,
                    message,
                    signature,
                ),
            ),
        };
        assert_eq!(
            rust, ring,
            "{which}: the checks disagree on {signature:02x?}"
        );
        rust
    }

    /// Good and damaged signatures of random messages: the good ones pass
    /// both, every damage fails both.
    fn agree(which: &str, sign: impl Fn(&[u8]) -> (Vec<u8>, Vec<u8>)) {
        for round in 0..40u8 {
            let mut message = vec![0u8; 20 + usize::from(round)];
            OsEntropy.fill(&mut message);
            let (point, signature) = sign(&message);
            assert!(both(which, &point, &message, &signature));
            let mut other = message.clone();
            other[0] ^= 1;
            assert!(!both(which, &point, &other, &signature));
            for at in [
                0,
                signature.len() / 2 - 1,
                signature.len() / 2,
                signature.len() - 1,
            ] {
                let mut bad = signature.clone();
                bad[at] ^= 0x40;
                assert!(!both(which, &point, &message, &bad));
            }
            let zero = vec![0u8; signature.len()];
            assert!(!both(which, &point, &message, &zero));
            let mut off_curve = point.clone();
            let last = off_curve.len() - 1;
            off_curve[last] ^= 1;
            assert!(!both(which, &off_curve, &message, &signature));
        }
    }

    #[test]
    fn p256_and_ring_agree() {
        use p256::ecdsa::signature::Signer;
        use p256::elliptic_curve::sec1::ToSec1Point;
        let key = p256::ecdsa::SigningKey::from_slice(&secret(32)).expect("a P-256 key");
        let point = key
            .verifying_key()
            .as_affine()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        agree("P-256", |m| {
            let s: p256::ecdsa::Signature = key.sign(m);
            (point.clone(), s.to_bytes().to_vec())
        });
    }

    #[test]
    fn p384_and_ring_agree() {
        use p384::ecdsa::signature::Signer;
        use p384::elliptic_curve::sec1::ToSec1Point;
        let key = p384::ecdsa::SigningKey::from_slice(&secret(48)).expect("a P-384 key");
        let point = key
            .verifying_key()
            .as_affine()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        agree("P-384", |m| {
            let s: p384::ecdsa::Signature = key.sign(m);
            (point.clone(), s.to_bytes().to_vec())
        });
    }
}
