//! moto, the AWS emulator, for the SageMaker tests: one `moto_server` per
//! test on a free loopback port, with request authentication on (after the
//! three unauthenticated calls that create an IAM user, its access key and
//! an allow-all policy), so a request the host signed wrongly is refused as
//! AWS would refuse it. boto3, from moto's own virtualenv, seeds and reads
//! the emulator's state.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto_server; killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    python: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The moto_server to run: `$STEPBOX_MOTO_SERVER`, or the one `scripts/services` installs.
fn moto_server() -> PathBuf {
    let path = std::env::var_os("STEPBOX_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::services_dir().join("moto-venv/bin/moto_server"));
    assert!(path.is_file(), "moto_server is not at {}: run scripts/services (it installs moto)", path.display());
    path
}

/// What the IAM setup prints: the access key moto will check signatures against.
const SETUP: &str = r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="stepbox")
key = iam.create_access_key(UserName="stepbox")["AccessKey"]
iam.put_user_policy(UserName="stepbox", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

impl Moto {
    /// Start moto and create the access key.
    pub fn start() -> Self {
        let server = moto_server();
        let python = server.with_file_name("python");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let up = crate::wait_until(Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        let mut moto = Self { child, port, python, access_key_id: String::new(), secret_access_key: String::new() };
        assert!(up, "moto_server did not listen on port {port} within 30 s");
        let keys = moto.boto(SETUP, &[]);
        moto.access_key_id = keys["id"].as_str().expect("an access key id").to_owned();
        moto.secret_access_key = keys["secret"].as_str().expect("a secret key").to_owned();
        moto
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `aws-sigv4` secret's JSON for this moto's access key.
    pub fn credential_json(&self) -> String {
        serde_json::json!({ "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key })
            .to_string()
    }

    /// Run a boto3 script with `MOTO`, the access key and `ARGS` (JSON) in
    /// its environment; its stdout, as JSON.
    pub fn boto(&self, script: &str, args: &[serde_json::Value]) -> serde_json::Value {
        let output = Command::new(&self.python)
            .args(["-c", script])
            .env("MOTO", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("ARGS", serde_json::Value::Array(args.to_vec()).to_string())
            .output()
            .expect("moto's python runs");
        assert!(output.status.success(), "boto3 script failed:\n{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Write `messages` to the CloudWatch stream `stream` of SageMaker's log group.
    pub fn seed_training_logs(&self, stream: &str, messages: &[&str]) {
        let script = r#"
import boto3, json, os, time
stream, messages = json.loads(os.environ["ARGS"])
logs = boto3.client("logs", endpoint_url=os.environ["MOTO"])
group = "/aws/sagemaker/TrainingJobs"
try:
    logs.create_log_group(logGroupName=group)
except logs.exceptions.ResourceAlreadyExistsException:
    pass
logs.create_log_stream(logGroupName=group, logStreamName=stream)
now = int(time.time() * 1000)
logs.put_log_events(logGroupName=group, logStreamName=stream,
                    logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)])
print("{}")
"#;
        self.boto(script, &[serde_json::json!(stream), serde_json::json!(messages)]);
    }

    /// `DescribeTrainingJob`, through boto3.
    pub fn describe_training_job(&self, name: &str) -> serde_json::Value {
        let script = r#"
import boto3, json, os
name, = json.loads(os.environ["ARGS"])
print(json.dumps(boto3.client("sagemaker", endpoint_url=os.environ["MOTO"]).describe_training_job(TrainingJobName=name), default=str))
"#;
        self.boto(script, &[serde_json::json!(name)])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
