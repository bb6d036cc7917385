//! Flavors from OCI registries: `stepbox flavor push` writes the CNCF Wasm
//! OCI artifact layout to the test registry, `stepbox flavor sign` writes a
//! cosign signature beside it, `stepbox flavor register oci://…` pulls it by
//! tag or digest, verifies the signature against the trust policy and pins
//! the digest; and a fake registry (a loopback HTTP server) for what a real
//! one will not do: serve tampered or oversized blobs, redirect blob reads
//! to a storage host, loop, list cosign v3's signature bundles through the
//! referrers API. Every refusal registers nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::Digest as _;
use stepbox_e2e::fake_http::{FakeServer, Recorded, Reply};
use stepbox_e2e::login_registry::LoginRegistry;
use stepbox_e2e::{TestHome, local_flavor, path_str, registry, workspace};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A repository of its own in the shared test registry, so runs and tests never meet.
fn fresh_repository(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}/stepbox-test/flavors-{nanos:x}/{name}", registry())
}

/// A key pair of the test fixtures: `publisher` or `stranger`, `key` or `pub`.
fn key(name: &str, kind: &str) -> String {
    workspace().join(format!("tests/fixtures/keys/{name}.{kind}")).display().to_string()
}

/// Push the local flavor to `tag`; the manifest digest.
fn push(t: &TestHome, tag: &str) -> String {
    let pushed = t.run(&["flavor", "push", path_str(&local_flavor()), tag, "-o", "json"]);
    pushed.expect_code(0).json()["digest"].as_str().expect("a digest").to_owned()
}

/// `stepbox flavor sign REFERENCE --key KEY`, with no cosign password set.
fn sign(t: &TestHome, reference: &str, key_file: &str) -> stepbox_e2e::Run {
    let mut command = t.command(&["flavor", "sign", reference, "--key", key_file, "-o", "json"]);
    command.env_remove("COSIGN_PASSWORD");
    stepbox_e2e::Run::from_output(command.output().expect("stepbox starts"))
}

/// The test registry's scope for this run's repositories.
fn test_scope() -> String {
    format!("{}/stepbox-test", registry())
}

fn no_flavors(t: &TestHome) {
    let listed = t.run(&["flavor", "list", "-o", "json"]);
    assert_eq!(listed.expect_code(0).json(), serde_json::json!([]), "nothing may be registered");
}

#[test]
fn a_pushed_flavor_registers_by_tag_pinned_to_its_digest_and_runs() {
    let t = TestHome::sharing_cache();
    let file = local_flavor();
    let bytes = std::fs::read(&file).expect("the local flavor");
    let repository = fresh_repository("local");
    let tag = format!("{repository}:1");

    let pushed = t.run(&["flavor", "push", path_str(&file), &tag, "-o", "json"]);
    let pushed = pushed.expect_code(0).json();
    let manifest_digest = pushed["digest"].as_str().expect("a digest").to_owned();
    assert_eq!(pushed["layer_digest"], digest(&bytes), "the layer is the file");

    // The layout as the CNCF Wasm OCI artifact document gives it, read straight from the registry.
    let manifest = curl(&format!("http://{}/v2/{}/manifests/1", registry(), repo_path(&repository)), MANIFEST);
    assert_eq!(digest(&manifest), manifest_digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("JSON");
    assert_eq!(manifest["mediaType"], MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], digest(&bytes));
    let config = curl(
        &format!(
            "http://{}/v2/{}/blobs/{}",
            registry(),
            repo_path(&repository),
            manifest["config"]["digest"].as_str().expect("digest")
        ),
        "*/*",
    );
    let config: serde_json::Value = serde_json::from_slice(&config).expect("JSON");
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip2")));
    assert_eq!(config["layerDigests"], serde_json::json!([digest(&bytes)]));
    let exports = config["component"]["exports"].to_string();
    assert!(exports.contains("stepbox:operator/operator@"), "{exports}");

    sign(&t, &tag, &key("publisher", "key")).expect_code(0);
    t.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &test_scope()]).expect_code(0);
    let registered = t.run(&["flavor", "register", &format!("oci://{tag}"), "-o", "json"]).expect_code(0).json();
    assert_eq!(registered["name"], "local");
    assert_eq!(registered["provenance"]["kind"], "signed");
    assert_eq!(registered["provenance"]["key"], "publisher");
    assert_eq!(registered["sha256"], hex(&sha2::Sha256::digest(&bytes)));
    assert_eq!(registered["source_path"], format!("oci://{tag}@{manifest_digest}"));

    t.register_operator("local", "local", &["--grant", "jobs", "--grant", "requirements"]).expect_code(0);
    let run = t.launch("local", "train", &["echo", "pulled from a registry"]);
    assert!(run.expect_code(0).stdout.contains("pulled from a registry"), "{}", run.stdout);

    // The tag moves (a push of the same file makes a new manifest); the registered flavor does not.
    let again = t.run(&["flavor", "push", path_str(&file), &tag, "-o", "json"]).expect_code(0).json();
    assert_ne!(again["digest"], manifest_digest.as_str(), "a push records when it was made");
    let described = t.run(&["flavor", "describe", "local", "-o", "json"]).expect_code(0).json();
    assert_eq!(described["source_path"], format!("oci://{tag}@{manifest_digest}"));
    let shown = t.run(&["flavor", "describe", "local"]).expect_code(0).stdout.clone();
    assert!(shown.contains(&manifest_digest), "describe shows the pinned digest:\n{shown}");
}

