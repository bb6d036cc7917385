//! Outgoing HTTP from flavors (`wasi:http`): only to the origins a step
//! operator allows, never to a name that resolves to loopback or a metadata
//! address, redirects not followed, every request in the audit record with
//! query values left out. The `http-probe` fixture makes the requests its
//! settings name; small servers here record what reaches them. A cancelled
//! launch (Ctrl-C, the wall-clock budget) reaches a flavor waiting on remote
//! work through the `cancellation` interface, and it can still call out.

use std::fs;

use stepbox_e2e::fake_http::{FakeServer, Reply};
use stepbox_e2e::fake_tokens::{azure_token_server, google_key_file, google_token_server, rsa_key_pair};
use stepbox_e2e::{TestHome, component, path_str};

const DENIED: i32 = 77;

/// A server answering 200 "hello", and `/redirect` with a 302 to `location`.
fn hello_server(location: Option<String>) -> FakeServer {
    FakeServer::start(move |request| match (&location, request.path.as_str()) {
        (Some(location), "/redirect") => Reply::text(302, "").with_header("Location", location),
        _ => Reply::text(200, "hello"),
    })
}

/// A home with the http-probe flavor and step operator `probe` granted `http` and `grants`
/// (and `jobs`, which the SDK's flavors import).
fn probe_home(grants: &[String]) -> TestHome {
    probe_home_in(TestHome::new(), grants)
}

