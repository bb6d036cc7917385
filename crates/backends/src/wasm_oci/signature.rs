//! cosign's key-pair signatures of an artifact, in the layout `cosign sign
//! --key` has written since v1 and `cosign verify --key` still reads: the
//! signatures of the manifest `sha256:HEX` live in the same repository under
//! the tag `sha256-HEX.sig`, an OCI image manifest with one layer per
//! signature. Each layer is a "simple signing" payload naming the signed
//! digest; its annotation `dev.cosignproject.cosign/signature` is the
//! base64 ECDSA P-256/SHA-256 signature of exactly the layer's bytes.
//!
//! Building that manifest, reading it back and deciding whether a pulled
//! artifact is signed by a trusted key, with no network: the transfer lives
//! in [`super::transfer`], the keys in [`super::keys`]. [`verify`] also
//! takes cosign v3's signatures, Sigstore bundles ([`super::bundle`]): the
//! same keys, a different envelope.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::manifest::OciImageManifest;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::artifact::{self, Blob, MANIFEST_MEDIA_TYPE};
use super::keys::PublicKey;

/// A signature layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a layer's base64 signature (cosign keeps the old
/// `cosignproject` domain for it).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `type` a simple-signing payload must claim.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The config media type of a signature manifest.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The largest signature manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The largest payload read (cosign's are a few hundred bytes).
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 10;
/// The most signatures read beside one artifact.
pub const MAX_SIGNATURES: usize = 64;

/// The tag beside `digest` (`sha256:HEX`) that holds its signatures.
pub fn tag_for(digest: &str) -> String {
    digest.replacen(':', "-", 1) + ".sig"
}

/// The simple-signing payload claiming that `repository`
/// (`REGISTRY/REPOSITORY`) at `digest` is signed, as cosign writes it.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let payload = Payload {
        critical: Critical {
            identity: Identity { docker_reference: repository.to_owned() },
            image: Image { docker_manifest_digest: digest.to_owned() },
            kind: PAYLOAD_TYPE.to_owned(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).unwrap_or_default()
}

#[derive(Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    optional: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The digest a payload claims to sign, if it is a simple-signing payload.
fn claimed_digest(payload: &[u8]) -> Result<String, String> {
    let payload: Payload =
        serde_json::from_slice(payload).map_err(|error| format!("not a simple-signing payload ({error})"))?;
    if payload.critical.kind != PAYLOAD_TYPE {
        return Err(format!("its type is `{}`, not `{PAYLOAD_TYPE}`", payload.critical.kind));
    }
    Ok(payload.critical.image.docker_manifest_digest)
}

/// How a signature's key signed its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// cosign's simple signing (a `.sig` tag's layer): the payload's exact
    /// bytes are signed, and the payload is a simple-signing claim.
    SimpleSigning,
    /// A DSSE envelope (a Sigstore bundle, cosign v3): its
    /// pre-authentication encoding of the payload type and payload is
    /// signed, and the payload is an in-toto statement ([`super::bundle`]).
    Dsse {
        /// The envelope's `payloadType`.
        payload_type: String,
    },
}

/// One signature found beside an artifact.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The payload's exact bytes: the claim.
    pub payload: Vec<u8>,
    /// The signature (DER or r‖s), decoded from its annotation or bundle.
    pub signature: Vec<u8>,
    /// How the payload was signed.
    pub envelope: Envelope,
}

impl Signature {
    /// A simple-signing signature (a `.sig` tag's layer).
    pub fn simple(payload: Vec<u8>, signature: Vec<u8>) -> Self {
        Self { payload, signature, envelope: Envelope::SimpleSigning }
    }

    /// The exact bytes the key signed.
    fn signed_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.envelope {
            Envelope::SimpleSigning => std::borrow::Cow::Borrowed(&self.payload),
            Envelope::Dsse { payload_type } => std::borrow::Cow::Owned(super::bundle::pae(payload_type, &self.payload)),
        }
    }

    /// The manifest digests the payload claims to sign.
    fn claimed_digests(&self) -> Result<Vec<String>, String> {
        match &self.envelope {
            Envelope::SimpleSigning => claimed_digest(&self.payload).map(|digest| vec![digest]),
            Envelope::Dsse { payload_type } => super::bundle::claimed_digests(payload_type, &self.payload),
        }
    }
}

