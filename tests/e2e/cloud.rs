//! The cloud flavors (sagemaker, vertex, azureml) against emulators and
//! fakes of their services: moto for SageMaker's encoding, signing and
//! CloudWatch Logs; small fakes, built from the documented request and
//! response shapes, for job lifecycles moto lacks (a job that runs, fails or
//! is stopped) and for Vertex AI and Azure ML, which have no emulator. Each
//! test checks the request the service received, that the credential reached
//! it but not the flavor or the run's files, and that Ctrl-C reaches the
//! service's stop or cancel API.

use std::time::Duration;

use stepbox_e2e::fake_http::{FakeServer, Recorded, Reply};
use stepbox_e2e::fake_tokens::{azure_token_server, google_key_file, google_token_server, rsa_key_pair};
use stepbox_e2e::moto::Moto;
use stepbox_e2e::{TestHome, files_containing, path_str, wait_until};

/// `stepbox launch`'s exit code when the flavor reports a failure of its own.
const FLAVOR_ERROR: i32 = 70;
const ROLE: &str = "arn:aws:iam::123456789012:role/SageMakerRole";
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:latest";

/// A home with `flavor` registered, `secrets` stored, and step operator
/// `name` using it with `config` and `grants`.
fn cloud_home(
    flavor: &std::path::Path,
    name: &str,
    flavor_name: &str,
    secrets: &[(&str, &str)],
    config: &[String],
    grants: &[String],
) -> TestHome {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(flavor)]).expect_code(0);
    for (secret, value) in secrets {
        t.set_secret(secret, value.as_bytes()).expect_code(0);
    }
    let mut args: Vec<&str> = Vec::new();
    for c in config {
        args.extend(["--config", c.as_str()]);
    }
    for g in grants {
        args.extend(["--grant", g.as_str()]);
    }
    t.register_operator(name, flavor_name, &args).expect_code(0);
    t
}

/// A home with the sagemaker flavor, `keys` as secret `aws-keys`, and step
/// operator `sm` talking to `endpoint` for both SageMaker and Logs.
fn sagemaker_home(endpoint: &str, keys: &str) -> TestHome {
    let config = [
        format!("role={ROLE}"),
        "bucket=my-bucket".to_owned(),
        "region=us-east-1".to_owned(),
        format!("endpoint_url={endpoint}/"),
        format!("logs_endpoint_url={endpoint}/"),
        "max_poll_interval_seconds=1".to_owned(),
    ];
    let grants = [
        "images".to_owned(),
        "http".to_owned(),
        format!("http-origin={endpoint}"),
        format!("http-credential={endpoint}=aws-sigv4:aws-keys"),
    ];
    cloud_home(&stepbox_e2e::sagemaker_flavor(), "sm", "sagemaker", &[("aws-keys", keys)], &config, &grants)
}

/// Launch flags: the image, a fixed step-run id, and the step's environment.
fn launch_flags<'a>(step_run_id: &'a str, env: &'a [String]) -> Vec<&'a str> {
    let mut flags = vec!["--image", IMAGE, "--step-run-id", step_run_id];
    for e in env {
        flags.extend(["--env", e.as_str()]);
    }
    flags
}

