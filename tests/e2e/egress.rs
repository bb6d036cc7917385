//! Outgoing HTTP from flavors (`wasi:http`): only to the origins a step
//! operator allows, never to a name that resolves to loopback or a metadata
//! address, redirects not followed, every request in the audit record with
//! query values left out. The `http-probe` fixture makes the requests its
//! settings name; small servers here record what reaches them.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use stepbox_e2e::{TestHome, component, path_str};

const DENIED: i32 = 77;

/// A loopback HTTP/1.1 server that records each request line and answers
/// `/ok` with 200 "hello" and `/redirect` with a 302 to `location`.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(location: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                let mut host = String::new();
                let mut auth = String::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if let Some(value) = lower.strip_prefix("host:") {
                        host = value.trim().to_owned();
                    }
                    if lower.starts_with("authorization:") {
                        auth = format!(" auth={}", header["authorization:".len()..].trim());
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let line = format!("{} host={host}{auth} body={}", request_line.trim(), String::from_utf8_lossy(&body));
                record.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                let response = match (&location, request_line.contains(" /redirect ")) {
                    (Some(location), true) => {
                        format!(
                            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                    }
                    _ => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_owned(),
                };
                let mut stream = reader.into_inner();
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Self { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A home with the http-probe flavor and step operator `probe` granted `http` and `grants`
/// (and `jobs`, which the SDK's flavors import).
fn probe_home(grants: &[String]) -> TestHome {
    let t = TestHome::new();
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
    let allowed = Server::start(None);
    let other = Server::start(None);
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
    assert_eq!(
        allowed.seen(),
        [format!("POST /ok?sig=SECRET-SIG&v=1 HTTP/1.1 host=127.0.0.1:{} body={{\"a\":1}}", allowed.port)]
    );
    assert!(other.seen().is_empty(), "nothing reached the origin that is not allowed");

    assert!(audit.contains("http.request"), "{audit}");
    assert!(audit.contains("sig=…&v=…"), "query keys are kept: {audit}");
    assert!(!audit.contains("SECRET-SIG"), "query values are not: {audit}");
    assert!(audit.contains(&format!("is not an allowed origin of this step operator (allowed: {})", allowed.origin())));
    assert!(audit.contains(&format!("--grant http-origin={}", other.origin())), "{audit}");
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_even_when_its_origin_is_allowed() {
    let server = Server::start(None);
    let t = probe_home(&[
        format!("http-origin=http://localhost:{}", server.port),
        "http-origin=http://169.254.169.254".to_owned(),
    ]);
    let (lines, audit) = probe(
        &t,
        serde_json::json!([
            { "method": "GET", "url": format!("http://localhost:{}/ok", server.port) },
            { "method": "GET", "url": "http://169.254.169.254/latest/meta-data/" },
        ]),
    );
    assert!(lines[0].ends_with("-> error ErrorCode::DestinationIpProhibited"), "{lines:?}");
    assert!(lines[1].ends_with("-> error ErrorCode::DestinationIpProhibited"), "{lines:?}");
    assert!(server.seen().is_empty(), "the loopback server got nothing");
    assert!(audit.contains("a loopback address"), "{audit}");
    assert!(audit.contains("a cloud metadata service address"), "{audit}");
}

#[test]
fn redirects_are_not_followed_and_where_they_point_is_checked_like_any_origin() {
    let elsewhere = Server::start(None);
    let server = Server::start(Some(elsewhere.url("/ok")));
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
    assert!(elsewhere.seen().is_empty());
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
    let server = Server::start(None);
    let token = format!("tok-{}", stepbox_e2e::unique_marker());
    let t = probe_home(&[
        format!("http-origin={}", server.origin()),
        format!("http-credential={}=bearer:api-token", server.origin()),
    ]);
    let mut set = t.command(&["secret", "set", "api-token"]);
    set.stdin(std::process::Stdio::piped());
    let mut child = set.spawn().expect("stepbox starts");
    child.stdin.take().expect("stdin").write_all(token.as_bytes()).expect("write the token");
    assert!(child.wait().expect("stepbox ends").success());

    let (lines, audit) = probe(&t, serde_json::json!([{ "method": "GET", "url": server.url("/ok") }]));
    assert!(lines[0].ends_with("-> 200 (5 bytes)"), "{lines:?}");
    assert_eq!(server.seen(), [format!("GET /ok HTTP/1.1 host=127.0.0.1:{} auth=Bearer {token} body=", server.port)]);
    assert!(!audit.contains(&token), "not in the audit record");
    let leaked = stepbox_e2e::files_containing(&t.home().join("runs"), &token);
    assert!(leaked.is_empty(), "the token is in no run file: {leaked:?}");

    // A credential whose secret is missing stops the request, saying which secret.
    t.run(&["secret", "delete", "api-token"]).expect_code(0);
    let (lines, audit) = probe(&t, serde_json::json!([{ "method": "GET", "url": server.url("/ok") }]));
    assert!(lines[0].ends_with("-> error ErrorCode::HttpRequestDenied"), "{lines:?}");
    assert!(audit.contains("the secret `api-token`"), "{audit}");
    assert_eq!(server.seen().len(), 1, "the second request never left");
}