/// [`probe_home`] in an existing home (one that already holds secrets).
fn probe_home_in(t: TestHome, grants: &[String]) -> TestHome {
    let flavor = component("http-probe", "http_probe");
    t.run(&["flavor", "register", path_str(&flavor)]).expect_code(0);
    let mut extra = ["--grant", "jobs", "--grant", "http"].map(str::to_owned).to_vec();
    for grant in grants {
        extra.extend(["--grant".to_owned(), grant.clone()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    t.register_operator("probe", "http-probe", &extra).expect_code(0);
    t
}

/// Launch the probe with these requests; the flavor log's probe lines, and the audit as text.
fn probe(t: &TestHome, requests: serde_json::Value) -> (Vec<String>, String) {
    let settings = serde_json::json!({ "requests": requests }).to_string();
    t.launch_with("probe", "s", &["--settings", &settings], &["true"]).expect_code(0);
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let log = fs::read_to_string(t.home().join("runs").join(&id).join("flavor.log")).expect("flavor log");
    let lines = log.lines().filter_map(|l| l.split_once("http-probe: ").map(|(_, rest)| rest.to_owned())).collect();
    let audit = t.run(&["runs", "show", &id, "--audit", "-o", "json"]).json()["audit"].to_string();
    (lines, audit)
}

#[test]
fn a_flavor_reaches_an_allowed_origin_and_nothing_else() {
    let allowed = hello_server(None);
    let other = hello_server(None);
    let t = probe_home(&[format!("http-origin={}", allowed.origin())]);
    let (lines, audit) = probe(
        &t,
        serde_json::json!([
            { "method": "POST", "url": allowed.url("/ok?sig=SECRET-SIG&v=1"), "body": "{\"a\":1}" },
            { "method": "GET", "url": other.url("/ok") },
        ]),
    );
    assert_eq!(lines[0], format!("POST {} -> 200 (5 bytes)", allowed.url("/ok?sig=SECRET-SIG&v=1")), "{lines:?}");
    assert!(lines[1].ends_with("-> error ErrorCode::HttpRequestDenied"), "{lines:?}");
    let received = allowed.requests();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/ok?sig=SECRET-SIG&v=1"));
    assert_eq!(received[0].header("host"), Some(format!("127.0.0.1:{}", allowed.port()).as_str()));
    assert_eq!(received[0].text(), "{\"a\":1}");
    assert!(other.requests().is_empty(), "nothing reached the origin that is not allowed");

    assert!(audit.contains("http.request"), "{audit}");
    assert!(audit.contains("sig=…&v=…"), "query keys are kept: {audit}");
    assert!(!audit.contains("SECRET-SIG"), "query values are not: {audit}");
    assert!(audit.contains(&format!("is not an allowed origin of this step operator (allowed: {})", allowed.origin())));
    assert!(audit.contains(&format!("--grant http-origin={}", other.origin())), "{audit}");
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_even_when_its_origin_is_allowed() {
    let server = hello_server(None);
    let t = probe_home(&[
        format!("http-origin=http://localhost:{}", server.port()),
        "http-origin=http://169.254.169.254".to_owned(),
    ]);
    let (lines, audit) = probe(
        &t,
        serde_json::json!([
            { "method": "GET", "url": format!("http://localhost:{}/ok", server.port()) },
            { "method": "GET", "url": "http://169.254.169.254/latest/meta-data/" },
        ]),
    );
    assert!(lines[0].ends_with("-> error ErrorCode::DestinationIpProhibited"), "{lines:?}");
    assert!(lines[1].ends_with("-> error ErrorCode::DestinationIpProhibited"), "{lines:?}");
    assert!(server.requests().is_empty(), "the loopback server got nothing");
    assert!(audit.contains("a loopback address"), "{audit}");
    assert!(audit.contains("a cloud metadata service address"), "{audit}");
}

#[test]
fn redirects_are_not_followed_and_where_they_point_is_checked_like_any_origin() {
    let elsewhere = hello_server(None);
    let server = hello_server(Some(elsewhere.url("/ok")));
    let t = probe_home(&[format!("http-origin={}", server.origin())]);
    let (lines, _) = probe(
        &t,
        serde_json::json!([
            { "method": "GET", "url": server.url("/redirect") },
            { "method": "GET", "url": elsewhere.url("/ok") },
        ]),
    );
    assert_eq!(lines[0], format!("GET {} -> 302 (0 bytes) location={}", server.url("/redirect"), elsewhere.url("/ok")));
    assert!(lines[1].ends_with("-> error ErrorCode::HttpRequestDenied"), "following it by hand is checked: {lines:?}");
    assert!(elsewhere.requests().is_empty());
}

#[test]
fn a_flavor_importing_wasi_http_is_refused_until_http_is_granted() {
    let t = TestHome::new();
    let flavor = component("http-probe", "http_probe");
    let described = t.run(&["flavor", "register", path_str(&flavor)]);
    described.expect_code(0);
    assert!(described.stdout.contains("http"), "registration names the capability: {}", described.stdout);
    t.register_operator("probe", "http-probe", &["--grant", "jobs"]).expect_code(0);
    t.launch("probe", "s", &["true"])
        .expect_error(DENIED, "imports `http`, which step operator `probe` is not granted");
}

#[test]
fn the_host_adds_the_origins_credential_and_the_flavor_never_sees_it() {
    let server = hello_server(None);
    let token = format!("tok-{}", stepbox_e2e::unique_marker());
    let t = probe_home(&[
        format!("http-origin={}", server.origin()),
        format!("http-credential={}=bearer:api-token", server.origin()),
    ]);
    t.set_secret("api-token", token.as_bytes()).expect_code(0);

    let (lines, audit) = probe(&t, serde_json::json!([{ "method": "GET", "url": server.url("/ok") }]));
    assert!(lines[0].ends_with("-> 200 (5 bytes)"), "{lines:?}");
    let received = server.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert!(!audit.contains(&token), "not in the audit record");
    let leaked = stepbox_e2e::files_containing(&t.home().join("runs"), &token);
    assert!(leaked.is_empty(), "the token is in no run file: {leaked:?}");

    // A credential whose secret is missing stops the request, saying which secret.
    t.run(&["secret", "delete", "api-token"]).expect_code(0);
    let (lines, audit) = probe(&t, serde_json::json!([{ "method": "GET", "url": server.url("/ok") }]));
    assert!(lines[0].ends_with("-> error ErrorCode::HttpRequestDenied"), "{lines:?}");
    assert!(audit.contains("the secret `api-token`"), "{audit}");
    assert_eq!(server.requests().len(), 1, "the second request never left");
}

#[test]
fn a_google_service_account_key_becomes_a_token_the_flavor_never_sees() {
    let t = TestHome::new();
    let (private_pem, public_pem) = rsa_key_pair(t.scratch());
    let token = format!("ya29.{}", stepbox_e2e::unique_marker());
    let token_server = google_token_server(public_pem, token.clone());
    let api = hello_server(None);
    let key_file = google_key_file(&private_pem, &token_server.url("/token"));
    t.set_secret("gcp-key", key_file.as_bytes()).expect_code(0);
    let t = probe_home_in(
        t,
        &[
            format!("http-origin={}", api.origin()),
            format!("http-origin={}", token_server.origin()),
            format!("http-credential={}=google-service-account:gcp-key", api.origin()),
        ],
    );
    let (lines, audit) = probe(
        &t,
        serde_json::json!([
            { "method": "GET", "url": api.url("/v1/projects/my-project/locations/us-central1/customJobs/1") },
            { "method": "GET", "url": api.url("/v1/projects/my-project/locations/us-central1/customJobs/2") },
        ]),
    );
    assert!(lines.iter().all(|line| line.ends_with("-> 200 (5 bytes)")), "{lines:?}");

    // One token exchange, as Google documents it, for both requests.
    let exchanges = token_server.requests();
    assert_eq!(exchanges.len(), 1, "the token is cached: {exchanges:?}");
    assert_eq!((exchanges[0].method.as_str(), exchanges[0].path.as_str()), ("POST", "/token"));
    assert_eq!(exchanges[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(exchanges[0].form_field("grant_type").as_deref(), Some("urn:ietf:params:oauth:grant-type:jwt-bearer"));
    let assertion = exchanges[0].form_field("assertion").expect("a JWT");
    let header = jsonwebtoken::decode_header(&assertion).expect("a JWT header");
    assert_eq!((header.alg, header.kid.as_deref()), (jsonwebtoken::Algorithm::RS256, Some("key-1")));
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&assertion).expect("claims").claims;
    assert_eq!(claims["iss"], "stepbox-test@my-project.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], token_server.url("/token"));
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
    assert_eq!(claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0), 3600);

    for request in api.requests() {
        assert_eq!(request.header("authorization"), Some(format!("Bearer {token}").as_str()));
    }
    assert!(audit.contains("http.token"), "the exchange is audited: {audit}");
    assert!(!audit.contains(&token), "the token is not in the audit record");
    for needle in [token.as_str(), "PRIVATE KEY"] {
        let leaked = stepbox_e2e::files_containing(&t.home().join("runs"), needle);
        assert!(leaked.is_empty(), "{needle} is in no run file: {leaked:?}");
    }
}

#[test]
fn an_azure_client_secret_becomes_a_token_and_the_token_endpoint_must_be_granted() {
    let token = format!("eyJ.{}", stepbox_e2e::unique_marker());
    let token_server = azure_token_server("client-secret-value", token.clone());
    let api = hello_server(None);
    let t = TestHome::new();
    let client = serde_json::json!({
        "tenant_id": "tenant-1",
        "client_id": "app-1",
        "client_secret": "client-secret-value",
        "authority_host": token_server.origin(),
    });
    t.set_secret("azure-app", client.to_string().as_bytes()).expect_code(0);
    let credential = format!("http-credential={}=azure-client-credentials:azure-app", api.origin());

    // Without the token endpoint among the origins, no token and no request.
    let ungranted = probe_home_in(t, &[format!("http-origin={}", api.origin()), credential.clone()]);
    let (lines, audit) = probe(&ungranted, serde_json::json!([{ "method": "GET", "url": api.url("/jobs/a") }]));
    assert!(lines[0].ends_with("-> error ErrorCode::HttpRequestDenied"), "{lines:?}");
    assert!(audit.contains(&format!("--grant http-origin={}", token_server.origin())), "{audit}");
    assert!(token_server.requests().is_empty() && api.requests().is_empty());

    let t = TestHome::new();
    t.set_secret("azure-app", client.to_string().as_bytes()).expect_code(0);
    let t = probe_home_in(
        t,
        &[format!("http-origin={}", api.origin()), format!("http-origin={}", token_server.origin()), credential],
    );
    let (lines, audit) = probe(&t, serde_json::json!([{ "method": "PUT", "url": api.url("/jobs/a"), "body": "{}" }]));
    assert!(lines[0].ends_with("-> 200 (5 bytes)"), "{lines:?}");
    let exchange = &token_server.requests()[0];
    assert_eq!(exchange.path, "/tenant-1/oauth2/v2.0/token");
    assert_eq!(exchange.form_field("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(exchange.form_field("client_id").as_deref(), Some("app-1"));
    assert_eq!(exchange.form_field("scope").as_deref(), Some("https://management.azure.com/.default"));
    assert_eq!(api.requests()[0].header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert!(!audit.contains(&token), "{audit}");
    for needle in [token.as_str(), "client-secret-value"] {
        assert!(stepbox_e2e::files_containing(&t.home().join("runs"), needle).is_empty(), "{needle} leaked");
    }
}

/// Start the probe waiting for cancellation (then calling `on_cancel`), with
/// these extra launch flags; returns once the flavor is waiting.
fn probe_waiting(t: &TestHome, settings: serde_json::Value) -> stepbox_e2e::RunningLaunch {
    let settings = settings.to_string();
    let running = t.spawn_launch_with("probe", "s", &["--settings", &settings], &["true"]);
    let waiting = stepbox_e2e::wait_until(std::time::Duration::from_secs(60), || {
        !stepbox_e2e::files_containing(&t.home().join("runs"), "http-probe: waiting").is_empty()
    });
    assert!(waiting, "the flavor never started waiting");
    running
}

fn flavor_log(t: &TestHome) -> String {
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    fs::read_to_string(t.home().join("runs").join(&id).join("flavor.log")).expect("flavor log")
}

#[test]
fn ctrl_c_reaches_a_flavor_waiting_on_remote_work_and_it_calls_the_stop_api() {
    let service = hello_server(None);
    let t = probe_home(&[format!("http-origin={}", service.origin())]);
    let running = probe_waiting(
        &t,
        serde_json::json!({
            "requests": [{ "method": "POST", "url": service.url("/jobs") }],
            "wait_for_cancel": true,
            "on_cancel": [{ "method": "POST", "url": service.url("/jobs/1:cancel"), "body": "{}" }],
        }),
    );
    running.signal(nix::sys::signal::Signal::SIGINT);
    let run = running.finish();
    run.expect_code(130);
    let paths: Vec<String> = service.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(paths, ["POST /jobs", "POST /jobs/1:cancel"], "the stop call went out after the cancellation");
    let log = flavor_log(&t);
    assert!(
        log.contains(
            "http-probe: cancelled: cancelled by Ctrl-C (SIGINT); requested() says: cancelled by Ctrl-C (SIGINT)"
        ),
        "{log}"
    );
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

#[test]
fn the_wall_clock_budget_cancels_the_flavor_too_and_a_deaf_flavor_is_stopped_after_the_grace() {
    let service = hello_server(None);
    let t = probe_home(&[format!("http-origin={}", service.origin())]);
    t.run(&["step-operator", "update", "probe", "--limit", "wall-clock=2s", "--limit", "cancel-grace=2s"])
        .expect_code(0);
    let cancelled = serde_json::json!({
        "wait_for_cancel": true,
        "on_cancel": [{ "method": "POST", "url": service.url("/stop") }],
    });
    let run = t.launch_with("probe", "s", &["--settings", &cancelled.to_string()], &["true"]);
    run.expect_error(124, "hit its `wall-clock` limit of 2s");
    assert_eq!(service.requests().len(), 1, "the stop call was made");
    assert!(flavor_log(&t).contains("cancelled: the launch hit its `wall-clock` limit of 2s"), "{}", flavor_log(&t));

    let t = probe_home(&[]);
    t.run(&["step-operator", "update", "probe", "--limit", "wall-clock=1s", "--limit", "cancel-grace=1s"])
        .expect_code(0);
    let deaf = serde_json::json!({ "ignore_cancel": true }).to_string();
    let run = t.launch_with("probe", "s", &["--settings", &deaf], &["true"]);
    run.expect_error(124, "hit its `wall-clock` limit of 1s");
    assert!(flavor_log(&t).contains("did not return within `cancel-grace` (1s)"), "{}", flavor_log(&t));
}

/// `command` run under bubblewrap with `hosts` as its /etc/hosts: names
/// resolve where the test says, as a hostile DNS answer would make them.
fn with_hosts(command: &std::process::Command, hosts: &std::path::Path) -> std::process::Command {
    let mut wrapped = std::process::Command::new("bwrap");
    wrapped.args(["--dev-bind", "/", "/", "--bind"]).arg(hosts).args(["/etc/hosts", "--"]);
    wrapped.arg(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

#[test]
fn names_that_resolve_to_the_metadata_service_or_loopback_are_refused_after_dns() {
    let server = hello_server(None);
    let metadata = "http://metadata.stepbox-test.internal";
    let api = format!("http://api.stepbox-test.internal:{}", server.port());
    let t = probe_home(&[format!("http-origin={metadata}"), format!("http-origin={api}")]);
    let hosts = t.scratch().join("hosts");
    fs::write(&hosts, "169.254.169.254 metadata.stepbox-test.internal\n127.0.0.1 api.stepbox-test.internal\n")
        .expect("write hosts");
    let settings = serde_json::json!({ "requests": [
        { "method": "GET", "url": format!("{metadata}/latest/meta-data/iam/security-credentials/") },
        { "method": "GET", "url": format!("{api}/ok") },
    ] })
    .to_string();
    let launch = t.launch_command_with("probe", "s", &["--settings", &settings], &["true"]);
    let run = stepbox_e2e::Run::from_output(with_hosts(&launch, &hosts).output().expect("bwrap runs"));
    run.expect_code(0);
    let log = flavor_log(&t);
    assert_eq!(log.matches("-> error ErrorCode::DestinationIpProhibited").count(), 2, "{log}");
    assert!(server.requests().is_empty(), "nothing reached the loopback server");
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let audit = t.run(&["runs", "show", &id, "--audit", "-o", "json"]).json()["audit"].to_string();
    assert!(audit.contains("resolved to 169.254.169.254, a cloud metadata service address"), "{audit}");
    assert!(audit.contains("resolved to 127.0.0.1, a loopback address"), "{audit}");
}

#[test]
fn a_launch_makes_at_most_its_http_requests_limit() {
    let server = hello_server(None);
    let t = probe_home(&[format!("http-origin={}", server.origin())]);
    t.run(&["step-operator", "update", "probe", "--limit", "http-requests=2"]).expect_code(0);
    let (lines, audit) = probe(
        &t,
        serde_json::json!([
            { "method": "GET", "url": server.url("/1") },
            { "method": "GET", "url": server.url("/2") },
            { "method": "GET", "url": server.url("/3") },
        ]),
    );
    assert!(lines[1].ends_with("-> 200 (5 bytes)"), "{lines:?}");
    assert!(lines[2].ends_with("-> error ErrorCode::HttpRequestDenied"), "{lines:?}");
    assert_eq!(server.requests().len(), 2);
    assert!(audit.contains("--limit http-requests=N"), "the way out is named: {audit}");
}

#[test]
fn registering_a_credential_whose_secret_is_not_stored_warns_with_the_way_out() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&component("http-probe", "http_probe"))]).expect_code(0);
    let grants = ["--grant", "http", "--grant", "http-credential=https://api.example.com=bearer:missing-token"];
    let registered = t.register_operator("probe", "http-probe", &grants);
    registered.expect_code(0);
    assert!(
        registered.stderr.contains("uses the secret `missing-token`, which is not stored yet")
            && registered.stderr.contains("stepbox secret set missing-token"),
        "{}",
        registered.stderr
    );
}
