//! The fuzz targets' bodies: each takes arbitrary bytes, feeds them to
//! what stepbox reads from users, flavors, files and services, and checks
//! what must hold for any input (no panic, no unbounded work, round trips
//! that return what went in, paths that stay inside their directory).
//!
//! `fuzz_targets/*.rs` are the `cargo fuzz` entry points (`cargo fuzz run
//! NAME`); `tests/corpora.rs` replays every committed corpus input through
//! the same functions in the ordinary test suite, so a crash found once
//! stays fixed. See docs/RELIABILITY.md, "Fuzzing".

use std::path::PathBuf;
use std::sync::OnceLock;

/// The input as text, or nothing (these readers all take text).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `flavor register` / `flavor inspect` of arbitrary bytes: inspecting
/// reads the binary without compiling it, and must describe or refuse
/// anything; the cache's seal must refuse anything it did not write.
pub fn component(data: &[u8]) {
    let inspection = stepbox::inspect::inspect("fuzz.wasm", data);
    assert_eq!(inspection.size, data.len() as u64);
    let _ = stepbox::component::check_binary("fuzz.wasm", data);
    if let Ok(body) = stepbox::component::unseal(data) {
        // Only a seal over exactly these bytes opens.
        assert_eq!(stepbox::component::seal(body.to_vec()), data);
    }
}

/// `step-operator register --config KEY=VALUE` against a flavor's config
/// schema: the schema (JSON), a NUL, then `KEY=VALUE` lines. Every pair
/// lands in the config under its key; a string-typed key keeps its text.
pub fn config(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let (schema, pairs) = input.split_once('\0').unwrap_or((input, ""));
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap_or_else(|_| serde_json::json!({}));
    let pairs: Vec<(String, String)> = pairs
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    let config = stepbox::step_operators::config_from_pairs(&schema, &pairs);
    for (key, value) in &pairs {
        let Some(got) = config.get(key) else { panic!("`{key}` was dropped") };
        if schema["properties"][key]["type"] == "string"
            && pairs.iter().rev().find(|(k, _)| k == key) == Some(&(key.clone(), value.clone()))
        {
            assert_eq!(got.as_str(), Some(value.as_str()), "a string keeps its text");
        }
    }
}

/// A step's requirements (PEP 508 lines, from the caller or a flavor):
/// normalizing is idempotent, and the handle depends only on the set.
pub fn requirements(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let lines: Vec<String> = input.lines().map(str::to_owned).collect();
    let Ok(spec) = stepbox::environments::NormalizedSpec::new(&lines, None) else { return };
    let again = stepbox::environments::NormalizedSpec::new(spec.requirements(), None)
        .unwrap_or_else(|error| panic!("a normalized set no longer parses: {error}"));
    assert_eq!(again.requirements(), spec.requirements(), "normalizing twice changes nothing");
    assert_eq!(again.handle(), spec.handle());
    let _ = spec.describe();
}

/// `--grant` values, one per line: whatever is granted, describing the
/// grants gives `--grant` values that recreate exactly them, and the stored
/// form (JSON) reads back the same.
pub fn grants(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let mut grants = stepbox::policy::Grants::default();
    for line in input.lines() {
        let _ = grants.grant(line);
    }
    let described = grants.describe();
    let mut again = stepbox::policy::Grants::default();
    for value in &described {
        again.grant(value).unwrap_or_else(|error| panic!("`{value}` from describe() is refused: {error}"));
    }
    assert_eq!(again.describe(), described, "describe() recreates the grants");
    let stored = serde_json::to_string(&grants).expect("grants serialize");
    let read: stepbox::policy::Grants = serde_json::from_str(&stored).expect("stored grants read back");
    assert_eq!(read, grants);
    for value in &described {
        let _ = grants.revoke(value);
    }
}

/// Egress: an origin pattern (`http-origin=`), credential grants
/// (`http-credential=`) and URLs a flavor asks for, one per line. Parsing
/// and matching take anything; a pattern that matches a URL matches it
/// again when parsed from its own text.
pub fn egress(data: &[u8]) {
    use stepbox::policy::egress::{CredentialGrant, OriginPattern};
    let Some(input) = text(data) else { return };
    let mut lines = input.lines();
    let pattern = lines.next().and_then(|line| OriginPattern::parse(line).ok());
    for line in lines {
        let _ = CredentialGrant::parse(line);
        let _ = stepbox::policy::connections::origin(line);
        if let (Some(pattern), Ok(url)) = (&pattern, url::Url::parse(line)) {
            let _ = pattern.matches(&url);
        }
    }
}