#[test]
fn a_flavor_registers_by_digest_and_an_unknown_digest_or_tag_is_not_found() {
    let t = TestHome::sharing_cache();
    let file = local_flavor();
    let repository = fresh_repository("by-digest");
    let pushed = t.run(&["flavor", "push", path_str(&file), &format!("{repository}:v1"), "-o", "json"]);
    let manifest_digest = pushed.expect_code(0).json()["digest"].as_str().expect("digest").to_owned();

    let pinned = format!("oci://{repository}@{manifest_digest}");
    let registered = t.run(&["flavor", "register", &pinned, "--allow-unsigned", "-o", "json"]).expect_code(0).json();
    assert_eq!(registered["source_path"], pinned);
    assert_eq!(registered["provenance"]["kind"], "unsigned");
    let shown = t.run(&["flavor", "describe", "local"]).expect_code(0).stdout.clone();
    assert!(shown.contains("UNSIGNED: registered from a registry with --allow-unsigned"), "{shown}");

    let other = TestHome::sharing_cache();
    let missing = format!("oci://{repository}@sha256:{}", "0".repeat(64));
    other.run(&["flavor", "register", &missing]).expect_error(64, "was not found in its registry");
    other.run(&["flavor", "register", &format!("oci://{repository}:nope")]).expect_error(64, "was not found");
    other.run(&["flavor", "register", &format!("oci://{repository}")]).expect_error(64, "no tag or digest");
    other.run(&["flavor", "register", "oci://flavors/local:1"]).expect_error(64, "registry's host");
    no_flavors(&other);
}

#[test]
fn a_container_image_is_not_a_flavor_and_a_non_flavor_is_not_pushed() {
    let t = TestHome::sharing_cache();
    let image = format!("oci://{}/stepbox-test/busybox:1", registry());
    let refused = t.run(&["flavor", "register", &image]);
    refused.expect_error(64, "is not a Wasm component artifact");
    assert!(refused.stderr.contains("container image"), "{}", refused.stderr);
    no_flavors(&t);

    let not_a_flavor = t.scratch().join("notes.wasm");
    std::fs::write(&not_a_flavor, "not wasm").expect("write");
    let tag = format!("{}:1", fresh_repository("junk"));
    t.run(&["flavor", "push", path_str(&not_a_flavor), &tag]).expect_error(64, "not pushed");
}

#[test]
fn a_registry_that_wants_a_login_gets_the_one_from_the_secret() {
    let login = LoginRegistry::start("flavors", "s3cret");
    let t = TestHome::sharing_cache();
    let tag = format!("{}/team/local:1", login.address());
    let file = local_flavor();

    let refused = t.run(&["flavor", "push", path_str(&file), &tag]);
    refused.expect_error(77, "wants a login");
    assert!(refused.stderr.contains("--registry-credential"), "{}", refused.stderr);

    t.set_secret("registry-login", br#"{"username": "flavors", "password": "s3cret"}"#).expect_code(0);
    let credential = format!("{}=basic:registry-login", login.address());
    t.run(&["flavor", "push", path_str(&file), &tag, "--registry-credential", &credential]).expect_code(0);
    t.run(&["flavor", "register", &format!("oci://{tag}")]).expect_error(77, "wants a login");
    no_flavors(&t);
    t.run(&["flavor", "register", &format!("oci://{tag}"), "--registry-credential", &credential])
        .expect_error(77, "is not signed");
    let signed = sign(&t, &tag, &key("publisher", "key"));
    signed.expect_error(77, "wants a login");
    let mut command =
        t.command(&["flavor", "sign", &tag, "--key", &key("publisher", "key"), "--registry-credential", &credential]);
    command.env_remove("COSIGN_PASSWORD");
    stepbox_e2e::Run::from_output(command.output().expect("stepbox starts")).expect_code(0);
    let scope = format!("{}/team", login.address());
    t.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &scope]).expect_code(0);
    t.run(&["flavor", "register", &format!("oci://{tag}"), "--registry-credential", &credential]).expect_code(0);

    t.set_secret("wrong-login", br#"{"username": "flavors", "password": "guess"}"#).expect_code(0);
    let other = format!("{}=basic:wrong-login", login.address());
    t.run(&[
        "flavor",
        "register",
        "--replace",
        &format!("oci://{tag}"),
        "--allow-unsigned",
        "--registry-credential",
        &other,
    ])
    .expect_error(77, "refused the login");
    t.run(&["flavor", "push", path_str(&file), &tag, "--registry-credential", &other])
        .expect_error(77, "refused the login");
}

