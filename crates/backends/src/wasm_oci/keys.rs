//! Signing and verifying keys in the files cosign reads and writes.
//!
//! A public key is a PEM `PUBLIC KEY` (SPKI) of an ECDSA P-256 key, what
//! `cosign generate-key-pair` writes to `cosign.pub` and
//! `openssl ec -pubout` prints. A private key is one of:
//!
//! - `ENCRYPTED SIGSTORE PRIVATE KEY` / `ENCRYPTED COSIGN PRIVATE KEY`:
//!   cosign's own file, a JSON envelope (scrypt key derivation, NaCl
//!   secretbox) around a PKCS#8 key, opened with `COSIGN_PASSWORD`;
//! - `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1), unencrypted, what
//!   `openssl genpkey` / `openssl ecparam -genkey` write.
//!
//! The envelope is read here rather than through the `sigstore` crate: it
//! is four base64 fields and two well-kept primitives (`scrypt`,
//! `crypto_secretbox`), while that crate brings ~100 more crates (OIDC, a
//! browser launcher, protobufs) for key-pair signatures this needs none of.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The largest key file read: a PEM key is well under 1 KiB.
pub const MAX_KEY_FILE_BYTES: u64 = 16 << 10;

/// The environment variable that holds a cosign private key's password,
/// as for cosign itself.
pub const PASSWORD_VARIABLE: &str = "COSIGN_PASSWORD";

/// Why a key could not be read.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{what} is not a PEM key file ({why})")]
    NotPem { what: String, why: String },
    #[error("{what} is a `{label}` PEM block; {expected}")]
    WrongKind { what: String, label: String, expected: String },
    #[error("{what} is not an ECDSA P-256 key ({why}); stepbox signs and verifies cosign's default key type")]
    NotP256 { what: String, why: String },
    #[error("{what} is not a cosign key file stepbox can open: {why}")]
    Envelope { what: String, why: String },
    #[error(
        "cannot decrypt {what}: wrong password (set {PASSWORD_VARIABLE} to the password it was made with, or leave it unset for an empty one)"
    )]
    WrongPassword { what: String },
}

/// A key trusted to verify signatures: ECDSA P-256.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Read a PEM `PUBLIC KEY`; `what` names it in errors.
    pub fn from_pem(what: &str, text: &str) -> Result<Self, KeyError> {
        let label = pem_label(what, text)?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::WrongKind {
                what: what.to_owned(),
                label,
                expected:
                    "a trusted key is a public key (`-----BEGIN PUBLIC KEY-----`, e.g. cosign.pub), never a private one"
                        .to_owned(),
            });
        }
        let key = VerifyingKey::from_public_key_pem(text)
            .map_err(|error| KeyError::NotP256 { what: what.to_owned(), why: error.to_string() })?;
        Ok(Self { key })
    }

    /// The key as a PEM `PUBLIC KEY`, as stored and shown.
    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// `sha256:` and the hex SHA-256 of the key's SPKI DER encoding: how a
    /// key is told apart from another, in listings and in records.
    pub fn fingerprint(&self) -> String {
        let der = self.key.to_public_key_der().map(|der| der.as_bytes().to_vec()).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(der)))
    }

    /// Whether `signature` (ASN.1 DER, or the 64-byte r‖s form) is this
    /// key's ECDSA P-256/SHA-256 signature of exactly `message`. High-S
    /// signatures are accepted: Go's signers (cosign's) do not normalise S.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        let parsed =
            p256::ecdsa::Signature::from_der(signature).or_else(|_| p256::ecdsa::Signature::from_slice(signature));
        parsed.is_ok_and(|signature| self.key.verify(message, &signature).is_ok())
    }
}

/// A key that signs: ECDSA P-256.
pub struct PrivateKey {
    key: SigningKey,
}

/// Shows the public half only.
impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("public", &self.public().fingerprint()).finish()
    }
}

impl PrivateKey {
    /// Read a private key file's text (see the module doc for the forms);
    /// `password` opens a cosign envelope.
    pub fn from_pem(what: &str, text: &str, password: &[u8]) -> Result<Self, KeyError> {
        let label = pem_label(what, text)?;
        let not_p256 = |why: String| KeyError::NotP256 { what: what.to_owned(), why };
        let key = match label.as_str() {
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let der = open_envelope(what, &pem_body(what, text)?, password)?;
                SigningKey::from_pkcs8_der(&der).map_err(|error| not_p256(error.to_string()))?
            }
            "PRIVATE KEY" => SigningKey::from_pkcs8_pem(text).map_err(|error| not_p256(error.to_string()))?,
            "EC PRIVATE KEY" => {
                use p256::elliptic_curve::SecretKey;
                SecretKey::<p256::NistP256>::from_sec1_pem(text)
                    .map(SigningKey::from)
                    .map_err(|error| not_p256(error.to_string()))?
            }
            _ => {
                return Err(KeyError::WrongKind {
                    what: what.to_owned(),
                    label,
                    expected: "signing needs a private key: cosign's (`cosign generate-key-pair`) or an unencrypted PKCS#8/SEC1 P-256 key".to_owned(),
                });
            }
        };
        Ok(Self { key })
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey { key: *self.key.verifying_key() }
    }

    /// The ASN.1 DER ECDSA P-256/SHA-256 signature of `message`
    /// (deterministic, RFC 6979).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::DerSignature = self.key.sign(message);
        signature.as_bytes().to_vec()
    }
}

/// The label of the first PEM block in `text`.
fn pem_label(what: &str, text: &str) -> Result<String, KeyError> {
    let not_pem = |why: &str| KeyError::NotPem { what: what.to_owned(), why: why.to_owned() };
    let start = text.find("-----BEGIN ").ok_or_else(|| not_pem("no `-----BEGIN …-----` line"))?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let end = rest.find("-----").ok_or_else(|| not_pem("an unterminated BEGIN line"))?;
    Ok(rest[..end].to_owned())
}

