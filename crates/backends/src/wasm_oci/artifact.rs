//! The CNCF Wasm OCI artifact layout, as `wkg oci push` writes it and
//! `wkg oci pull` reads it: an OCI image manifest whose config has the media
//! type `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component (`application/wasm`).
//!
//! Writing the layout and checking a pulled manifest against it, with no
//! network: the transfer lives in [`super::transfer`]. The config type is
//! ours (about forty lines) rather than the `oci-wasm` crate's, because that
//! crate pins an older `oci-client` than stepbox uses and the two do not mix.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::{Deserialize, Serialize};

use super::WasmOciError;

/// The media type of an OCI image manifest, the only manifest kind a Wasm
/// artifact may be.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of a Wasm artifact's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of a Wasm artifact's layer: the component itself.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The annotation naming the layer's file, as `wkg` sets it.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// The most bytes a manifest may have (containerd's limit too): a registry
/// answering with more is refused before it fills memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The most bytes a Wasm artifact's config may have: it lists the
/// component's imports and exports, a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The config of a Wasm artifact (field names as the layout's, camelCase;
/// absent fields read as empty, as the reference implementation reads them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WasmConfig {
    /// When the artifact was made (RFC 3339).
    pub created: Option<String>,
    /// Who made it, if said.
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: Option<String>,
    /// `wasip2` for a component.
    pub os: Option<String>,
    /// The layers' digests, in manifest order.
    pub layer_digests: Vec<String>,
    /// The component's world, for indexes; absent for a core module.
    pub component: Option<ComponentWorld>,
}

/// What a component imports and exports, by top-level name
/// (`wasi:http/outgoing-handler@0.2.6`, `stepbox:operator/operator@0.2.1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentWorld {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The world's name; written as null, as `wkg` does.
    pub target: Option<String>,
}

/// A descriptor of a blob: what the manifest says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:HEX`.
    pub digest: String,
    /// Its size in bytes, as the manifest declares it.
    pub size: u64,
}

/// An artifact ready to push: the blobs and the manifest's exact bytes.
#[derive(Debug, Clone)]
pub struct Built {
    /// The config blob's bytes.
    pub config: Vec<u8>,
    /// The config blob's digest.
    pub config_digest: String,
    /// The layer's digest (the component's bytes are the caller's).
    pub layer_digest: String,
    /// The manifest, exactly as pushed.
    pub manifest: Vec<u8>,
    /// The manifest's digest: what a user pins.
    pub manifest_digest: String,
}

/// `sha256:HEX` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Lay out `component` (called `file_name`) as a Wasm artifact made at
/// `created` (RFC 3339).
pub fn build(component: &[u8], file_name: &str, world: ComponentWorld, created: &str) -> Result<Built, WasmOciError> {
    let layer_digest = digest_of(component);
    let config = WasmConfig {
        created: Some(created.to_owned()),
        author: None,
        architecture: Some("wasm".to_owned()),
        os: Some("wasip2".to_owned()),
        layer_digests: vec![layer_digest.clone()],
        component: Some(world),
    };
    // `author` and `target` are written as null, as the reference implementation does.
    let config = serde_json::to_vec(&config).map_err(|error| WasmOciError::Internal(error.to_string()))?;
    let config_digest = digest_of(&config);
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        config: descriptor(CONFIG_MEDIA_TYPE, &config_digest, config.len(), None),
        layers: vec![descriptor(
            LAYER_MEDIA_TYPE,
            &layer_digest,
            component.len(),
            Some(BTreeMap::from([(TITLE_ANNOTATION.to_owned(), file_name.to_owned())])),
        )],
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|error| WasmOciError::Internal(error.to_string()))?;
    let manifest_digest = digest_of(&manifest);
    Ok(Built { config, config_digest, layer_digest, manifest, manifest_digest })
}

pub(super) fn descriptor(
    media_type: &str,
    digest: &str,
    size: usize,
    annotations: Option<BTreeMap<String, String>>,
) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_owned(),
        size: size as i64,
        urls: None,
        annotations,
        artifact_type: None,
    }
}