#[test]
fn an_unreachable_registry_is_a_clear_error() {
    let t = TestHome::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    // The listener is gone: nothing answers on that port.
    t.run(&["flavor", "register", &format!("oci://127.0.0.1:{port}/flavors/local:1"), "--allow-unsigned"])
        .expect_error(69, &format!("cannot reach the registry 127.0.0.1:{port}"));
    no_flavors(&t);
}

/// What a fake registry serves: one artifact of the local flavor, whose
/// blobs may be replaced or redirected.
struct Served {
    manifest: Vec<u8>,
    blobs: BTreeMap<String, Vec<u8>>,
    layer_digest: String,
}

impl Served {
    /// The local flavor as a Wasm artifact, the layer declared as `declared_size` (its real size by default).
    fn local(declared_size: Option<u64>) -> Self {
        let layer = std::fs::read(local_flavor()).expect("the local flavor");
        let layer_digest = digest(&layer);
        let config = serde_json::json!({
            "created": "2026-12-03T00:00:00Z", "author": null, "architecture": "wasm", "os": "wasip2",
            "layerDigests": [layer_digest], "component": {"exports": [], "imports": [], "target": null},
        })
        .to_string()
        .into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": WASM_CONFIG, "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/wasm", "digest": layer_digest, "size": declared_size.unwrap_or(layer.len() as u64)}],
        })
        .to_string()
        .into_bytes();
        let blobs = BTreeMap::from([(digest(&config), config), (layer_digest.clone(), layer)]);
        Self { manifest, blobs, layer_digest }
    }
}

type BlobAnswer = dyn Fn(&str, &[u8]) -> Reply + Send + Sync;

/// A registry serving `served` under `flavors/local:1`; blob requests are answered by `blob`.
fn fake_registry(served: Served, login: bool, blob: Arc<BlobAnswer>) -> FakeServer {
    FakeServer::start(move |request: &Recorded| {
        if login && request.header("authorization").is_none() {
            return Reply::text(401, "login").with_header("WWW-Authenticate", "Basic realm=\"fake\"");
        }
        match request.path.as_str() {
            "/v2/" => Reply::text(200, "{}"),
            "/v2/flavors/local/manifests/1" => Reply {
                status: 200,
                headers: vec![("Content-Type".into(), MANIFEST.into())],
                body: served.manifest.clone(),
            },
            path => {
                match path.strip_prefix("/v2/flavors/local/blobs/").and_then(|d| served.blobs.get(d).map(|b| (d, b))) {
                    Some((digest, bytes)) => blob(digest, bytes),
                    None => Reply::text(404, "unknown"),
                }
            }
        }
    })
}

fn octets(bytes: &[u8]) -> Reply {
    Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/octet-stream".into())],
        body: bytes.to_vec(),
    }
}