#[test]
fn sagemaker_runs_a_step_as_a_training_job_that_moto_authenticates() {
    let moto = Moto::start();
    let job = "pipe-trainer-0a1b2c3d4e5f";
    moto.seed_training_logs(&format!("{job}/algo-1-1700000000"), &["epoch 1 loss=0.5", "epoch 2 loss=0.25"]);
    let t = sagemaker_home(&moto.endpoint(), &moto.credential_json());

    let env = ["RUN_ID=abc123".to_owned()];
    let run = t.launch_with(
        "sm",
        "trainer",
        &launch_flags("0a1b2c3d-4e5f-6789", &env),
        &["python", "-m", "trainer", "--epochs", "3"],
    );
    run.expect_code(0);
    assert!(run.stderr.contains(&format!("created SageMaker training job {job}")), "{}", run.stderr);
    assert!(run.stderr.contains("algo-1-1700000000 | epoch 2 loss=0.25"), "CloudWatch logs are shown: {}", run.stderr);
    assert!(run.stderr.contains("Completed"), "{}", run.stderr);

    // What moto stored is what the flavor sent.
    let described = moto.describe_training_job(job);
    assert_eq!(described["RoleArn"], ROLE);
    assert_eq!(described["AlgorithmSpecification"]["TrainingImage"], IMAGE);
    assert_eq!(
        described["AlgorithmSpecification"]["ContainerEntrypoint"],
        serde_json::json!(["python", "-m", "trainer", "--epochs", "3"])
    );
    assert_eq!(described["ResourceConfig"]["InstanceType"], "ml.m5.large");
    assert_eq!(described["OutputDataConfig"]["S3OutputPath"], "s3://my-bucket/");

    // Neither the secret key nor a signature is in anything the run left.
    for needle in [moto.secret_access_key.as_str(), "AWS4-HMAC-SHA256", "Signature="] {
        let leaked = files_containing(&t.home().join("runs"), needle);
        assert!(leaked.is_empty(), "{needle} is in {leaked:?}");
    }

    // A wrong secret key: moto refuses the signature, and the launch says so.
    let wrong = serde_json::json!({ "access_key_id": moto.access_key_id, "secret_access_key": "not-the-key" });
    t.set_secret("aws-keys", wrong.to_string().as_bytes()).expect_code(0);
    let refused = t.launch_with("sm", "trainer", &launch_flags("ffff0000-1111", &[]), &["python", "-m", "trainer"]);
    refused.expect_error(FLAVOR_ERROR, "SignatureDoesNotMatch (HTTP 403)");
}

#[test]
fn stepbox_cancel_of_a_detached_sagemaker_run_stops_the_training_job() {
    let fake = sagemaker_fake(usize::MAX, "Completed");
    let t = sagemaker_home(&fake.origin(), FAKE_KEYS);
    let mut args = vec!["submit", "-s", "sm", "--pipeline", "pipe", "--run", "r", "--step", "trainer"];
    args.extend(launch_flags("6666aaaa-bbbb", &[]));
    args.extend(["--", "python", "-m", "trainer"]);
    let submitted = t.run(&args);
    submitted.expect_code(0);
    let id = submitted.stdout.trim().to_owned();
    let polling = wait_until(Duration::from_secs(60), || !calls(&fake, "SageMaker.DescribeTrainingJob").is_empty());
    assert!(polling, "the detached run never polled the job");
    t.run(&["cancel", &id]).expect_code(0);
    let stops = calls(&fake, "SageMaker.StopTrainingJob");
    assert_eq!(stops.len(), 1, "StopTrainingJob was called before `stepbox cancel` returned");
    assert_eq!(stops[0].json()["TrainingJobName"], "pipe-trainer-6666aaaabbbb");
    let status = t.run(&["status", &id, "-o", "json"]).json();
    assert_eq!(status["state"], "cancelled", "{status}");
}

/// A SageMaker fake that follows a job through a lifecycle moto lacks:
/// `InProgress` for `polls_running` describes, then `ending` (or, once
/// stopped, `Stopped`). CloudWatch Logs answer that there is no log group.
fn sagemaker_fake(polls_running: usize, ending: &'static str) -> FakeServer {
    let describes = std::sync::atomic::AtomicUsize::new(0);
    let stopped = std::sync::atomic::AtomicBool::new(false);
    FakeServer::start(move |request| {
        let target = request.header("x-amz-target").unwrap_or_default();
        let name = request.json()["TrainingJobName"].as_str().unwrap_or_default().to_owned();
        match target {
            "SageMaker.CreateTrainingJob" => Reply::json(
                200,
                serde_json::json!({ "TrainingJobArn": format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}") }),
            ),
            "SageMaker.DescribeTrainingJob" => {
                let seen = describes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (status, secondary, reason) = if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    ("Stopped", "Stopped", None)
                } else if seen < polls_running {
                    ("InProgress", "Training", None)
                } else if ending == "Failed" {
                    ("Failed", "Failed", Some("AlgorithmError: ModuleNotFoundError: No module named 'trainer'"))
                } else {
                    (ending, ending, None)
                };
                let mut body = serde_json::json!({ "TrainingJobName": name, "TrainingJobStatus": status, "SecondaryStatus": secondary });
                if let Some(reason) = reason {
                    body["FailureReason"] = serde_json::json!(reason);
                }
                Reply::json(200, body)
            }
            "SageMaker.StopTrainingJob" => {
                stopped.store(true, std::sync::atomic::Ordering::SeqCst);
                Reply::json(200, serde_json::json!({}))
            }
            t if t.starts_with("Logs_20140328.") => Reply::json(
                400,
                serde_json::json!({ "__type": "ResourceNotFoundException", "message": "The specified log group does not exist." }),
            )
            .with_header("x-amzn-ErrorType", "ResourceNotFoundException"),
            _ => Reply::json(400, serde_json::json!({ "__type": "UnknownOperationException" })),
        }
    })
}

