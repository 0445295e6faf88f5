//! Decryption of JWE compact serialisation (RFC 7516), for introspection
//! answers the provider encrypts to this resource server (RFC 9701 §5).
//!
//! Key management `RSA-OAEP-256`, `RSA-OAEP` or `ECDH-ES` (P-256, direct key
//! agreement with the Concat KDF of RFC 7518 §4.6.2), content encryption
//! `A256GCM`. Every primitive comes from a RustCrypto crate; this module only
//! parses and wires them. Any other algorithm is refused.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use p256::elliptic_curve::sec1::ToSec1Point;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, RsaPrivateKey};
use serde_json::{json, Map, Value};

use crate::core::oidc::keys::p256_public_key;
use crate::core::{b64url, b64url_decode};

/// Largest JWE accepted.
const MAX_JWE_LEN: usize = 64 * 1024;

#[derive(Clone)]
enum Secret {
    Rsa(Box<RsaPrivateKey>),
    Ec(p256::SecretKey),
}

/// The resource server's own key pair: decrypts what the provider encrypts
/// to it, and publishes its public half (`jwks_path`).
#[derive(Clone)]
pub struct ResourceKey {
    pub kid: Option<String>,
    /// `RSA-OAEP-256`, `RSA-OAEP` or `ECDH-ES`.
    pub alg: String,
    secret: Secret,
    /// The public JWK, as served.
    pub public_jwk: Value,
}

impl fmt::Debug for ResourceKey {
    #[cfg_attr(sesame_size, optimize(size))]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("ResourceKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The `x` and `y` coordinates of a P-256 public key.
#[cfg_attr(sesame_size, optimize(size))]
fn coordinates(key: &p256::PublicKey) -> (Vec<u8>, Vec<u8>) {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    // Uncompressed SEC1: 0x04 || x || y.
    (bytes[1..33].to_vec(), bytes[33..65].to_vec())
}

#[cfg_attr(sesame_size, optimize(size))]
fn part(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(b64url_decode)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("`{name}` is missing or not base64url"))
}

/// What `rsa` found wrong with a private key's parts, in our words: its own
/// messages would bring the error texts of the DER and PKCS crates into the
/// module (about 3 KB).
#[cfg_attr(sesame_size, optimize(size))]
fn rsa_key_fault(e: &rsa::Error) -> &'static str {
    match e {
        rsa::Error::InvalidPrime => "`p` or `q` is not above 1",
        rsa::Error::InvalidModulus => "`n` is not `p` × `q`, or is even, or is not above `e`",
        rsa::Error::InvalidExponent => "`d` is not the inverse of `e`, or `e` is even",
        rsa::Error::ModulusTooLarge => "`n` is too large",
        rsa::Error::PublicExponentTooSmall | rsa::Error::PublicExponentTooLarge => {
            "`e` is out of range"
        }
        _ => "its parts do not agree",
    }
}