fn register_from(t: &TestHome, server: &FakeServer, extra: &[&str]) -> stepbox_e2e::Run {
    let mut args = vec![
        "flavor".to_owned(),
        "register".to_owned(),
        format!("oci://127.0.0.1:{}/flavors/local:1", server.port()),
        "--allow-unsigned".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    t.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn blobs_redirected_to_a_storage_host_are_followed_without_the_registrys_credentials() {
    let storage = Arc::new(FakeServer::start(|request: &Recorded| {
        let digest = request.path.trim_start_matches("/store/").split('?').next().unwrap_or_default().to_owned();
        let served = Served::local(None);
        served.blobs.get(&digest).map_or_else(|| Reply::text(404, "no"), |bytes| octets(bytes))
    }));
    let storage_origin = storage.origin();
    let registry = fake_registry(
        Served::local(None),
        true,
        Arc::new(move |digest, _| {
            Reply::text(307, "")
                .with_header("Location", &format!("{storage_origin}/store/{digest}?X-Signature=presigned"))
        }),
    );
    let t = TestHome::sharing_cache();
    t.set_secret("fake-login", br#"{"username": "u", "password": "registry-password"}"#).expect_code(0);
    let credential = format!("127.0.0.1:{}=basic:fake-login", registry.port());
    register_from(&t, &registry, &["--registry-credential", &credential]).expect_code(0);

    let to_registry = registry.requests_to("/v2/flavors/local/blobs/");
    assert_eq!(to_registry.len(), 2, "config and layer were asked of the registry");
    assert!(to_registry.iter().all(|r| r.header("authorization").is_some()), "the registry gets its login");
    let to_storage = storage.requests_to("/store/");
    assert_eq!(to_storage.len(), 2, "both blobs came from the storage host");
    for request in to_storage {
        assert_eq!(request.header("authorization"), None, "the registry's login stays with the registry: {request:?}");
    }
}

#[test]
fn redirect_loops_and_non_http_redirects_are_refused() {
    for (location, expected) in
        [(None, "it loops"), (Some("ftp://127.0.0.1/blob"), "`ftp:` URL"), (Some("file:///etc/passwd"), "`file:` URL")]
    {
        let t = TestHome::new();
        let registry = Arc::new(std::sync::OnceLock::<String>::new());
        let origin = Arc::clone(&registry);
        let server = fake_registry(
            Served::local(None),
            false,
            Arc::new(move |digest, _| {
                let target = match location {
                    Some(url) => url.to_owned(),
                    // Between two URLs of its own, back and forth.
                    None => format!("{}/v2/flavors/local/blobs/{digest}", origin.get().map_or("", String::as_str)),
                };
                Reply::text(302, "").with_header("Location", &target)
            }),
        );
        let _ = registry.set(server.origin());
        let refused = register_from(&t, &server, &[]);
        refused.expect_error(64, "redirect");
        assert!(refused.stderr.contains(expected), "{expected}: {}", refused.stderr);
        no_flavors(&t);
    }
}

#[test]
fn a_tampered_an_oversized_or_an_oversent_layer_is_refused_and_nothing_registered() {
    // The bytes differ from the digest the manifest declares.
    let t = TestHome::new();
    let server = fake_registry(
        Served::local(None),
        false,
        Arc::new(|_, bytes| {
            let mut tampered = bytes.to_vec();
            if let Some(last) = tampered.last_mut() {
                *last ^= 1;
            }
            octets(&tampered)
        }),
    );
    register_from(&t, &server, &[]).expect_error(64, "does not match its digest");
    no_flavors(&t);

    // A 2 GB layer is refused from the manifest, before a byte of it is asked for.
    let served = Served::local(Some(2 << 30));
    let layer = served.layer_digest.clone();
    let server = fake_registry(served, false, Arc::new(|_, bytes| octets(bytes)));
    register_from(&t, &server, &[]).expect_error(64, "2.0 GiB, more than the 256.0 MiB");
    assert!(server.requests_to(&format!("/v2/flavors/local/blobs/{layer}")).is_empty(), "the layer was not read");
    no_flavors(&t);

    // More bytes than declared: the read stops at the declared size.
    let server = fake_registry(Served::local(Some(100)), false, Arc::new(|_, bytes| octets(bytes)));
    register_from(&t, &server, &[]).expect_error(64, "sent more bytes for the component layer");
    no_flavors(&t);
}

#[test]
fn registration_needs_a_signature_by_a_key_trusted_for_the_repository() {
    let t = TestHome::sharing_cache();
    let repository = fresh_repository("signed");
    let (tag, other_tag) = (format!("{repository}:1"), format!("{repository}:2"));
    let digest = push(&t, &tag);
    let other_digest = push(&t, &other_tag);
    assert_ne!(digest, other_digest, "two pushes, two manifests");
    let register = |reference: &str| t.run(&["flavor", "register", &format!("oci://{reference}")]);

    // Unsigned, and no key trusted at all.
    let refused = register(&tag);
    refused.expect_error(77, &format!("{digest} is not signed"));
    assert!(
        refused.stderr.contains("stepbox flavor sign") && refused.stderr.contains("--allow-unsigned"),
        "{}",
        refused.stderr
    );
    no_flavors(&t);

    // Signed by a key nobody trusts.
    sign(&t, &tag, &key("stranger", "key")).expect_code(0);
    t.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &test_scope()]).expect_code(0);
    let refused = register(&tag);
    refused.expect_error(77, "none by a key stepbox trusts");
    assert!(
        refused.stderr.contains(&format!("stepbox trust add NAME --key KEY.pub --scope {repository}")),
        "{}",
        refused.stderr
    );
    no_flavors(&t);

    // Signed by the trusted key, but for another artifact: its signature moved beside this one.
    sign(&t, &other_tag, &key("publisher", "key")).expect_code(0);
    let path = repo_path(&repository);
    let signatures_of =
        |digest: &str| format!("http://{}/v2/{path}/manifests/{}.sig", registry(), digest.replacen(':', "-", 1));
    let moved = curl(&signatures_of(&other_digest), MANIFEST);
    curl_put(&signatures_of(&digest), MANIFEST, &moved);
    register(&tag).expect_error(77, &format!("signed {other_digest}, not {digest}"));
    no_flavors(&t);

    // The right signature, by a key trusted only for another repository.
    let scoped = TestHome::sharing_cache();
    sign(&scoped, &other_tag, &key("publisher", "key")).expect_code(0);
    let elsewhere = format!("{}/stepbox-test/elsewhere", registry());
    scoped.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &elsewhere]).expect_code(0);
    scoped
        .run(&["flavor", "register", &format!("oci://{other_tag}")])
        .expect_error(77, &format!("trusted for {elsewhere}, not for {repository}"));
    no_flavors(&scoped);

    // Signed by the trusted key for this scope: registered, and the record says by whom.
    let signed = sign(&t, &tag, &key("publisher", "key")).expect_code(0).json();
    assert_eq!(signed["digest"], digest.as_str());
    assert_eq!(signed["already_there"], false);
    assert_eq!(sign(&t, &tag, &key("publisher", "key")).expect_code(0).json()["already_there"], true);
    let registered =
        t.run(&["flavor", "register", &format!("oci://{repository}@{digest}"), "-o", "json"]).expect_code(0).json();
    assert_eq!(registered["provenance"]["key"], "publisher");
    let shown = t.run(&["flavor", "describe", "local"]).expect_code(0).stdout.clone();
    assert!(shown.contains("signed by the trusted key `publisher`"), "{shown}");

    // Removing the key keeps what it verified, and refuses what comes next.
    t.run(&["trust", "remove", "publisher"]).expect_code(0);
    t.run(&["flavor", "list", "-o", "json"]).expect_code(0);
    t.run(&["flavor", "register", "--replace", &format!("oci://{tag}")])
        .expect_error(77, "none by a key stepbox trusts");
}