/// A signature layer as a signature manifest lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The payload blob.
    pub blob: Blob,
    /// The signature, decoded from its annotation.
    pub signature: Vec<u8>,
}

/// The signature layers of a signature manifest. Layers of other kinds
/// (cosign attaches certificates and bundles as annotations, never as
/// layers) are skipped; a layer without a decodable signature is refused.
pub fn list(shown: &str, manifest: &[u8]) -> Result<Vec<Listed>, String> {
    let manifest: OciImageManifest = serde_json::from_slice(manifest)
        .map_err(|error| format!("the signature manifest of {shown} does not parse ({error})"))?;
    if manifest.layers.len() > MAX_SIGNATURES {
        return Err(format!(
            "{shown} has {} signatures; stepbox reads at most {MAX_SIGNATURES}",
            manifest.layers.len()
        ));
    }
    let mut listed = Vec::new();
    for layer in manifest.layers.iter().filter(|layer| layer.media_type == LAYER_MEDIA_TYPE) {
        let blob = artifact::blob(shown, "signature payload", layer).map_err(|error| error.to_string())?;
        if blob.size > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "a signature payload of {shown} is {} bytes; at most {MAX_PAYLOAD_BYTES} are read",
                blob.size
            ));
        }
        let encoded = layer.annotations.as_ref().and_then(|annotations| annotations.get(SIGNATURE_ANNOTATION));
        let Some(encoded) = encoded else {
            return Err(format!("a signature layer of {shown} has no `{SIGNATURE_ANNOTATION}` annotation"));
        };
        let signature =
            BASE64.decode(encoded.trim()).map_err(|error| format!("a signature of {shown} is not base64 ({error})"))?;
        listed.push(Listed { blob, signature });
    }
    Ok(listed)
}

/// A signature manifest ready to push: its layers are the `existing` ones
/// (from the manifest already at the tag, if any) and one more.
#[derive(Debug, Clone)]
pub struct SignatureManifest {
    /// The new payload's bytes.
    pub payload: Vec<u8>,
    /// The new payload's digest.
    pub payload_digest: String,
    /// The config blob.
    pub config: Vec<u8>,
    /// The config's digest.
    pub config_digest: String,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
}

/// The signature manifest holding the signatures already at the tag
/// (`existing`, that manifest's bytes) and `signature` of `payload`. With
/// the same signature there already, `None`: nothing to push.
pub fn build_manifest(
    existing: Option<&[u8]>,
    payload: Vec<u8>,
    signature: &[u8],
) -> Result<Option<SignatureManifest>, String> {
    let encoded = BASE64.encode(signature);
    let payload_digest = artifact::digest_of(&payload);
    let mut layers = match existing {
        Some(bytes) => {
            serde_json::from_slice::<OciImageManifest>(bytes)
                .map_err(|error| format!("the signatures already there do not parse ({error})"))?
                .layers
        }
        None => Vec::new(),
    };
    let same = |layer: &oci_client::manifest::OciDescriptor| {
        layer.digest == payload_digest
            && layer.annotations.as_ref().and_then(|a| a.get(SIGNATURE_ANNOTATION)) == Some(&encoded)
    };
    if layers.iter().any(same) {
        return Ok(None);
    }
    layers.push(artifact::descriptor(
        LAYER_MEDIA_TYPE,
        &payload_digest,
        payload.len(),
        Some(BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), encoded)])),
    ));
    // The image config cosign writes for signatures: empty but for the layers' digests.
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        "config": {},
    });
    let config = serde_json::to_vec(&config).map_err(|error| error.to_string())?;
    let config_digest = artifact::digest_of(&config);
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        config: artifact::descriptor(CONFIG_MEDIA_TYPE, &config_digest, config.len(), None),
        layers,
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|error| error.to_string())?;
    Ok(Some(SignatureManifest { payload, payload_digest, config, config_digest, manifest }))
}