/// The two blobs a Wasm artifact's manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactBlobs {
    pub config: Blob,
    pub layer: Blob,
}

/// Check that `manifest` (as pulled from `shown`) describes a Wasm
/// component artifact of at most `max_layer_bytes`, and name its blobs.
/// Descriptor `urls` (foreign layers) are never followed: the blobs come
/// from the registry the user named.
pub fn check_manifest(shown: &str, manifest: &[u8], max_layer_bytes: u64) -> Result<ArtifactBlobs, WasmOciError> {
    let not_wasm = |why: String| WasmOciError::NotAWasmArtifact { reference: shown.to_owned(), why };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        media_type: Option<String>,
        config: Option<serde_json::Value>,
    }
    let kind: Kind = serde_json::from_slice(manifest)
        .map_err(|error| not_wasm(format!("its manifest is not a JSON manifest ({error})")))?;
    match kind.media_type.as_deref() {
        Some(MANIFEST_MEDIA_TYPE) => {}
        Some(index)
            if index == "application/vnd.oci.image.index.v1+json"
                || index == "application/vnd.docker.distribution.manifest.list.v2+json" =>
        {
            return Err(not_wasm(format!(
                "it is an image index ({index}), as multi-platform container images are; a Wasm artifact is one manifest"
            )));
        }
        Some(other) => return Err(not_wasm(format!("its manifest is `{other}`, not an OCI image manifest"))),
        None if kind.config.is_some() => {
            return Err(not_wasm("its manifest does not say its media type; a Wasm artifact's must".to_owned()));
        }
        None => return Err(not_wasm("it is not an OCI image manifest".to_owned())),
    }
    let manifest: OciImageManifest =
        serde_json::from_slice(manifest).map_err(|error| not_wasm(format!("its manifest does not parse ({error})")))?;
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_wasm(format!(
            "its config is `{}`, not `{CONFIG_MEDIA_TYPE}` (is it a container image?)",
            manifest.config.media_type
        )));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(not_wasm(format!("it has {} layers; a Wasm artifact has exactly one", manifest.layers.len())));
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(not_wasm(format!("its layer is `{}`, not `{LAYER_MEDIA_TYPE}`", layer.media_type)));
    }
    let config = blob(shown, "config", &manifest.config)?;
    if config.size > MAX_CONFIG_BYTES {
        return Err(WasmOciError::TooLarge {
            what: format!("{shown}'s config"),
            size: config.size,
            limit: MAX_CONFIG_BYTES,
        });
    }
    let layer = blob(shown, "layer", layer)?;
    if layer.size > max_layer_bytes {
        return Err(WasmOciError::TooLarge {
            what: format!("{shown}'s component"),
            size: layer.size,
            limit: max_layer_bytes,
        });
    }
    Ok(ArtifactBlobs { config, layer })
}

/// A descriptor as a [`Blob`]: a well-formed sha256 digest and a size.
pub(super) fn blob(shown: &str, what: &str, descriptor: &OciDescriptor) -> Result<Blob, WasmOciError> {
    let digest = &descriptor.digest;
    let well_formed = digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if !well_formed {
        return Err(WasmOciError::NotAWasmArtifact {
            reference: shown.to_owned(),
            why: format!("its {what}'s digest `{digest}` is not sha256:<64 lowercase hex digits>"),
        });
    }
    let size = u64::try_from(descriptor.size).map_err(|_| WasmOciError::NotAWasmArtifact {
        reference: shown.to_owned(),
        why: format!("its {what}'s size {} is negative", descriptor.size),
    })?;
    Ok(Blob { digest: digest.clone(), size })
}