#[test]
fn a_key_cosign_generated_signs_in_cosigns_layout() {
    let t = TestHome::sharing_cache();
    let testdata = workspace().join("crates/backends/src/wasm_oci/testdata");
    let (private, public) = (
        testdata.join("cosign-generated-empty-password.key").display().to_string(),
        testdata.join("cosign-generated-empty-password.pub").display().to_string(),
    );
    let repository = fresh_repository("cosign");
    let tag = format!("{repository}:1");
    let digest = push(&t, &tag);

    let mut wrong = t.command(&["flavor", "sign", &tag, "--key", &private]);
    wrong.env("COSIGN_PASSWORD", "guess");
    stepbox_e2e::Run::from_output(wrong.output().expect("stepbox starts")).expect_error(64, "wrong password");
    sign(&t, &tag, &private).expect_code(0);

    // What `cosign verify --key` reads: the .sig tag, one simple-signing layer, the signature annotation.
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    let manifest = curl(&format!("http://{}/v2/{}/manifests/{sig_tag}", registry(), repo_path(&repository)), MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("JSON");
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    assert!(layer["annotations"]["dev.cosignproject.cosign/signature"].is_string(), "{manifest}");
    let payload = curl(
        &format!(
            "http://{}/v2/{}/blobs/{}",
            registry(),
            repo_path(&repository),
            layer["digest"].as_str().expect("digest")
        ),
        "*/*",
    );
    let payload: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(payload["critical"]["image"]["docker-manifest-digest"], digest.as_str());
    assert_eq!(payload["critical"]["identity"]["docker-reference"], repository.as_str());
    assert_eq!(payload["critical"]["type"], "cosign container image signature");

    t.run(&["trust", "add", "cosign-team", "--key", &public, "--scope", &test_scope()]).expect_code(0);
    let listed = t.run(&["trust", "list", "-o", "json"]).expect_code(0).json();
    assert_eq!(listed[0]["name"], "cosign-team");
    t.run(&["flavor", "register", &format!("oci://{tag}")]).expect_code(0);
}

#[test]
fn trust_refuses_private_keys_bad_scopes_and_file_sources_refuse_registry_flags() {
    let t = TestHome::new();
    t.run(&["trust", "add", "oops", "--key", &key("publisher", "key"), "--scope", "registry.example.com/x"])
        .expect_error(64, "never a private one");
    t.run(&["trust", "add", "wild", "--key", &key("publisher", "pub"), "--scope", "registry.example.com/x/*"])
        .expect_error(64, "without tag, digest or wildcard");
    t.run(&["trust", "add", "hub", "--key", &key("publisher", "pub"), "--scope", "library/x"])
        .expect_error(64, "not a registry host");
    t.run(&["trust", "add", "a", "--key", &key("publisher", "pub"), "--scope", "registry.example.com"]).expect_code(0);
    t.run(&["trust", "add", "a", "--key", &key("stranger", "pub"), "--scope", "registry.example.com"])
        .expect_error(64, "already trusted");
    t.run(&["trust", "remove", "nobody"]).expect_error(64, "no key named `nobody`");
    t.run(&["flavor", "register", path_str(&local_flavor()), "--allow-unsigned"])
        .expect_error(64, "--allow-unsigned is for flavors from registries");
    no_flavors(&t);
}

#[test]
fn an_update_that_adds_http_shows_it_and_holds_back_step_operators_until_granted() {
    let t = TestHome::sharing_cache();
    let next = stepbox_e2e::component("local-next", "local_next");
    let old = t.run(&["flavor", "register", path_str(&local_flavor()), "-o", "json"]).expect_code(0).json();
    let old_sha = old["sha256"].as_str().expect("sha256").to_owned();
    t.register_operator("plain", "local", &["--grant", "jobs", "--grant", "requirements"]).expect_code(0);
    t.register_operator("online", "local", &["--grant", "jobs", "--grant", "requirements", "--grant", "http"])
        .expect_code(0);
    t.register_operator("fixed", "local", &["--grant", "jobs", "--grant", "requirements"]).expect_code(0);
    t.run(&["step-operator", "update", "fixed", "--pin", &old_sha[..12]]).expect_code(0);

    // Without a terminal and without --yes: the plan, and nothing changes.
    let shown = t.run(&["flavor", "update", "local", path_str(&next)]);
    shown.expect_error(64, "was not updated: nothing changed");
    for expected in [
        "Update flavor `local`: 0.1.0",
        "→ 0.2.0",
        "capabilities  + http",
        "+ wasi:http/outgoing-handler",
        "added `report_url` (string or null, optional)",
        "removed `environment`",
        "online: moves to 0.2.0",
        "plain: STAYS on sha256",
        "it would newly need `http` (stepbox step-operator update plain --grant http)",
        "fixed: pinned to sha256",
    ] {
        assert!(shown.stdout.contains(expected), "`{expected}` in:\n{}", shown.stdout);
    }
    let current = t.run(&["flavor", "describe", "local", "-o", "json"]).expect_code(0).json();
    assert_eq!(current["sha256"], old_sha.as_str(), "nothing changed");

    let dry = t.run(&["flavor", "update", "local", path_str(&next), "--dry-run", "-o", "json"]).expect_code(0).json();
    assert_eq!(dry["applied"], false);
    assert_eq!(dry["plan"]["capabilities_added"], serde_json::json!(["http"]));

    // Applied: the new version is current, the old one stays, and each step operator is where the plan said.
    let applied = t.run(&["flavor", "update", "local", path_str(&next), "--yes", "-o", "json"]).expect_code(0).json();
    assert_eq!(applied["applied"], true);
    let new_sha = applied["plan"]["to"]["sha256"].as_str().expect("sha256").to_owned();
    let listed = t.run(&["flavor", "list", "-o", "json"]).expect_code(0).json();
    assert_eq!(listed[0]["sha256"], new_sha.as_str());
    assert_eq!(listed[0]["used_by"], serde_json::json!(["online"]));
    assert_eq!(listed[0]["versions"][0]["sha256"], old_sha.as_str());
    assert_eq!(listed[0]["versions"][0]["used_by"], serde_json::json!(["fixed", "plain"]));
    let table = t.run(&["flavor", "list"]).expect_code(0).stdout.clone();
    assert!(table.contains("0.2.0 (current)") && table.contains("0.1.0"), "{table}");

    // Each launch runs its step operator's version: the logs say which.
    let online = t.launch("online", "s", &["echo", "ran"]);
    assert!(online.expect_code(0).stderr.contains("local 0.2.0 running step"), "{}", online.stderr);
    let plain = t.launch("plain", "s", &["echo", "ran"]);
    assert!(!plain.expect_code(0).stderr.contains("local 0.2.0"), "plain stays on 0.1.0: {}", plain.stderr);
    let run = t.runs().into_iter().find(|r| r["step_operator"] == "plain").expect("plain's run");
    assert_eq!(run["flavor_sha256"], old_sha.as_str());

    // The grant moves it; the user's pin stays until the user moves it.
    let granted = t.run(&["step-operator", "update", "plain", "--grant", "http"]);
    assert!(granted.expect_code(0).stderr.contains("now runs version 0.2.0"), "{}", granted.stderr);
    assert!(t.launch("plain", "s", &["echo", "ran"]).expect_code(0).stderr.contains("local 0.2.0 running step"));
    let fixed = t.run(&["step-operator", "describe", "fixed", "-o", "json"]).expect_code(0).json();
    assert_eq!(fixed["pin"], serde_json::json!({"sha256": old_sha, "held": false}));
    t.run(&["flavor", "delete", "local", "--sha256", &old_sha[..12]])
        .expect_error(64, "used by the step operators fixed");
    t.run(&["step-operator", "update", "fixed", "--unpin"]).expect_code(0);
    t.run(&["flavor", "delete", "local", "--sha256", &old_sha[..12]]).expect_code(0);
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).expect_code(0).json()[0]["versions"], serde_json::json!([]));

    // Updating to what is registered changes nothing; another flavor is not an update.
    t.run(&["flavor", "update", "local", path_str(&next)]).expect_code(0);
    t.run(&["flavor", "update", "local", path_str(&stepbox_e2e::hostile_flavor()), "--yes"])
        .expect_error(64, "not `local`");
}

