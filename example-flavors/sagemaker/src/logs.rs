//! Following a training job's CloudWatch Logs as the SageMaker SDK does:
//! list the streams of `/aws/sagemaker/TrainingJobs` named `{job}/…`, then
//! page each forward from where the last poll stopped. A stream ends for now
//! when the next forward token is the one sent.

use std::collections::BTreeMap;

use serde_json::json;

use crate::api::{AwsApi, AwsError};

/// SageMaker's log group for training jobs.
pub const LOG_GROUP: &str = "/aws/sagemaker/TrainingJobs";

/// Where each of a job's log streams was left.
pub struct LogFollower {
    job: String,
    /// Stream name → the forward token to continue from.
    streams: BTreeMap<String, Option<String>>,
    warned: bool,
}

impl LogFollower {
    pub fn new(job: &str) -> Self {
        Self { job: job.to_owned(), streams: BTreeMap::new(), warned: false }
    }

    /// Print every event written since the last call, stream by stream.
    pub fn poll(&mut self, logs: &AwsApi) {
        if let Err(error) = self.try_poll(logs)
            && !self.warned
        {
            stepbox_guest::log::warn(&format!("cannot read the job's CloudWatch logs (will keep trying): {error}"));
            self.warned = true;
        }
    }

    fn try_poll(&mut self, logs: &AwsApi) -> Result<(), AwsError> {
        let listed = logs.call(
            "DescribeLogStreams",
            &json!({
                "logGroupName": LOG_GROUP,
                "logStreamNamePrefix": format!("{}/", self.job),
                "orderBy": "LogStreamName",
                "limit": 50,
            }),
        );
        let listed = match listed {
            Ok(listed) => listed,
            // No group yet (no job of this account has logged): no logs yet.
            Err(error) if error.code() == Some("ResourceNotFoundException") => return Ok(()),
            Err(error) => return Err(error),
        };
        for stream in listed["logStreams"].as_array().into_iter().flatten() {
            if let Some(name) = stream["logStreamName"].as_str() {
                self.streams.entry(name.to_owned()).or_insert(None);
            }
        }
        let names: Vec<String> = self.streams.keys().cloned().collect();
        for name in names {
            self.read_stream(logs, &name)?;
        }
        Ok(())
    }

    fn read_stream(&mut self, logs: &AwsApi, stream: &str) -> Result<(), AwsError> {
        let short = stream.strip_prefix(&format!("{}/", self.job)).unwrap_or(stream).to_owned();
        // At most 20 pages a poll, so a chatty job cannot stall status checks.
        for _ in 0..20 {
            let token = self.streams.get(stream).cloned().flatten();
            let mut input = json!({
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": true,
                "limit": 10000,
            });
            if let Some(token) = &token {
                input["nextToken"] = json!(token);
            }
            let page = logs.call("GetLogEvents", &input)?;
            for event in page["events"].as_array().into_iter().flatten() {
                if let Some(message) = event["message"].as_str() {
                    stepbox_guest::log::info(&format!("{short} | {}", message.trim_end()));
                }
            }
            let next = page["nextForwardToken"].as_str().map(str::to_owned);
            let done = next.is_none() || next == token;
            self.streams.insert(stream.to_owned(), next.or(token));
            if done {
                break;
            }
        }
        Ok(())
    }
}