fn calls(server: &FakeServer, target: &str) -> Vec<Recorded> {
    server.requests().into_iter().filter(|r| r.header("x-amz-target") == Some(target)).collect()
}

const FAKE_KEYS: &str =
    r#"{"access_key_id":"AKIDSTEPBOXTEST","secret_access_key":"fake-secret-key","session_token":"fake-session"}"#;

#[test]
fn sagemaker_sends_the_documented_request_and_reports_a_failed_jobs_reason() {
    let fake = sagemaker_fake(2, "Failed");
    let t = sagemaker_home(&fake.origin(), FAKE_KEYS);
    let token = "t".repeat(1100);
    let env = [format!("ZENML_STORE_API_TOKEN={token}"), "RUN_ID=abc123".to_owned()];
    let run = t.launch_with("sm", "train_model", &launch_flags("9f8e7d6c-5b4a", &env), &["python", "-m", "trainer"]);
    run.expect_code(1);
    assert!(run.stderr.contains("No module named 'trainer'"), "SageMaker's reason is shown: {}", run.stderr);
    assert_eq!(t.runs()[0]["state"], "failed");

    let create = calls(&fake, "SageMaker.CreateTrainingJob");
    assert_eq!(create.len(), 1);
    let request = &create[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/"));
    assert_eq!(request.header("content-type"), Some("application/x-amz-json-1.1"));
    let authorization = request.header("authorization").unwrap_or_default();
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSTEPBOXTEST/"), "{authorization}");
    assert!(authorization.contains("/us-east-1/sagemaker/aws4_request"), "{authorization}");
    assert!(
        authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"),
        "{authorization}"
    );
    assert_eq!(request.header("x-amz-security-token"), Some("fake-session"));
    assert!(request.header("x-stepbox-aws-scope").is_none(), "the scope header stays in the host");
    let body = request.json();
    assert_eq!(body["TrainingJobName"], "pipe-train-model-9f8e7d6c5b4a");
    assert_eq!(body["RoleArn"], ROLE);
    assert_eq!(body["AlgorithmSpecification"]["TrainingInputMode"], "File");
    assert_eq!(body["OutputDataConfig"]["S3OutputPath"], "s3://my-bucket/");
    assert_eq!(
        body["ResourceConfig"],
        serde_json::json!({ "InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30 })
    );
    assert_eq!(body["StoppingCondition"]["MaxRuntimeInSeconds"], 86400);
    assert_eq!(body["Environment"]["RUN_ID"], "abc123");
    assert!(body["Environment"]["ZENML_STORE_API_TOKEN"].is_null(), "a 1100-character value is split");
    for (i, length) in [(0, 512), (1, 512), (2, 76)] {
        assert_eq!(
            body["Environment"][format!("ZENML_STORE_API_TOKEN_CHUNK_{i}")].as_str().map(str::len),
            Some(length)
        );
    }
    let describes = calls(&fake, "SageMaker.DescribeTrainingJob");
    assert_eq!(describes.len(), 3, "polled until the job failed");
    assert_eq!(describes[0].json(), serde_json::json!({ "TrainingJobName": "pipe-train-model-9f8e7d6c5b4a" }));
    let logs = calls(&fake, "Logs_20140328.DescribeLogStreams");
    assert!(
        logs[0].header("authorization").unwrap_or_default().contains("/us-east-1/logs/aws4_request"),
        "Logs calls are signed for `logs`"
    );
    assert_eq!(logs[0].json()["logStreamNamePrefix"], "pipe-train-model-9f8e7d6c5b4a/");

    // The flavor never had the key: it is in no run file.
    for needle in ["fake-secret-key", "fake-session"] {
        assert!(files_containing(&t.home().join("runs"), needle).is_empty(), "{needle} leaked");
    }
}

#[test]
fn ctrl_c_stops_the_sagemaker_training_job() {
    let fake = sagemaker_fake(usize::MAX, "Completed");
    let t = sagemaker_home(&fake.origin(), FAKE_KEYS);
    let flags = launch_flags("5555aaaa-bbbb", &[]);
    let running = t.spawn_launch_with("sm", "trainer", &flags, &["python", "-m", "trainer"]);
    let polling = wait_until(Duration::from_secs(60), || !calls(&fake, "SageMaker.DescribeTrainingJob").is_empty());
    assert!(polling, "the flavor never polled the job");
    running.signal(nix::sys::signal::Signal::SIGINT);
    let run = running.finish();
    run.expect_code(130);
    let stops = calls(&fake, "SageMaker.StopTrainingJob");
    assert_eq!(stops.len(), 1, "StopTrainingJob was called");
    assert_eq!(stops[0].json(), serde_json::json!({ "TrainingJobName": "pipe-trainer-5555aaaabbbb" }));
    assert!(stops[0].header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")), "signed too");
    assert_eq!(t.runs()[0]["state"], "cancelled");
    let message = t.runs()[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("cancelled by Ctrl-C (SIGINT)"), "{message}");
}

const VERTEX_JOB: &str = "projects/123456789012/locations/us-central1/customJobs/4567890123456789012";

/// A Vertex AI fake (jobs and Cloud Logging on one origin): the job is
/// PENDING, then RUNNING for `polls_running` gets, then FAILED (or, once
/// cancelled, CANCELLED). Logging has two entries, given again on every
/// call as a real `timestamp>=` filter would.
fn vertex_fake(polls_running: usize) -> FakeServer {
    let gets = std::sync::atomic::AtomicUsize::new(0);
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    FakeServer::start(move |request| {
        let path = request.path.split('?').next().unwrap_or_default();
        let job_path = format!("/v1/{VERTEX_JOB}");
        match (request.method.as_str(), path) {
            ("POST", "/v1/projects/my-project/locations/us-central1/customJobs") => {
                let mut job = request.json();
                job["name"] = serde_json::json!(VERTEX_JOB);
                job["state"] = serde_json::json!("JOB_STATE_PENDING");
                Reply::json(200, job)
            }
            ("GET", p) if p == job_path => {
                let seen = gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = if cancelled.load(std::sync::atomic::Ordering::SeqCst) {
                    serde_json::json!({ "name": VERTEX_JOB, "state": "JOB_STATE_CANCELLED", "error": { "code": 1, "message": "CANCELED" } })
                } else if seen < polls_running {
                    serde_json::json!({ "name": VERTEX_JOB, "state": "JOB_STATE_RUNNING" })
                } else {
                    serde_json::json!({ "name": VERTEX_JOB, "state": "JOB_STATE_FAILED",
                        "error": { "code": 3, "message": "The replica workerpool0-0 exited with a non-zero status of 1." } })
                };
                Reply::json(200, body)
            }
            ("POST", p) if p == format!("{job_path}:cancel") => {
                cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
                Reply::json(200, serde_json::json!({}))
            }
            ("POST", "/v2/entries:list") => {
                let entry = |id: &str, message: &str| {
                    serde_json::json!({
                        "insertId": id, "timestamp": "2026-11-29T10:00:00.000000Z", "textPayload": message,
                        "resource": { "type": "ml_job", "labels": { "job_id": "4567890123456789012", "task_name": "workerpool0-0" } },
                    })
                };
                Reply::json(
                    200,
                    serde_json::json!({ "entries": [entry("a1", "loading data"), entry("a2", "epoch 1 loss=0.5")] }),
                )
            }
            _ => Reply::json(
                404,
                serde_json::json!({ "error": { "code": 404, "message": "not found", "status": "NOT_FOUND" } }),
            ),
        }
    })
}

/// A home with the vertex flavor talking to `fake`, its token from `token`.
fn vertex_home(fake: &FakeServer, token: &str) -> (TestHome, FakeServer) {
    let scratch = tempfile::tempdir().expect("a directory");
    let (private_pem, public_pem) = rsa_key_pair(scratch.path());
    let tokens = google_token_server(public_pem, token.to_owned());
    let key = google_key_file(&private_pem, &tokens.url("/token"));
    let config = [
        "project=my-project".to_owned(),
        "region=us-central1".to_owned(),
        format!("endpoint_url={}", fake.origin()),
        format!("logging_endpoint_url={}", fake.origin()),
        "max_poll_interval_seconds=1".to_owned(),
    ];
    let grants = [
        "images".to_owned(),
        "http".to_owned(),
        format!("http-origin={}", fake.origin()),
        format!("http-origin={}", tokens.origin()),
        format!("http-credential={}=google-service-account:gcp-key", fake.origin()),
    ];
    let t = cloud_home(&stepbox_e2e::vertex_flavor(), "vx", "vertex", &[("gcp-key", &key)], &config, &grants);
    (t, tokens)
}

#[test]
fn vertex_creates_the_documented_custom_job_follows_its_logs_and_reports_its_error() {
    let fake = vertex_fake(2);
    let token = format!("ya29.{}", stepbox_e2e::unique_marker());
    let (t, tokens) = vertex_home(&fake, &token);
    let settings = serde_json::json!({ "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2 }).to_string();
    let env = ["RUN_ID=abc123".to_owned()];
    let mut flags = launch_flags("7777cccc-dddd", &env);
    flags.extend(["--settings", &settings]);
    let run = t.launch_with("vx", "trainer", &flags, &["python", "-m", "trainer"]);
    run.expect_code(1);
    assert!(run.stderr.contains("exited with a non-zero status of 1"), "the job's error is shown: {}", run.stderr);
    assert_eq!(run.stderr.matches("workerpool0-0 | epoch 1 loss=0.5").count(), 1, "each entry once: {}", run.stderr);

    let created = fake.requests_to("/v1/projects/my-project/locations/us-central1/customJobs");
    let create = created.iter().find(|r| r.method == "POST").expect("a create request");
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(create.header("authorization"), Some(format!("Bearer {token}").as_str()));
    let body = create.json();
    assert_eq!(body["displayName"], "pipe-trainer");
    let pool = &body["jobSpec"]["workerPoolSpecs"][0];
    assert_eq!(pool["replicaCount"], "1", "int64 fields are sent as strings");
    assert_eq!(
        pool["machineSpec"],
        serde_json::json!({ "machineType": "n1-standard-4", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2 })
    );
    assert_eq!(pool["diskSpec"], serde_json::json!({ "bootDiskType": "pd-ssd", "bootDiskSizeGb": 100 }));
    assert_eq!(pool["containerSpec"]["imageUri"], IMAGE);
    assert_eq!(pool["containerSpec"]["command"], serde_json::json!(["python", "-m", "trainer"]));
    assert!(
        pool["containerSpec"]["env"]
            .as_array()
            .is_some_and(|env| env.contains(&serde_json::json!({ "name": "RUN_ID", "value": "abc123" })))
    );
    assert_eq!(body["labels"]["stepbox-step-run-id"], "7777cccc-dddd");

    let gets = fake.requests_to(&format!("/v1/{VERTEX_JOB}"));
    assert!(gets.len() >= 3 && gets.iter().all(|r| r.method == "GET"), "polled the server-named job: {gets:?}");
    let listed = fake.requests_to("/v2/entries:list");
    let list = listed[0].json();
    assert_eq!(list["resourceNames"], serde_json::json!(["projects/my-project"]));
    assert_eq!(list["orderBy"], "timestamp asc");
    assert!(
        list["filter"].as_str().is_some_and(
            |f| f.starts_with("resource.type=\"ml_job\" AND resource.labels.job_id=\"4567890123456789012\"")
        )
    );
    assert_eq!(tokens.requests().len(), 1, "one token for the whole launch");
    assert!(files_containing(&t.home().join("runs"), &token).is_empty(), "the token is in no run file");
}

#[test]
fn ctrl_c_cancels_the_vertex_custom_job() {
    let fake = vertex_fake(usize::MAX);
    let (t, _tokens) = vertex_home(&fake, "ya29.cancel");
    let running =
        t.spawn_launch_with("vx", "trainer", &launch_flags("8888eeee-ffff", &[]), &["python", "-m", "trainer"]);
    let polling = wait_until(Duration::from_secs(60), || fake.requests().iter().any(|r| r.method == "GET"));
    assert!(polling, "the flavor never polled the job");
    running.signal(nix::sys::signal::Signal::SIGINT);
    running.finish().expect_code(130);
    let cancels = fake.requests_to(&format!("/v1/{VERTEX_JOB}:cancel"));
    assert_eq!(cancels.len(), 1, "customJobs.cancel was called");
    assert_eq!((cancels[0].method.as_str(), cancels[0].json()), ("POST", serde_json::json!({})));
    assert_eq!(cancels[0].header("authorization"), Some("Bearer ya29.cancel"));
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

const WORKSPACE: &str =
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1";
const AZURE_JOB: &str = "pipe_trainer_1234abcd5678";

/// Azure ML's ARM API and Run History on one origin (the workspace's
/// discovery document points back at it): the job is Starting, Running for
/// `polls_running` gets, then Failed (or, once cancelled, Canceled). Run
/// History lists one log file, a SAS URL on `blobs`.
fn azure_fake(polls_running: usize, blobs: String) -> FakeServer {
    let gets = std::sync::atomic::AtomicUsize::new(0);
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let origin = std::sync::OnceLock::<String>::new();
    FakeServer::start(move |request| {
        let path = request.path.split('?').next().unwrap_or_default().to_owned();
        let host = request.header("host").unwrap_or_default().to_owned();
        let origin = origin.get_or_init(|| format!("http://{host}"));
        let job = format!("{WORKSPACE}/jobs/{AZURE_JOB}");
        let status = |status: &str| serde_json::json!({ "name": AZURE_JOB, "properties": { "status": status } });
        match (request.method.as_str(), path.as_str()) {
            ("PUT", p) if p.starts_with(&format!("{WORKSPACE}/environments/")) => Reply::json(201, request.json()),
            ("PUT", p) if p == job => Reply::json(201, status("Starting")),
            ("GET", p) if p == job => {
                let seen = gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Reply::json(
                    200,
                    if cancelled.load(std::sync::atomic::Ordering::SeqCst) {
                        status("Canceled")
                    } else if seen < polls_running {
                        status("Running")
                    } else {
                        status("Failed")
                    },
                )
            }
            ("POST", p) if p == format!("{job}/cancel") => {
                cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
                Reply::text(202, "").with_header("Location", &format!("{origin}/operations/1"))
            }
            ("GET", WORKSPACE) => {
                Reply::json(200, serde_json::json!({ "properties": { "discoveryUrl": format!("{origin}/discovery") } }))
            }
            ("GET", "/discovery") => Reply::json(200, serde_json::json!({ "api": origin })),
            ("GET", p) if p == format!("/history/v1.0{WORKSPACE}/runs/{AZURE_JOB}/details") => Reply::json(
                200,
                serde_json::json!({
                    "runId": AZURE_JOB,
                    "logFiles": { "user_logs/std_log.txt": format!("{blobs}/azureml/std_log.txt?sv=2021-08-06&sig=SAS-SIGNATURE") },
                    "error": { "error": { "code": "UserError", "message": "Execution failed. User process 'python' exited with status code 1." } },
                }),
            ),
            _ => Reply::json(
                404,
                serde_json::json!({ "error": { "code": "NotFound", "message": format!("{path} not found") } }),
            ),
        }
    })
}

/// A blob store whose log grows by a line on each read.
fn blob_fake() -> FakeServer {
    let reads = std::sync::atomic::AtomicUsize::new(0);
    FakeServer::start(move |_| {
        let lines = ["loading data", "epoch 1 loss=0.5", "epoch 2 loss=0.25"];
        let n = (reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1).min(lines.len());
        Reply::text(200, &lines[..n].iter().map(|l| format!("{l}\n")).collect::<String>())
    })
}

/// A home with the azureml flavor talking to `arm` and `blobs`.
fn azure_home(arm: &FakeServer, blobs: &FakeServer, tokens: &FakeServer) -> TestHome {
    let client = serde_json::json!({
        "tenant_id": "tenant-1", "client_id": "app-1", "client_secret": "client-secret-value",
        "authority_host": tokens.origin(),
    })
    .to_string();
    let config = [
        "subscription_id=sub-1".to_owned(),
        "resource_group=rg-1".to_owned(),
        "workspace_name=ws-1".to_owned(),
        format!("endpoint_url={}", arm.origin()),
        "max_poll_interval_seconds=1".to_owned(),
    ];
    let grants = [
        "images".to_owned(),
        "http".to_owned(),
        format!("http-origin={}", arm.origin()),
        format!("http-origin={}", blobs.origin()),
        format!("http-origin={}", tokens.origin()),
        format!("http-credential={}=azure-client-credentials:azure-app", arm.origin()),
    ];
    cloud_home(&stepbox_e2e::azureml_flavor(), "aml", "azureml", &[("azure-app", &client)], &config, &grants)
}

#[test]
fn azureml_registers_the_image_runs_a_command_job_streams_its_logs_and_reports_run_history_errors() {
    let blobs = blob_fake();
    let arm = azure_fake(2, blobs.origin());
    let token = format!("eyJ.{}", stepbox_e2e::unique_marker());
    let tokens = azure_token_server("client-secret-value", token.clone());
    let t = azure_home(&arm, &blobs, &tokens);
    let env = ["RUN_ID=abc123".to_owned()];
    let run = t.launch_with("aml", "trainer", &launch_flags("1234abcd-5678", &env), &["python", "-m", "trainer"]);
    run.expect_code(1);
    assert!(run.stderr.contains("exited with status code 1"), "Run History's error is shown: {}", run.stderr);
    for line in ["std_log.txt | loading data", "std_log.txt | epoch 1 loss=0.5"] {
        assert_eq!(run.stderr.matches(line).count(), 1, "{line} shown once: {}", run.stderr);
    }

    let requests = arm.requests();
    let puts: Vec<&Recorded> = requests.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "an environment version, then the job: {puts:?}");
    let version = puts[0].path.split("/versions/").nth(1).and_then(|rest| rest.split('?').next()).unwrap_or_default();
    assert_eq!(version.len(), 16, "a content-hash version: {}", puts[0].path);
    assert!(puts[0].path.ends_with("?api-version=2025-12-01"), "{}", puts[0].path);
    assert_eq!(puts[0].json()["properties"]["image"], IMAGE);
    assert_eq!(puts[1].path, format!("{WORKSPACE}/jobs/{AZURE_JOB}?api-version=2025-12-01"));
    assert_eq!(puts[1].header("authorization"), Some(format!("Bearer {token}").as_str()));
    let job = &puts[1].json()["properties"];
    assert_eq!(job["jobType"], "Command");
    assert_eq!(job["command"], "python -m trainer");
    assert_eq!(job["environmentId"], format!("azureml:stepbox-step-images:{version}"));
    assert!(job.get("computeId").is_none(), "serverless: no compute id");
    assert_eq!(job["environmentVariables"]["RUN_ID"], "abc123");
    assert_eq!(job["resources"]["instanceCount"], 1);

    let blob_reads = blobs.requests();
    assert!(!blob_reads.is_empty(), "the SAS URL was read");
    assert!(blob_reads.iter().all(|r| r.header("authorization").is_none()), "no token goes with a SAS URL");
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let audit = t.run(&["runs", "show", &id, "--audit", "-o", "json"]).json()["audit"].to_string();
    assert!(audit.contains("sig=…") && !audit.contains("SAS-SIGNATURE"), "the SAS signature is not audited");
    for needle in [token.as_str(), "client-secret-value", "SAS-SIGNATURE"] {
        assert!(files_containing(&t.home().join("runs"), needle).is_empty(), "{needle} leaked");
    }
}

#[test]
fn ctrl_c_cancels_the_azureml_job() {
    let blobs = blob_fake();
    let arm = azure_fake(usize::MAX, blobs.origin());
    let tokens = azure_token_server("client-secret-value", "eyJ.cancel".to_owned());
    let t = azure_home(&arm, &blobs, &tokens);
    let running =
        t.spawn_launch_with("aml", "trainer", &launch_flags("1234abcd-5678", &[]), &["python", "-m", "trainer"]);
    let job = format!("{WORKSPACE}/jobs/{AZURE_JOB}?api-version=2025-12-01");
    let polling =
        wait_until(Duration::from_secs(60), || arm.requests().iter().any(|r| r.method == "GET" && r.path == job));
    assert!(polling, "the flavor never polled the job");
    running.signal(nix::sys::signal::Signal::SIGINT);
    running.finish().expect_code(130);
    let cancels = arm.requests_to(&format!("{WORKSPACE}/jobs/{AZURE_JOB}/cancel"));
    assert_eq!(cancels.len(), 1, "the job's cancel was called");
    assert_eq!(cancels[0].method, "POST");
    assert!(cancels[0].path.ends_with("?api-version=2025-12-01"));
    assert_eq!(cancels[0].header("authorization"), Some("Bearer eyJ.cancel"));
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

#[test]
fn flavor_test_launches_a_remote_flavor_offline_and_expects_the_refusal() {
    let t = TestHome::new();
    let tested = t.run(&[
        "flavor",
        "test",
        path_str(&stepbox_e2e::sagemaker_flavor()),
        "-c",
        &format!("role={ROLE}"),
        "-c",
        "bucket=b",
        "-c",
        "region=us-east-1",
        "-o",
        "json",
    ]);
    tested.expect_code(0);
    let report = tested.json();
    let launch = report["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "launch")).cloned();
    let detail = launch.as_ref().map(|c| c["detail"].to_string()).unwrap_or_default();
    assert_eq!(launch.map(|c| c["result"].clone()), Some("pass".into()), "{report}");
    assert!(detail.contains("HttpRequestDenied"), "the refusal is what ended it: {detail}");
}

#[test]
fn sagemaker_builds_and_pushes_its_image_to_a_registry_that_wants_a_login() {
    let registry = stepbox_e2e::login_registry::LoginRegistry::start("pusher", "registry-password");
    let fake = sagemaker_fake(0, "Completed");
    let t = sagemaker_home(&fake.origin(), FAKE_KEYS);
    let open_registry = stepbox_e2e::registry();
    let base = format!("{open_registry}/stepbox-test/python:3.11");
    let login = serde_json::json!({ "username": "pusher", "password": "registry-password" }).to_string();
    t.set_secret("registry-login", login.as_bytes()).expect_code(0);
    let update = |extra: &[&str]| {
        let mut args = vec![
            "step-operator",
            "update",
            "sm",
            "--config",
            &format!("base_image={base}"),
            "--config",
            &format!("repository={}/steps", registry.address()),
            "--grant",
            &format!("registry={open_registry}"),
            "--grant",
            &format!("registry={}", registry.address()),
            "--grant",
            &format!("base-image={base}"),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        t.run(&args).expect_code(0);
    };
    update(&[]);
    std::fs::write(t.scratch().join("train.py"), "print('training')\n").expect("write the step");
    let launch = |id: &str| {
        t.launch_with(
            "sm",
            "trainer",
            &["--step-run-id", id, "--source-root", path_str(t.scratch())],
            &["python", "train.py"],
        )
    };

    // Without a login the push is refused by the registry, and the launch says so.
    let refused = launch("0000aaaa-1111");
    refused.expect_code(FLAVOR_ERROR);
    assert!(refused.stderr.contains("cannot push the image"), "{}", refused.stderr);
    assert!(calls(&fake, "SageMaker.CreateTrainingJob").is_empty(), "no job without an image");

    update(&["--grant", &format!("registry-credential={}=basic:registry-login", registry.address())]);
    let run = launch("2222bbbb-3333");
    run.expect_code(0);
    let created = calls(&fake, "SageMaker.CreateTrainingJob");
    let image = created[0].json()["AlgorithmSpecification"]["TrainingImage"].as_str().unwrap_or_default().to_owned();
    assert!(
        image.starts_with(&format!("{}/steps@sha256:", registry.address())),
        "the job runs the pushed image: {image}"
    );
    assert!(files_containing(&t.home().join("runs"), "registry-password").is_empty(), "the password is in no run file");
}