/// The base64-decoded body of the first PEM block in `text`.
fn pem_body(what: &str, text: &str) -> Result<Vec<u8>, KeyError> {
    let not_pem = |why: &str| KeyError::NotPem { what: what.to_owned(), why: why.to_owned() };
    let mut lines = text.lines().skip_while(|line| !line.starts_with("-----BEGIN "));
    lines.next();
    let mut body = String::new();
    for line in lines {
        if line.starts_with("-----END ") {
            return BASE64
                .decode(body.as_bytes())
                .map_err(|error| not_pem(&format!("its body is not base64: {error}")));
        }
        body.push_str(line.trim());
    }
    Err(not_pem("no `-----END …-----` line"))
}

/// cosign's private key envelope (go-securesystemslib `encrypted`).
#[derive(Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Open a cosign envelope with `password`; the PKCS#8 DER key comes back.
fn open_envelope(what: &str, body: &[u8], password: &[u8]) -> Result<Vec<u8>, KeyError> {
    let bad = |why: String| KeyError::Envelope { what: what.to_owned(), why };
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|error| bad(format!("its body is not cosign's JSON envelope ({error})")))?;
    if envelope.kdf.name != "scrypt" || envelope.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "it uses {} and {}; cosign's keys use scrypt and nacl/secretbox",
            envelope.kdf.name, envelope.cipher.name
        )));
    }
    let KdfParams { N: n, r, p } = envelope.kdf.params;
    // The parameters cosign's reader accepts, and no others: a key file
    // asking for N = 2^40 would otherwise take the machine's memory.
    if !matches!(n, 32768 | 65536 | 131072) || r != 8 || p != 1 {
        return Err(bad(format!(
            "its scrypt parameters N={n} r={r} p={p} are not ones cosign writes (N 32768, 65536 or 131072, r 8, p 1)"
        )));
    }
    let decode = |field: &str, text: &str| {
        BASE64.decode(text).map_err(|error| bad(format!("its {field} is not base64 ({error})")))
    };
    let salt = decode("salt", &envelope.kdf.salt)?;
    let nonce = decode("nonce", &envelope.cipher.nonce)?;
    let ciphertext = decode("ciphertext", &envelope.ciphertext)?;
    if nonce.len() != 24 {
        return Err(bad(format!("its nonce is {} bytes, not 24", nonce.len())));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p).map_err(|error| bad(error.to_string()))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|error| bad(error.to_string()))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| KeyError::WrongPassword { what: what.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSIGN_KEY: &str = include_str!("testdata/cosign-generated-empty-password.key");

    #[test]
    fn a_key_cosign_generated_signs_what_its_public_key_verifies() {
        let key =
            PrivateKey::from_pem("cosign.key", COSIGN_KEY, b"").expect("cosign's key opens with its empty password");
        let public = PublicKey::from_pem("cosign.pub", &key.public().to_pem()).expect("its public key reads back");
        let signature = key.sign(b"payload");
        assert!(public.verifies(b"payload", &signature));
        assert!(!public.verifies(b"payload!", &signature), "another message");
        assert!(public.fingerprint().starts_with("sha256:") && public.fingerprint().len() == 71);
    }

    #[test]
    fn a_wrong_password_is_named_as_such() {
        let error = PrivateKey::from_pem("cosign.key", COSIGN_KEY, b"guess").expect_err("refused");
        assert!(matches!(error, KeyError::WrongPassword { .. }), "{error}");
        assert!(error.to_string().contains(PASSWORD_VARIABLE), "{error}");
    }

    #[test]
    fn key_files_of_the_wrong_kind_are_refused_with_the_way_out() {
        let private_as_public = PublicKey::from_pem("cosign.key", COSIGN_KEY).expect_err("refused").to_string();
        assert!(private_as_public.contains("never a private one"), "{private_as_public}");
        let garbage = PublicKey::from_pem("k.pub", "hello").expect_err("refused").to_string();
        assert!(garbage.contains("not a PEM key file"), "{garbage}");
        let public = PrivateKey::from_pem("cosign.key", COSIGN_KEY, b"").expect("opens").public().to_pem();
        let public_as_private = PrivateKey::from_pem("k.pub", &public, b"").expect_err("refused").to_string();
        assert!(public_as_private.contains("signing needs a private key"), "{public_as_private}");
    }

    #[test]
    fn an_envelope_asking_for_huge_scrypt_work_is_refused_before_any() {
        let envelope = r#"{"kdf":{"name":"scrypt","params":{"N":1099511627776,"r":8,"p":1},"salt":"AA=="},"cipher":{"name":"nacl/secretbox","nonce":"AA=="},"ciphertext":"AA=="}"#;
        let pem = format!(
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            BASE64.encode(envelope)
        );
        let error = PrivateKey::from_pem("big.key", &pem, b"").expect_err("refused").to_string();
        assert!(error.contains("scrypt parameters"), "{error}");
    }

    #[test]
    fn raw_and_high_s_signatures_verify() {
        let key = PrivateKey::from_pem("cosign.key", COSIGN_KEY, b"").expect("opens");
        let public = key.public();
        let der = key.sign(b"m");
        let signature = p256::ecdsa::Signature::from_der(&der).expect("DER");
        assert!(public.verifies(b"m", &signature.to_bytes()), "r‖s form");
        // The other S of the pair (n - s) is as valid, and Go signers send either.
        let (r, s) = signature.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).expect("a signature");
        assert!(public.verifies(b"m", flipped.to_der().as_bytes()), "high S");
    }
}