#[test]
fn an_update_from_a_registry_looks_the_tag_up_again_and_checks_the_signature() {
    let t = TestHome::sharing_cache();
    let repository = fresh_repository("updated");
    let tag = format!("{repository}:stable");
    push(&t, &tag);
    sign(&t, &tag, &key("publisher", "key")).expect_code(0);
    t.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &test_scope()]).expect_code(0);
    t.run(&["flavor", "register", &format!("oci://{tag}")]).expect_code(0);
    t.register_operator("plain", "local", &["--grant", "jobs", "--grant", "requirements"]).expect_code(0);

    // The publisher moves the tag to the next version, unsigned first.
    let next = stepbox_e2e::component("local-next", "local_next");
    let pushed = t.run(&["flavor", "push", path_str(&next), &tag, "-o", "json"]).expect_code(0).json();
    let digest = pushed["digest"].as_str().expect("digest").to_owned();
    t.run(&["flavor", "update", "local", "--yes"]).expect_error(77, &format!("{digest} is not signed"));
    sign(&t, &tag, &key("publisher", "key")).expect_code(0);
    let shown = t.run(&["flavor", "update", "local", "--yes"]);
    assert!(shown.expect_code(0).stdout.contains("plain: STAYS on sha256"), "{}", shown.stdout);
    let described = t.run(&["flavor", "describe", "local", "-o", "json"]).expect_code(0).json();
    assert_eq!(described["source_path"], format!("oci://{tag}@{digest}"));
    assert_eq!(described["provenance"]["key"], "publisher");
}