/// OCI: an image reference, a NUL, then a manifest (a foreign layout's, or
/// a registry's). Every digest the manifest names maps to a blob path
/// inside the layout, or is refused; a manifest taken as a flavor artifact
/// names two well-formed sha256 digests and a layer within the bound; read
/// as a signature manifest, or as cosign 3's referrers list, referrer
/// manifest or Sigstore bundle, it lists no more signatures, bundles and
/// payloads than the bounds, and nothing verifies without a trusted key. The reference
/// text is also read as a public key and a trust scope (which reads back
/// as itself).
pub fn oci(data: &[u8]) {
    use stepbox::wasm_oci::{artifact, transfer};
    let split = data.iter().position(|byte| *byte == 0).unwrap_or(data.len());
    let (reference, manifest) = data.split_at(split);
    if let Some(reference) = text(reference) {
        let _ = stepbox::images::registry::parse(reference);
        let _ = transfer::parse_reference(reference);
        let _ = stepbox::wasm_oci::keys::PublicKey::from_pem("fuzz", reference);
        if let Ok(scope) = stepbox::trust_scope::TrustScope::parse(reference) {
            let again = stepbox::trust_scope::TrustScope::parse(&scope.to_string());
            assert_eq!(again.as_ref(), Ok(&scope), "a trust scope reads back as itself");
        }
    }
    let manifest = manifest.get(1..).unwrap_or_default();
    const LAYER_LIMIT: u64 = 1 << 20;
    if let Ok(blobs) = artifact::check_manifest("fuzz", manifest, LAYER_LIMIT) {
        assert!(blobs.layer.size <= LAYER_LIMIT, "a layer over the bound was taken");
        assert!(blobs.config.size <= artifact::MAX_CONFIG_BYTES, "a config over the bound was taken");
        for digest in [&blobs.config.digest, &blobs.layer.digest] {
            assert!(digest.len() == 71 && digest.starts_with("sha256:"), "`{digest}` was taken as a digest");
        }
    }
    // The same bytes as a signature manifest, and its payloads' claims.
    if let Ok(listed) = stepbox::wasm_oci::signature::list("fuzz", manifest) {
        assert!(listed.len() <= stepbox::wasm_oci::signature::MAX_SIGNATURES, "more signatures than the bound");
        for signature in &listed {
            assert!(signature.blob.size <= stepbox::wasm_oci::signature::MAX_PAYLOAD_BYTES, "a payload over the bound");
        }
    }
    // The same bytes as cosign 3's referrers list, referrer manifest and bundle.
    use stepbox::wasm_oci::bundle;
    if let Ok(referrers) = bundle::bundle_referrers("fuzz", manifest) {
        assert!(referrers.len() <= stepbox::wasm_oci::signature::MAX_SIGNATURES, "more bundles than the bound");
        assert!(referrers.iter().all(|blob| blob.size <= bundle::MAX_INDEX_BYTES), "a referrer over the bound");
    }
    if let Ok(Some(layer)) = bundle::bundle_layer("fuzz", manifest) {
        assert!(layer.size <= bundle::MAX_BUNDLE_BYTES, "a bundle over the bound");
    }
    let mut signatures = vec![stepbox::wasm_oci::signature::Signature::simple(manifest.to_vec(), Vec::new())];
    if let Ok(found) = bundle::signatures_of("fuzz", manifest) {
        assert!(found.len() <= bundle::MAX_ENVELOPE_SIGNATURES, "more envelope signatures than the bound");
        signatures.extend(found);
    }
    let candidates: [stepbox::wasm_oci::signature::Candidate<'_>; 0] = [];
    let verdict = stepbox::wasm_oci::signature::verify("fuzz/x", "sha256:00", &signatures, &candidates);
    assert!(verdict.is_err(), "nothing verifies without a trusted key");
    let Ok(manifest) = serde_json::from_slice::<oci_client::manifest::OciImageManifest>(manifest) else { return };
    let layout = layout();
    let blobs = layout.root().join("blobs").join("sha256");
    for digest in std::iter::once(&manifest.config.digest).chain(manifest.layers.iter().map(|layer| &layer.digest)) {
        if let Ok(path) = layout.blob_path(digest) {
            assert_eq!(path.parent(), Some(blobs.as_path()), "`{digest}` stays in the layout's blobs");
        }
    }
}

/// One layout for every run of [`oci`] (made once: only paths are checked).
fn layout() -> &'static stepbox::images::layout::Layout {
    static LAYOUT: OnceLock<stepbox::images::layout::Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let root: PathBuf = std::env::temp_dir().join(format!("stepbox-fuzz-layout-{}", std::process::id()));
        stepbox::images::layout::Layout::create(&root).expect("a scratch OCI layout")
    })
}

/// Slurm: lines of `scontrol show job -o`, as a cluster (or anything
/// pretending to be one) prints them.
pub fn slurm(data: &[u8]) {
    use stepbox::backends::slurm::state;
    let Some(input) = text(data) else { return };
    for line in input.lines() {
        let fields = state::parse_fields(line);
        for cancel_requested in [false, true] {
            let status = state::status_of(&fields, cancel_requested);
            if cancel_requested && status.state.is_terminal() {
                // A job stepbox asked to cancel that ended is cancelled, whatever Slurm calls it.
                assert_eq!(status.state, stepbox::backends::JobState::Cancelled, "{line}");
            }
        }
        if let Some(code) = fields.get("ExitCode") {
            let _ = state::exit_code(code);
        }
    }
}

/// Ray: the body of `GET /api/jobs/<id>` (JSON from a cluster, or anything
/// answering in its place).
pub fn ray(data: &[u8]) {
    let Ok(details) = serde_json::from_slice::<stepbox::backends::ray::JobDetails>(data) else { return };
    for stop_requested in [false, true] {
        let status = stepbox::backends::ray::status_of(&details, stop_requested);
        if status.state == stepbox::backends::JobState::Succeeded {
            assert_eq!(details.status, "SUCCEEDED");
        }
    }
}