/// A key the user trusts, and whether its scope covers the repository
/// being verified.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The name it was trusted under.
    pub name: &'a str,
    /// The `REGISTRY[/PREFIX]` it is trusted for (the one covering the
    /// repository, when one does).
    pub scope: String,
    /// The key.
    pub key: &'a PublicKey,
    /// Whether `scope` covers the repository.
    pub covers: bool,
}

/// The trusted key that signed an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The name it is trusted under.
    pub key: String,
    /// Its fingerprint ([`PublicKey::fingerprint`]).
    pub fingerprint: String,
    /// The scope it is trusted for.
    pub scope: String,
}

/// Why an artifact is not signed by a key trusted for it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Unverified {
    #[error(
        "{digest} is not signed (no signatures at the tag {tag} beside it, and no Sigstore bundle among its referrers)"
    )]
    Unsigned { digest: String, tag: String },
    #[error("{digest} has {count} signature(s), but none by a key stepbox trusts")]
    UntrustedKey { digest: String, count: usize },
    #[error("the trusted key `{key}` signed {signed}, not {digest}: that signature belongs to another artifact")]
    OtherDigest { key: String, signed: String, digest: String },
    #[error("{repository} is signed by the key `{key}`, but that key is trusted for {scope}, not for {repository}")]
    OtherScope { key: String, scope: String, repository: String },
    #[error("the trusted key `{key}` signed a payload that is not a cosign signature: {why}")]
    BadPayload { key: String, why: String },
}