/// `stepbox ARGS` with the builtin flavors in `dir`.
fn with_builtins(t: &TestHome, dir: &std::path::Path, args: &[&str]) -> stepbox_e2e::Run {
    let mut command = t.command(args);
    command.env("STEPBOX_BUILTIN_FLAVORS", dir);
    stepbox_e2e::Run::from_output(command.output().expect("stepbox starts"))
}

#[test]
fn builtin_flavors_register_by_name_checked_against_their_index() {
    let dir = stepbox_e2e::builtin_flavors();
    let t = TestHome::sharing_cache();
    let available = with_builtins(&t, dir, &["flavor", "list", "--available", "-o", "json"]).expect_code(0).json();
    let names: Vec<&str> =
        available["flavors"].as_array().into_iter().flatten().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["azureml", "container", "local", "ray", "sagemaker", "slurm", "vertex"]);
    for flavor in available["flavors"].as_array().into_iter().flatten() {
        let file = dir.join(flavor["file"].as_str().expect("file"));
        let bytes = std::fs::read(&file).expect("the builtin file");
        assert_eq!(flavor["sha256"], hex(&sha2::Sha256::digest(&bytes)), "{}", file.display());
    }
    let table = with_builtins(&t, dir, &["flavor", "list", "--available"]).expect_code(0).stdout.clone();
    assert!(table.contains("builtin:sagemaker") && table.contains("register one with"), "{table}");

    let registered =
        with_builtins(&t, dir, &["flavor", "register", "builtin:local", "-o", "json"]).expect_code(0).json();
    let sha = available["flavors"][2]["sha256"].as_str().expect("sha256");
    assert_eq!(registered["source_path"], format!("builtin:local@sha256:{sha}"));
    assert_eq!(registered["provenance"], serde_json::json!({"kind": "builtin", "sha256": sha}));
    t.register_operator("local", "local", &["--grant", "jobs", "--grant", "requirements"]).expect_code(0);
    let run = t.launch("local", "s", &["echo", "from a builtin flavor"]);
    assert!(run.expect_code(0).stdout.contains("from a builtin flavor"), "{}", run.stdout);
    // Already the builtin one: an update finds nothing to do.
    with_builtins(&t, dir, &["flavor", "update", "local"]).expect_code(0);

    with_builtins(&t, dir, &["flavor", "register", "builtin:nope"]).expect_error(64, "no builtin flavor `nope`");
    // A file that changed since the index was written is refused, naming both digests.
    let tampered = t.scratch().join("tampered");
    std::fs::create_dir_all(&tampered).expect("mkdir");
    for entry in std::fs::read_dir(dir).expect("the builtin dir") {
        let entry = entry.expect("an entry");
        std::fs::copy(entry.path(), tampered.join(entry.file_name())).expect("copy");
    }
    let mut bytes = std::fs::read(tampered.join("sagemaker.wasm")).expect("read");
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    std::fs::write(tampered.join("sagemaker.wasm"), bytes).expect("write");
    with_builtins(&t, &tampered, &["flavor", "register", "builtin:sagemaker"])
        .expect_error(64, "changed since stepbox was installed");
    with_builtins(&t, t.scratch(), &["flavor", "register", "builtin:local"]).expect_error(64, "holds no builtin.json");
}

fn curl_put(url: &str, content_type: &str, body: &[u8]) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "20",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            "@-",
            url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl runs");
    child.stdin.take().expect("stdin").write_all(body).expect("write");
    let output = child.wait_with_output().expect("curl ends");
    assert!(output.status.success(), "PUT {url}: {}", String::from_utf8_lossy(&output.stderr));
}

fn repo_path(repository: &str) -> &str {
    repository.split_once('/').map_or(repository, |(_, path)| path)
}

fn curl(url: &str, accept: &str) -> Vec<u8> {
    let output = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "20", "-H", &format!("Accept: {accept}"), url])
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl {url}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// cosign v3's signature of `subject` by the test key `signer`: a Sigstore
/// bundle (a DSSE envelope around an in-toto statement of `predicate_type`),
/// its referrer manifest, and the referrers list naming that manifest.
struct Bundled {
    bundle: Vec<u8>,
    referrer: Vec<u8>,
    index: Vec<u8>,
}