/// Check a pulled blob against its descriptor: no more bytes than declared
/// (the transfer stops there already) and the declared digest.
pub fn check_blob(what: &str, expected: &Blob, bytes: &[u8]) -> Result<(), WasmOciError> {
    let actual = digest_of(bytes);
    if actual != expected.digest || bytes.len() as u64 != expected.size {
        return Err(WasmOciError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.digest.clone(),
            actual: format!("{actual} ({} bytes, {} declared)", bytes.len(), expected.size),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 256 << 20;

    fn world() -> ComponentWorld {
        ComponentWorld {
            exports: vec!["stepbox:operator/operator@0.2.1".into()],
            imports: vec!["wasi:io/streams@0.2.6".into()],
            target: None,
        }
    }

    #[test]
    fn a_built_artifact_has_the_cncf_layout_and_checks_back() {
        let built = build(b"\0asm\x0d\0\x01\0", "local.wasm", world(), "2026-12-03T00:00:00Z").expect("builds");
        let manifest: serde_json::Value = serde_json::from_slice(&built.manifest).expect("JSON");
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["annotations"][TITLE_ANNOTATION], "local.wasm");
        assert!(manifest.get("artifactType").is_none(), "identified by the config type alone");
        let config: serde_json::Value = serde_json::from_slice(&built.config).expect("JSON");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"][0], built.layer_digest);
        assert_eq!(config["author"], serde_json::Value::Null);
        assert_eq!(config["component"]["target"], serde_json::Value::Null);
        assert_eq!(built.manifest_digest, digest_of(&built.manifest));
        let blobs = check_manifest("r/x:1", &built.manifest, LIMIT).expect("a Wasm artifact");
        assert_eq!(blobs.layer, Blob { digest: built.layer_digest, size: 8 });
        assert_eq!(blobs.config.digest, built.config_digest);
    }

    #[test]
    fn manifests_that_are_not_wasm_artifacts_are_refused_with_the_reason() {
        let sha = format!("sha256:{}", "a".repeat(64));
        let manifest = |media: &str, config: &str, layers: &[(&str, i64)]| {
            let layers: Vec<_> = layers
                .iter()
                .map(|(media, size)| serde_json::json!({"mediaType": media, "digest": sha, "size": size}))
                .collect();
            serde_json::json!({
                "schemaVersion": 2, "mediaType": media,
                "config": {"mediaType": config, "digest": sha, "size": 10}, "layers": layers,
            })
            .to_string()
        };
        let image = "application/vnd.oci.image.config.v1+json";
        let cases = [
            ("not json".to_owned(), "not a JSON manifest"),
            (r#"{"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#.to_owned(), "image index"),
            (
                manifest("application/vnd.docker.distribution.manifest.v2+json", CONFIG_MEDIA_TYPE, &[]),
                "not an OCI image manifest",
            ),
            (manifest(MANIFEST_MEDIA_TYPE, image, &[(LAYER_MEDIA_TYPE, 1)]), "is it a container image?"),
            (manifest(MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, &[]), "0 layers"),
            (
                manifest(MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, &[(LAYER_MEDIA_TYPE, 1), (LAYER_MEDIA_TYPE, 1)]),
                "2 layers",
            ),
            (
                manifest(MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, &[("application/vnd.oci.image.layer.v1.tar", 1)]),
                "not `application/wasm`",
            ),
            (manifest(MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, &[(LAYER_MEDIA_TYPE, -1)]), "negative"),
            (
                manifest(MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, &[(LAYER_MEDIA_TYPE, 2 << 30)]),
                "is 2.0 GiB, more than the 256.0 MiB",
            ),
            (
                manifest(MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, &[(LAYER_MEDIA_TYPE, 1)]).replace(&sha, "sha256:../x"),
                "not sha256:",
            ),
        ];
        for (manifest, expected) in cases {
            let error = check_manifest("r/x:1", manifest.as_bytes(), LIMIT).expect_err(&manifest).to_string();
            assert!(
                error.contains(expected) && error.contains("r/x:1"),
                "{manifest}\n  gave: {error}\n  wanted: {expected}"
            );
        }
    }

    #[test]
    fn a_blob_must_have_its_declared_digest_and_size() {
        let blob = Blob { digest: digest_of(b"component"), size: 9 };
        check_blob("layer", &blob, b"component").expect("matches");
        let error = check_blob("layer", &blob, b"tampered!").expect_err("another digest").to_string();
        assert!(error.contains("does not match") && error.contains(&blob.digest), "{error}");
    }
}