impl ResourceKey {
    /// Reads a private JWK (`kty` RSA with `n e d p q`, or EC P-256 with
    /// `x y d`) and its `alg`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn from_jwk(jwk: &Value) -> Result<ResourceKey, String> {
        let jwk = jwk.as_object().ok_or("must be a JWK object")?;
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        let alg = jwk.get("alg").and_then(Value::as_str).unwrap_or("");
        let (secret, mut public) = match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                if alg != "RSA-OAEP-256" && alg != "RSA-OAEP" {
                    return Err(format!(
                        "`alg` must be RSA-OAEP-256 or RSA-OAEP for an RSA key, not {alg:?}"
                    ));
                }
                let n = BigUint::from_bytes_be(&part(jwk, "n")?);
                let e = BigUint::from_bytes_be(&part(jwk, "e")?);
                let d = BigUint::from_bytes_be(&part(jwk, "d")?);
                let primes = vec![
                    BigUint::from_bytes_be(&part(jwk, "p")?),
                    BigUint::from_bytes_be(&part(jwk, "q")?),
                ];
                // `from_components` validates the key (`RsaPrivateKey::validate`).
                let key = RsaPrivateKey::from_components(n, e, d, primes)
                    .map_err(|e| format!("not a valid RSA private key: {}", rsa_key_fault(&e)))?;
                if key.size() < 256 {
                    return Err("an RSA key must have at least 2048 bits".into());
                }
                let public = json!({
                    "kty": "RSA",
                    "n": b64url(&key.n().to_bytes_be()),
                    "e": b64url(&key.e().to_bytes_be()),
                });
                (Secret::Rsa(Box::new(key)), public)
            }
            Some("EC") => {
                if alg != "ECDH-ES" {
                    return Err(format!("`alg` must be ECDH-ES for an EC key, not {alg:?}"));
                }
                if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                    return Err("only the P-256 curve is supported".into());
                }
                let secret = p256::SecretKey::from_slice(&part(jwk, "d")?)
                    .map_err(|_| "`d` is not a P-256 private key")?;
                let (x, y) = coordinates(&secret.public_key());
                if part(jwk, "x")? != x || part(jwk, "y")? != y {
                    return Err("`x` and `y` are not the public key of `d`".into());
                }
                let public = json!({"kty": "EC", "crv": "P-256", "x": b64url(&x), "y": b64url(&y)});
                (Secret::Ec(secret), public)
            }
            _ => return Err("`kty` must be RSA or EC".into()),
        };
        if let Some(p) = public.as_object_mut() {
            p.insert("use".into(), json!("enc"));
            p.insert("alg".into(), json!(alg));
            if let Some(kid) = &kid {
                p.insert("kid".into(), json!(kid));
            }
        }
        Ok(ResourceKey {
            kid,
            alg: alg.to_string(),
            secret,
            public_jwk: public,
        })
    }

    /// Decrypts a JWE in compact form; returns its plaintext.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn decrypt(&self, compact: &str) -> Result<Vec<u8>, String> {
        if compact.len() > MAX_JWE_LEN {
            return Err("the JWE is too large".into());
        }
        let parts: Vec<&str> = compact.split('.').collect();
        let [protected, encrypted_key, iv, ciphertext, tag] = parts[..] else {
            return Err("not a JWE in compact form".into());
        };
        let header: Map<String, Value> = b64url_decode(protected)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or("the JWE header is not JSON")?;
        let get = |name: &str| header.get(name).and_then(Value::as_str);
        if get("enc") != Some("A256GCM") {
            return Err(format!(
                "content encryption {:?} is not A256GCM",
                get("enc")
            ));
        }
        if get("alg") != Some(self.alg.as_str()) {
            return Err(format!(
                "key management {:?} is not this key's {}",
                get("alg"),
                self.alg
            ));
        }
        if header.contains_key("zip") || header.contains_key("crit") {
            return Err("compressed or critical-extension JWEs are not accepted".into());
        }
        if let (Some(ours), Some(theirs)) = (&self.kid, get("kid")) {
            if ours != theirs {
                return Err("the JWE is for another key".into());
            }
        }
        let cek = match &self.secret {
            Secret::Rsa(key) => {
                let wrapped = b64url_decode(encrypted_key).ok_or("bad encrypted key")?;
                let padding = if self.alg == "RSA-OAEP-256" {
                    Oaep::new::<sha2::Sha256>()
                } else {
                    Oaep::new::<sha1::Sha1>()
                };
                key.decrypt(padding, &wrapped)
                    .map_err(|_| "the content key does not decrypt")?
            }
            Secret::Ec(secret) => {
                if !encrypted_key.is_empty() {
                    return Err("ECDH-ES (direct) has no encrypted key".into());
                }
                ecdh_es_key(secret, &header)?
            }
        };
        if cek.len() != 32 {
            return Err("the content key is not 256 bits".into());
        }
        let iv = b64url_decode(iv)
            .filter(|v| v.len() == 12)
            .ok_or("bad IV")?;
        let mut sealed = b64url_decode(ciphertext).ok_or("bad ciphertext")?;
        let tag = b64url_decode(tag)
            .filter(|t| t.len() == 16)
            .ok_or("bad tag")?;
        sealed.extend_from_slice(&tag);
        let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| "bad content key")?;
        cipher
            .decrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: &sealed,
                    aad: protected.as_bytes(),
                },
            )
            .map_err(|_| "the JWE does not decrypt (wrong key, or tampered)".into())
    }
}