impl Bundled {
    fn new(signer: &str, subject: &str, subject_size: usize, predicate_type: &str) -> Self {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD;
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": subject.trim_start_matches("sha256:")}}],
            "predicateType": predicate_type,
            "predicate": {},
        })
        .to_string();
        let payload_type = "application/vnd.in-toto+json";
        // DSSE's pre-authentication encoding is what the key signs.
        let pae = format!("DSSEv1 {} {payload_type} {} {statement}", payload_type.len(), statement.len());
        let pem = std::fs::read(key(signer, "key")).expect("the test key");
        let signing_key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("a P-256 key");
        let jws =
            jsonwebtoken::crypto::sign(pae.as_bytes(), &signing_key, jsonwebtoken::Algorithm::ES256).expect("signs");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jws).expect("base64url");
        let bundle = serde_json::json!({
            "mediaType": BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": "dGVzdA=="}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.encode(&statement),
                "payloadType": payload_type,
                "signatures": [{"sig": base64.encode(raw), "keyid": ""}],
            },
        })
        .to_string()
        .into_bytes();
        let referrer = serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": BUNDLE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "artifactType": BUNDLE, "digest": digest(b"{}"), "size": 2},
            "layers": [{"mediaType": BUNDLE, "digest": digest(&bundle), "size": bundle.len()}],
            "subject": {"mediaType": MANIFEST, "digest": subject, "size": subject_size},
            "annotations": {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate_type},
        })
        .to_string()
        .into_bytes();
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX,
            "manifests": [{"mediaType": MANIFEST, "digest": digest(&referrer), "size": referrer.len(), "artifactType": BUNDLE}],
        })
        .to_string()
        .into_bytes();
        Self { bundle, referrer, index }
    }
}

/// A registry serving the local flavor under `flavors/local:1` and `bundled`
/// as its referrer, listed by the referrers API (`api`) or, like a registry
/// without one, at the fallback tag `sha256-HEX`.
fn registry_with_bundle(served: Served, bundled: Bundled, api: bool) -> FakeServer {
    let subject = digest(&served.manifest);
    let fallback_tag = subject.replacen(':', "-", 1);
    FakeServer::start(move |request: &Recorded| {
        let path = request.path.split('?').next().unwrap_or_default();
        let Some(rest) = path.strip_prefix("/v2/flavors/local/") else {
            return if path == "/v2/" { Reply::text(200, "{}") } else { Reply::text(404, "unknown") };
        };
        let typed = |media_type: &str, body: &[u8]| Reply {
            status: 200,
            headers: vec![("Content-Type".into(), media_type.into())],
            body: body.to_vec(),
        };
        match rest.split_once('/') {
            Some(("manifests", "1")) => typed(MANIFEST, &served.manifest),
            Some(("manifests", by)) if by == digest(&bundled.referrer) => typed(MANIFEST, &bundled.referrer),
            Some(("manifests", by)) if !api && by == fallback_tag => typed(INDEX, &bundled.index),
            Some(("referrers", by)) if api && by == subject => typed(INDEX, &bundled.index),
            Some(("blobs", by)) if by == digest(&bundled.bundle) => octets(&bundled.bundle),
            Some(("blobs", by)) => served.blobs.get(by).map_or_else(|| Reply::text(404, "unknown"), |b| octets(b)),
            _ => Reply::text(404, "unknown"),
        }
    })
}

#[test]
fn a_cosign_v3_bundle_among_the_referrers_is_a_signature_like_a_sig_tag() {
    for api in [true, false] {
        let served = Served::local(None);
        let (subject, size) = (digest(&served.manifest), served.manifest.len());
        let server = registry_with_bundle(
            served,
            Bundled::new("publisher", &subject, size, "https://sigstore.dev/cosign/sign/v1"),
            api,
        );
        let t = TestHome::new();
        let scope = format!("127.0.0.1:{}/flavors", server.port());
        t.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &scope]).expect_code(0);
        let reference = format!("oci://127.0.0.1:{}/flavors/local:1", server.port());
        t.run(&["flavor", "register", &reference]).expect_code(0);
        let shown = t.run(&["flavor", "describe", "local"]).expect_code(0).stdout.clone();
        assert!(shown.contains("signed by the trusted key `publisher`"), "api {api}: {shown}");
        let asked = if api { "/v2/flavors/local/referrers/" } else { "/v2/flavors/local/manifests/sha256-" };
        assert!(!server.requests_to(asked).is_empty(), "api {api}: the referrers were asked for at {asked}");
    }
}

#[test]
fn a_bundle_by_an_untrusted_key_or_of_an_attestation_is_no_signature() {
    for (signer, predicate_type, expected) in [
        ("stranger", "https://sigstore.dev/cosign/sign/v1", "none by a key stepbox trusts"),
        ("publisher", "https://slsa.dev/provenance/v1", "an attestation of `https://slsa.dev/provenance/v1`"),
    ] {
        let served = Served::local(None);
        let (subject, size) = (digest(&served.manifest), served.manifest.len());
        let server = registry_with_bundle(served, Bundled::new(signer, &subject, size, predicate_type), true);
        let t = TestHome::new();
        let scope = format!("127.0.0.1:{}/flavors", server.port());
        t.run(&["trust", "add", "publisher", "--key", &key("publisher", "pub"), "--scope", &scope]).expect_code(0);
        let reference = format!("oci://127.0.0.1:{}/flavors/local:1", server.port());
        t.run(&["flavor", "register", &reference]).expect_error(77, expected);
        no_flavors(&t);
    }
}