/// Whether one of `signatures` of `repository` at `digest` is by a
/// candidate whose scope covers it. Every signature is tried against every
/// candidate; when none passes, the most telling reason comes back (a
/// trusted key's signature of another digest, then of this digest by a key
/// of another scope, then untrusted signatures, then none at all).
pub fn verify(
    repository: &str,
    digest: &str,
    signatures: &[Signature],
    candidates: &[Candidate<'_>],
) -> Result<Verified, Unverified> {
    let mut best: Option<Unverified> = None;
    let rank = |reason: &Unverified| match reason {
        Unverified::BadPayload { .. } | Unverified::OtherDigest { .. } => 3,
        Unverified::OtherScope { .. } => 2,
        Unverified::UntrustedKey { .. } => 1,
        Unverified::Unsigned { .. } => 0,
    };
    let mut consider = |reason: Unverified| {
        if best.as_ref().is_none_or(|held| rank(&reason) > rank(held)) {
            best = Some(reason);
        }
    };
    for signature in signatures {
        let signed_bytes = signature.signed_bytes();
        for candidate in candidates.iter().filter(|c| c.key.verifies(&signed_bytes, &signature.signature)) {
            let key = candidate.name.to_owned();
            match signature.claimed_digests() {
                Err(why) => consider(Unverified::BadPayload { key, why }),
                Ok(signed) if !signed.iter().any(|claimed| claimed == digest) => {
                    consider(Unverified::OtherDigest { key, signed: signed.join(", "), digest: digest.to_owned() })
                }
                Ok(_) if !candidate.covers => consider(Unverified::OtherScope {
                    key,
                    scope: candidate.scope.clone(),
                    repository: repository.to_owned(),
                }),
                Ok(_) => {
                    return Ok(Verified {
                        key,
                        fingerprint: candidate.key.fingerprint(),
                        scope: candidate.scope.clone(),
                    });
                }
            }
        }
    }
    Err(best.unwrap_or_else(|| {
        if signatures.is_empty() {
            Unverified::Unsigned { digest: digest.to_owned(), tag: tag_for(digest) }
        } else {
            Unverified::UntrustedKey { digest: digest.to_owned(), count: signatures.len() }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm_oci::fixtures::{COSIGN_KEY, REPO, digest};
    use crate::wasm_oci::keys::PrivateKey;

    fn signed(key: &PrivateKey, digest: &str) -> Signature {
        let payload = payload(REPO, digest);
        Signature::simple(payload.clone(), key.sign(&payload))
    }

    #[test]
    fn the_payload_is_cosigns_simple_signing_shape() {
        let text = String::from_utf8(payload(REPO, &digest('a'))).expect("UTF-8");
        let expected = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{REPO}"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            digest('a')
        );
        assert_eq!(text, expected);
        assert_eq!(tag_for(&digest('a')), format!("sha256-{}.sig", "a".repeat(64)));
    }

    #[test]
    fn every_way_of_not_being_trusted_is_told_apart() {
        let trusted = PrivateKey::from_pem("k", COSIGN_KEY, b"").expect("opens");
        let trusted_public = trusted.public();
        let other_pem = include_str!("testdata/other-p256.key");
        let other = PrivateKey::from_pem("other", other_pem, b"").expect("opens");
        let here = Candidate {
            name: "team",
            scope: "registry.example.com/flavors".into(),
            key: &trusted_public,
            covers: true,
        };
        let elsewhere = Candidate { covers: false, scope: "registry.example.com/other".into(), ..here.clone() };
        let (a, b) = (digest('a'), digest('b'));
        type Case<'a> = (&'a str, Vec<Signature>, Vec<Candidate<'a>>, Result<&'a str, fn(&Unverified) -> bool>);
        let cases: Vec<Case<'_>> = vec![
            ("signed by the trusted key", vec![signed(&trusted, &a)], vec![here.clone()], Ok("team")),
            ("one good among others", vec![signed(&other, &a), signed(&trusted, &a)], vec![here.clone()], Ok("team")),
            ("no signature", vec![], vec![here.clone()], Err(|u| matches!(u, Unverified::Unsigned { .. }))),
            (
                "an untrusted key",
                vec![signed(&other, &a)],
                vec![here.clone()],
                Err(|u| matches!(u, Unverified::UntrustedKey { count: 1, .. })),
            ),
            (
                "another digest",
                vec![signed(&trusted, &b)],
                vec![here.clone()],
                Err(|u| matches!(u, Unverified::OtherDigest { .. })),
            ),
            (
                "another scope",
                vec![signed(&trusted, &a)],
                vec![elsewhere],
                Err(|u| matches!(u, Unverified::OtherScope { .. })),
            ),
            (
                "no keys at all",
                vec![signed(&trusted, &a)],
                vec![],
                Err(|u| matches!(u, Unverified::UntrustedKey { .. })),
            ),
        ];
        for (name, signatures, candidates, expected) in cases {
            let verdict = verify(REPO, &a, &signatures, &candidates);
            match (expected, verdict) {
                (Ok(key), Ok(verified)) => assert_eq!(verified.key, key, "{name}"),
                (Err(is), Err(reason)) => assert!(is(&reason), "{name}: {reason}"),
                (_, verdict) => panic!("{name}: {verdict:?}"),
            }
        }
        // A signature whose bytes were changed verifies under no key.
        let mut tampered = signed(&trusted, &a);
        tampered.payload[10] ^= 1;
        assert!(matches!(
            verify(REPO, &a, &[tampered], std::slice::from_ref(&here)),
            Err(Unverified::UntrustedKey { .. })
        ));
    }

    #[test]
    fn signing_twice_adds_one_layer_and_the_same_signature_none() {
        let key = PrivateKey::from_pem("k", COSIGN_KEY, b"").expect("opens");
        let first_payload = payload(REPO, &digest('a'));
        let signature = key.sign(&first_payload);
        let first = build_manifest(None, first_payload.clone(), &signature).expect("builds").expect("new");
        let listed = list("x", &first.manifest).expect("lists");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].signature, signature);
        assert_eq!(listed[0].blob.digest, first.payload_digest);
        assert!(build_manifest(Some(&first.manifest), first_payload, &signature).expect("builds").is_none());
        let other = key.sign(b"something else");
        let second = build_manifest(Some(&first.manifest), b"x".to_vec(), &other).expect("builds").expect("new");
        assert_eq!(list("x", &second.manifest).expect("lists").len(), 2);
    }
}