/// The content key of ECDH-ES direct key agreement (RFC 7518 §4.6).
#[cfg_attr(sesame_size, optimize(size))]
fn ecdh_es_key(secret: &p256::SecretKey, header: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or("ECDH-ES without `epk`")?;
    if epk.get("kty").and_then(Value::as_str) != Some("EC")
        || epk.get("crv").and_then(Value::as_str) != Some("P-256")
    {
        return Err("`epk` is not a P-256 key".into());
    }
    let (x, y) = (part(epk, "x")?, part(epk, "y")?);
    if x.len() != 32 || y.len() != 32 {
        return Err("`epk` coordinates are not 32 bytes".into());
    }
    // Refuses points that are not on the curve (invalid-curve attacks).
    let public = p256_public_key(&x, &y).ok_or("`epk` is not on P-256")?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
    let field = |name: &str| -> Result<Vec<u8>, String> {
        match header.get(name).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(text) => b64url_decode(text).ok_or(format!("`{name}` is not base64url")),
        }
    };
    let mut other_info = Vec::new();
    for data in [b"A256GCM".to_vec(), field("apu")?, field("apv")?] {
        other_info.extend_from_slice(&(data.len() as u32).to_be_bytes());
        other_info.extend_from_slice(&data);
    }
    other_info.extend_from_slice(&256u32.to_be_bytes());
    let mut cek = vec![0u8; 32];
    concat_kdf::derive_key_into::<sha2::Sha256>(
        shared.raw_secret_bytes().as_slice(),
        &other_info,
        &mut cek,
    )
    .map_err(|_| "key derivation failed")?;
    Ok(cek)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::RsaPublicKey;

    /// Deterministic bytes for key generation and encryption in tests.
    pub struct TestRng(pub u64);
    impl rsa::rand_core::RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u64() as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rsa::rand_core::CryptoRng for TestRng {}

    pub fn rsa_jwk(alg: &str) -> Value {
        use rsa::traits::PrivateKeyParts;
        let key = RsaPrivateKey::new(&mut TestRng(7), 2048).unwrap();
        let p = key.primes();
        json!({"kty": "RSA", "alg": alg, "kid": "rs-enc",
               "n": b64url(&key.n().to_bytes_be()), "e": b64url(&key.e().to_bytes_be()),
               "d": b64url(&key.d().to_bytes_be()),
               "p": b64url(&p[0].to_bytes_be()), "q": b64url(&p[1].to_bytes_be())})
    }

    pub fn ec_jwk() -> Value {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let (x, y) = coordinates(&secret.public_key());
        json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES", "kid": "ec-enc",
               "x": b64url(&x), "y": b64url(&y),
               "d": b64url(&[7u8; 32])})
    }

    /// Encrypts `plaintext` to `jwk` the way a provider would.
    pub fn encrypt(jwk: &Value, plaintext: &[u8]) -> String {
        let alg = jwk["alg"].as_str().unwrap();
        let mut header = json!({"alg": alg, "enc": "A256GCM", "kid": jwk["kid"], "cty": "JWT"});
        let (cek, encrypted_key) = if alg == "ECDH-ES" {
            let eph = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
            let (x, y) = coordinates(&eph.public_key());
            header["epk"] = json!({"kty": "EC", "crv": "P-256", "x": b64url(&x), "y": b64url(&y)});
            header["apu"] = json!(b64url(b"provider"));
            let key = ResourceKey::from_jwk(jwk).unwrap();
            let Secret::Ec(ours) = &key.secret else {
                panic!()
            };
            // The provider's side: its ephemeral secret with our public key.
            let shared =
                p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), ours.public_key().as_affine());
            let mut other = Vec::new();
            for data in [b"A256GCM".to_vec(), b"provider".to_vec(), Vec::new()] {
                other.extend_from_slice(&(data.len() as u32).to_be_bytes());
                other.extend_from_slice(&data);
            }
            other.extend_from_slice(&256u32.to_be_bytes());
            let mut cek = vec![0u8; 32];
            concat_kdf::derive_key_into::<sha2::Sha256>(
                shared.raw_secret_bytes().as_slice(),
                &other,
                &mut cek,
            )
            .unwrap();
            (cek, String::new())
        } else {
            let n = BigUint::from_bytes_be(&b64url_decode(jwk["n"].as_str().unwrap()).unwrap());
            let e = BigUint::from_bytes_be(&b64url_decode(jwk["e"].as_str().unwrap()).unwrap());
            let public = RsaPublicKey::new(n, e).unwrap();
            let cek = vec![5u8; 32];
            let padding = if alg == "RSA-OAEP-256" {
                Oaep::new::<sha2::Sha256>()
            } else {
                Oaep::new::<sha1::Sha1>()
            };
            let wrapped = public.encrypt(&mut TestRng(3), padding, &cek).unwrap();
            (cek, b64url(&wrapped))
        };
        let protected = b64url(header.to_string().as_bytes());
        let iv = [4u8; 12];
        let cipher = Aes256Gcm::new_from_slice(&cek).unwrap();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: plaintext,
                    aad: protected.as_bytes(),
                },
            )
            .unwrap();
        let (ct, tag) = sealed.split_at(sealed.len() - 16);
        format!(
            "{protected}.{encrypted_key}.{}.{}.{}",
            b64url(&iv),
            b64url(ct),
            b64url(tag)
        )
    }

    #[test]
    fn decrypts_each_supported_algorithm() {
        for jwk in [rsa_jwk("RSA-OAEP-256"), rsa_jwk("RSA-OAEP"), ec_jwk()] {
            let key = ResourceKey::from_jwk(&jwk).unwrap();
            let jwe = encrypt(&jwk, b"inner.signed.jwt");
            assert_eq!(
                key.decrypt(&jwe).unwrap(),
                b"inner.signed.jwt",
                "{}",
                key.alg
            );
            assert!(
                key.public_jwk.get("d").is_none(),
                "the private part is never published"
            );
            assert_eq!(key.public_jwk["use"], "enc");
        }
    }

    #[test]
    fn tampered_or_foreign_jwes_are_refused() {
        let jwk = ec_jwk();
        let key = ResourceKey::from_jwk(&jwk).unwrap();
        let jwe = encrypt(&jwk, b"payload");
        let parts: Vec<&str> = jwe.split('.').collect();
        // Flipped ciphertext.
        let mut ct = b64url_decode(parts[3]).unwrap();
        ct[0] ^= 1;
        let bad = format!(
            "{}.{}.{}.{}.{}",
            parts[0],
            parts[1],
            parts[2],
            b64url(&ct),
            parts[4]
        );
        assert!(key.decrypt(&bad).is_err());
        // Another algorithm in the header.
        let header = b64url(br#"{"alg":"dir","enc":"A256GCM"}"#);
        let other = format!("{header}..{}.{}.{}", parts[2], parts[3], parts[4]);
        assert!(key.decrypt(&other).is_err());
        // An ephemeral key off the curve.
        let header = b64url(
            json!({"alg": "ECDH-ES", "enc": "A256GCM",
                   "epk": {"kty": "EC", "crv": "P-256", "x": b64url(&[1u8; 32]), "y": b64url(&[2u8; 32])}})
            .to_string()
            .as_bytes(),
        );
        let off_curve = format!("{header}..{}.{}.{}", parts[2], parts[3], parts[4]);
        assert!(key
            .decrypt(&off_curve)
            .unwrap_err()
            .contains("not on P-256"));
        // For another key.
        let rsa = rsa_jwk("RSA-OAEP-256");
        assert!(ResourceKey::from_jwk(&rsa).unwrap().decrypt(&jwe).is_err());
        assert!(key.decrypt("a.b.c").is_err());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let mut wrong_alg = ec_jwk();
        wrong_alg["alg"] = json!("ECDH-ES+A256KW");
        let mut mismatched = ec_jwk();
        mismatched["d"] = json!(b64url(&[8u8; 32]));
        for bad in [json!("x"), json!({"kty": "oct"}), wrong_alg, mismatched] {
            assert!(ResourceKey::from_jwk(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_rsa_key_whose_parts_disagree_is_refused_with_what_is_wrong() {
        let good = rsa_jwk("RSA-OAEP-256");
        assert!(ResourceKey::from_jwk(&good).is_ok());
        let refused = |change: &dyn Fn(&mut Value)| {
            let mut jwk = good.clone();
            change(&mut jwk);
            match ResourceKey::from_jwk(&jwk) {
                Ok(_) => panic!("accepted: {jwk}"),
                Err(e) => e,
            }
        };
        // `q` replaced by `p`: their product is not `n`.
        let e = refused(&|jwk| jwk["q"] = jwk["p"].clone());
        assert!(e.contains("`n` is not `p` × `q`"), "{e}");
        // `d` changed by 2: no longer the inverse of `e`.
        let e = refused(&|jwk| {
            let mut d = b64url_decode(jwk["d"].as_str().unwrap()).unwrap();
            *d.last_mut().unwrap() ^= 2;
            jwk["d"] = json!(b64url(&d));
        });
        assert!(e.contains("`d` is not the inverse of `e`"), "{e}");
        // An even `e`.
        let e = refused(&|jwk| jwk["e"] = json!(b64url(&[1, 0, 2])));
        assert!(e.starts_with("not a valid RSA private key: "), "{e}");
        assert!(e.contains("or `e` is even"), "{e}");
    }
}
