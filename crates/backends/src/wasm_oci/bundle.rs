//! cosign v3's signatures: a Sigstore bundle (v0.3) stored as an OCI 1.1
//! referrer of the signed manifest, what `cosign sign --key` writes by
//! default since v3.0. The bundle holds a DSSE envelope whose payload is an
//! in-toto statement: subject the manifest's digest, predicate type
//! `https://sigstore.dev/cosign/sign/v1`. The key signs the envelope's
//! pre-authentication encoding (PAE), not the statement's bytes.
//!
//! Found through the registry's referrers API
//! (`GET /v2/REPO/referrers/DIGEST`), or, on registries without it, the
//! referrers tag `sha256-HEX` holding an image index (the distribution
//! spec's fallback, which cosign's registry library writes). A referrer
//! manifest has one layer: the bundle's JSON.
//!
//! Parsing, listing and the claim check, with no network: the transfer
//! lives in [`super::transfer`], the trust decision in
//! [`super::signature::verify`], which takes these and `.sig` signatures
//! alike. Only what a key-pair signature needs is read: the certificate,
//! transparency-log and timestamp material of a bundle is not (keyless
//! signing is not supported), and a key-pair bundle verifies offline.

use base64::Engine as _;
use oci_client::manifest::OciDescriptor;
use serde::Deserialize;

use super::artifact::Blob;
use super::signature::{Envelope, MAX_SIGNATURES, Signature};

/// A bundle's media type, as the referrer's artifact type and its layer's.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The same bundle version under its older media type name.
const BUNDLE_MEDIA_TYPE_OLD_NAME: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// The media type of a referrers list (and of the fallback tag's index).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type of cosign's signing statement (`cosign sign`);
/// attestations (`cosign attest`) carry others and are not signatures.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The in-toto statement types read.
const STATEMENT_TYPES: [&str; 2] = ["https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"];
/// The largest referrers list or referrer manifest read.
pub const MAX_INDEX_BYTES: u64 = 1 << 20;
/// The largest bundle read (a key-pair bundle is a few KiB; one with a
/// certificate chain and log entries some more).
pub const MAX_BUNDLE_BYTES: u64 = 256 << 10;
/// The most signatures read from one envelope (cosign writes one): each is
/// checked against every trusted key, and carries its own copy of the
/// payload, so a bundle of thousands of empty signatures must not be read.
pub const MAX_ENVELOPE_SIGNATURES: usize = 8;

/// The tag holding the referrers of `digest` on registries without the
/// referrers API: `sha256-HEX`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Whether `media_type` names a v0.3 Sigstore bundle.
fn is_bundle(media_type: &str) -> bool {
    media_type == BUNDLE_MEDIA_TYPE || media_type == BUNDLE_MEDIA_TYPE_OLD_NAME
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

/// A descriptor as a bounded [`Blob`], refused past `limit` bytes.
fn bounded(shown: &str, what: &str, descriptor: &OciDescriptor, limit: u64) -> Result<Blob, String> {
    let blob = super::artifact::blob(shown, what, descriptor).map_err(|error| error.to_string())?;
    if blob.size > limit {
        return Err(format!("a {what} of {shown} is {} bytes; at most {limit} are read", blob.size));
    }
    Ok(blob)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerManifest {
    #[serde(default)]
    artifact_type: Option<String>,
    config: OciDescriptor,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

/// The referrer manifests in a referrers list (`index`) that are Sigstore
/// bundles, by their artifact type; the rest (SBOMs, other attachments)
/// are skipped. A registry may ignore the artifact type asked for, so the
/// list is filtered here again.
pub fn bundle_referrers(shown: &str, index: &[u8]) -> Result<Vec<Blob>, String> {
    let index: Index = serde_json::from_slice(index)
        .map_err(|error| format!("the referrers list of {shown} does not parse ({error})"))?;
    let bundles: Vec<&OciDescriptor> =
        index.manifests.iter().filter(|entry| entry.artifact_type.as_deref().is_some_and(is_bundle)).collect();
    if bundles.len() > MAX_SIGNATURES {
        return Err(format!("{shown} has {} signature bundles; stepbox reads at most {MAX_SIGNATURES}", bundles.len()));
    }
    bundles.into_iter().map(|entry| bounded(shown, "signature bundle manifest", entry, MAX_INDEX_BYTES)).collect()
}

/// The bundle layer of a referrer manifest, or `None` when the manifest is
/// no bundle after all (its own artifact type decides, as cosign writes it
/// on the manifest and on its config).
pub fn bundle_layer(shown: &str, manifest: &[u8]) -> Result<Option<Blob>, String> {
    let manifest: ReferrerManifest = serde_json::from_slice(manifest)
        .map_err(|error| format!("a signature bundle manifest of {shown} does not parse ({error})"))?;
    let declared = manifest.artifact_type.as_deref().or(manifest.config.artifact_type.as_deref());
    if !declared.is_some_and(is_bundle) {
        return Ok(None);
    }
    let Some(layer) = manifest.layers.iter().find(|layer| is_bundle(&layer.media_type)) else {
        return Err(format!("a signature bundle manifest of {shown} has no bundle layer"));
    };
    bounded(shown, "signature bundle", layer, MAX_BUNDLE_BYTES).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    #[serde(default)]
    dsse_envelope: Option<DsseEnvelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseEnvelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<DsseSignature>,
}

#[derive(Deserialize)]
struct DsseSignature {
    sig: String,
}

/// The signatures a bundle carries, one per signature of its DSSE
/// envelope (cosign writes one). A bundle of a blob signature (a message
/// signature, not an envelope) signs no manifest and is refused.
pub fn signatures_of(shown: &str, bundle: &[u8]) -> Result<Vec<Signature>, String> {
    let bundle: Bundle = serde_json::from_slice(bundle)
        .map_err(|error| format!("a signature bundle of {shown} does not parse ({error})"))?;
    if !is_bundle(&bundle.media_type) {
        return Err(format!(
            "a signature bundle of {shown} is `{}`; stepbox reads {BUNDLE_MEDIA_TYPE}",
            bundle.media_type
        ));
    }
    let Some(envelope) = bundle.dsse_envelope else {
        return Err(format!(
            "a signature bundle of {shown} holds no DSSE envelope (a blob's signature, not an image's)"
        ));
    };
    if envelope.signatures.len() > MAX_ENVELOPE_SIGNATURES {
        return Err(format!(
            "a signature bundle of {shown} has {} signatures in its envelope; stepbox reads at most \
             {MAX_ENVELOPE_SIGNATURES}",
            envelope.signatures.len()
        ));
    }
    let payload = decode(&envelope.payload).map_err(|why| format!("a signature bundle of {shown}: payload {why}"))?;
    envelope
        .signatures
        .iter()
        .map(|signature| {
            let bytes =
                decode(&signature.sig).map_err(|why| format!("a signature bundle of {shown}: signature {why}"))?;
            Ok(Signature {
                payload: payload.clone(),
                signature: bytes,
                envelope: Envelope::Dsse { payload_type: envelope.payload_type.clone() },
            })
        })
        .collect()
}

/// Protobuf's JSON form writes bytes as standard base64 with padding and
/// reads standard or URL-safe, with or without padding: so does this.
fn decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text = text.trim();
    GeneralPurpose::new(&STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&URL_SAFE, config).decode(text))
        .map_err(|error| format!("is not base64 ({error})"))
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// The manifest digests (`sha256:HEX`) a DSSE payload of `payload_type`
/// claims to sign: those of its subjects, when it is cosign's signing
/// statement and nothing else.
pub fn claimed_digests(payload_type: &str, payload: &[u8]) -> Result<Vec<String>, String> {
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!("its envelope holds `{payload_type}`, not an in-toto statement ({IN_TOTO_PAYLOAD_TYPE})"));
    }
    let statement: Statement =
        serde_json::from_slice(payload).map_err(|error| format!("not an in-toto statement ({error})"))?;
    if !STATEMENT_TYPES.contains(&statement.kind.as_str()) {
        return Err(format!("its statement type is `{}`, not an in-toto statement's", statement.kind));
    }
    if statement.predicate_type != SIGN_PREDICATE_TYPE {
        return Err(format!(
            "it is an attestation of `{}`, not cosign's signature (`{SIGN_PREDICATE_TYPE}`)",
            statement.predicate_type
        ));
    }
    let digests: Vec<String> = statement
        .subject
        .iter()
        .filter_map(|subject| subject.digest.get("sha256"))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    if digests.is_empty() {
        return Err("its statement names no sha256 subject".to_owned());
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;
    use crate::wasm_oci::fixtures::{COSIGN_KEY, REPO, digest};
    use crate::wasm_oci::keys::{PrivateKey, PublicKey};
    use crate::wasm_oci::signature::{Candidate, Unverified, verify};

    /// A statement as cosign v3's `sign` writes it (protojson: subject
    /// without a name, an empty predicate).
    fn statement(predicate_type: &str, digest: &str) -> Vec<u8> {
        let hex = digest.trim_start_matches("sha256:");
        serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": hex}}],
            "predicateType": predicate_type,
            "predicate": {},
        }))
        .expect("JSON")
    }

    /// A key-pair bundle in cosign v3's shape, signed by `key`.
    fn bundle(key: &PrivateKey, payload_type: &str, statement: &[u8]) -> Vec<u8> {
        let signature = key.sign(&pae(payload_type, statement));
        serde_json::to_vec(&serde_json::json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": "aGludA=="}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": BASE64.encode(statement),
                "payloadType": payload_type,
                "signatures": [{"sig": BASE64.encode(signature), "keyid": ""}],
            },
        }))
        .expect("JSON")
    }

    #[test]
    fn pae_is_dsse_v1s_encoding() {
        // The example of the DSSE specification's protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn a_key_pair_bundle_verifies_and_every_other_statement_is_told_apart() {
        let key = PrivateKey::from_pem("k", COSIGN_KEY, b"").expect("opens");
        let public = key.public();
        let trusted = [Candidate { name: "team", scope: "registry.example.com".into(), key: &public, covers: true }];
        let (a, b) = (digest('a'), digest('b'));
        let check = |bundle: &[u8]| {
            let signatures = signatures_of("x", bundle).expect("parses");
            verify(REPO, &a, &signatures, &trusted)
        };
        let good = bundle(&key, IN_TOTO_PAYLOAD_TYPE, &statement(SIGN_PREDICATE_TYPE, &a));
        assert_eq!(check(&good).map(|v| v.key), Ok("team".to_owned()));

        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "another digest",
                bundle(&key, IN_TOTO_PAYLOAD_TYPE, &statement(SIGN_PREDICATE_TYPE, &b)),
                "signed sha256:bbbb",
            ),
            (
                "an attestation",
                bundle(&key, IN_TOTO_PAYLOAD_TYPE, &statement("https://slsa.dev/provenance/v1", &a)),
                "an attestation of `https://slsa.dev/provenance/v1`",
            ),
            (
                "not in-toto",
                bundle(&key, "text/plain", &statement(SIGN_PREDICATE_TYPE, &a)),
                "not an in-toto statement",
            ),
        ];
        for (name, bundle, expected) in cases {
            let reason = check(&bundle).map(|v| v.key).expect_err(name).to_string();
            assert!(reason.contains(expected), "{name}: {reason}");
        }

        // The statement's bytes changed: the PAE no longer matches the signature.
        let mut tampered: serde_json::Value = serde_json::from_slice(&good).expect("JSON");
        let other = BASE64.encode(statement(SIGN_PREDICATE_TYPE, &b));
        tampered["dsseEnvelope"]["payload"] = other.into();
        let tampered = serde_json::to_vec(&tampered).expect("JSON");
        assert!(matches!(check(&tampered), Err(Unverified::UntrustedKey { .. })));

        // A signature over the statement's bytes themselves (not their PAE) is no DSSE signature.
        let mut raw: serde_json::Value = serde_json::from_slice(&good).expect("JSON");
        raw["dsseEnvelope"]["signatures"][0]["sig"] =
            BASE64.encode(key.sign(&statement(SIGN_PREDICATE_TYPE, &a))).into();
        assert!(matches!(check(&serde_json::to_vec(&raw).expect("JSON")), Err(Unverified::UntrustedKey { .. })));
    }

    #[test]
    fn a_bundle_sigstore_js_built_verifies_with_its_key() {
        // Another implementation's encoding: sigstore-js's DSSE bundle builder (testdata/README.md).
        let bundle = include_bytes!("testdata/sigstore-js-dsse-bundle.json");
        let key = PublicKey::from_pem("publisher", include_str!("testdata/sigstore-js-signer.pub")).expect("a key");
        let trusted = [Candidate { name: "publisher", scope: "registry.example.com".into(), key: &key, covers: true }];
        let signatures = signatures_of("x", bundle).expect("parses");
        assert_eq!(verify(REPO, &digest('a'), &signatures, &trusted).map(|v| v.key), Ok("publisher".to_owned()));
        assert!(matches!(verify(REPO, &digest('b'), &signatures, &trusted), Err(Unverified::OtherDigest { .. })));
    }

    #[test]
    fn bundles_that_are_not_an_images_key_pair_signature_are_refused_by_name() {
        for (bundle, expected) in [
            (
                r#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "messageSignature": {}}"#,
                "no DSSE envelope",
            ),
            (r#"{"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1"}"#, "stepbox reads"),
            (
                r#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": {"payload": "%%", "payloadType": "x"}}"#,
                "not base64",
            ),
            ("[1, 2", "does not parse"),
            (
                r#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": {"payload": "e30=",
                    "payloadType": "x", "signatures": [{"sig": ""}, {"sig": ""}, {"sig": ""}, {"sig": ""}, {"sig": ""},
                    {"sig": ""}, {"sig": ""}, {"sig": ""}, {"sig": ""}]}}"#,
                "at most 8",
            ),
        ] {
            let error = signatures_of("x", bundle.as_bytes()).err().unwrap_or_default();
            assert!(error.contains(expected), "{bundle}: {error}");
        }
        // Unpadded and URL-safe base64 are read, as protobuf's JSON parsers read them.
        let lenient = r#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "dsseEnvelope": {"payload": "e30", "payloadType": "x", "signatures": [{"sig": "-_8"}]}}"#;
        let read = signatures_of("x", lenient.as_bytes()).expect("parses");
        assert_eq!(
            (read[0].payload.as_slice(), read[0].signature.as_slice()),
            (b"{}".as_slice(), [0xfb, 0xff].as_slice())
        );
    }

    #[test]
    fn referrers_are_filtered_to_bundles_and_their_layer_found() {
        let hex = "c".repeat(64);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{hex}"), "size": 700, "artifactType": BUNDLE_MEDIA_TYPE},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "d".repeat(64)), "size": 500, "artifactType": "application/spdx+json"},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "e".repeat(64)), "size": 500},
            ],
        });
        let found = bundle_referrers("x", &serde_json::to_vec(&index).expect("JSON")).expect("lists");
        assert_eq!(found.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(), vec![format!("sha256:{hex}")]);

        let many = serde_json::json!({"manifests": vec![index["manifests"][0].clone(); MAX_SIGNATURES + 1]});
        let error = bundle_referrers("x", &serde_json::to_vec(&many).expect("JSON")).expect_err("too many");
        assert!(error.contains("at most 64"), "{error}");

        // cosign's referrer manifest: the artifact type on the manifest and on its empty config.
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": BUNDLE_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "artifactType": BUNDLE_MEDIA_TYPE, "digest": format!("sha256:{}", "4".repeat(64)), "size": 2},
            "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": format!("sha256:{hex}"), "size": 1500}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest('a'), "size": 400},
        });
        let layer = bundle_layer("x", &serde_json::to_vec(&manifest).expect("JSON")).expect("reads").expect("a bundle");
        assert_eq!((layer.digest, layer.size), (format!("sha256:{hex}"), 1500));

        let mut huge = manifest.clone();
        huge["layers"][0]["size"] = (MAX_BUNDLE_BYTES + 1).into();
        let error = bundle_layer("x", &serde_json::to_vec(&huge).expect("JSON")).expect_err("too large");
        assert!(error.contains("at most"), "{error}");

        let mut sbom = manifest;
        sbom["artifactType"] = "application/spdx+json".into();
        sbom["config"]["artifactType"] = "application/spdx+json".into();
        assert!(bundle_layer("x", &serde_json::to_vec(&sbom).expect("JSON")).expect("reads").is_none());
    }
}
