//! Following a custom job's logs in Cloud Logging as `gcloud ai custom-jobs
//! stream-logs` does: `entries:list` filtered on the job's `ml_job`
//! resource, oldest first, from the last timestamp seen, skipping entries
//! already shown at that timestamp.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use stepbox_guest::http::{CallError, call_json};

/// Where the job's log was left.
pub struct LogFollower {
    url: String,
    project: String,
    job_id: String,
    /// The newest timestamp shown, and the entries shown at it.
    last: Option<(String, BTreeSet<String>)>,
    warned: bool,
}

impl LogFollower {
    /// Follow `job_id`'s entries through the Logging API at `endpoint`.
    pub fn new(endpoint: &str, project: &str, job_id: &str) -> Self {
        Self {
            url: format!("{}/v2/entries:list", endpoint.trim_end_matches('/')),
            project: project.to_owned(),
            job_id: job_id.to_owned(),
            last: None,
            warned: false,
        }
    }

    /// Print the entries written since the last call.
    pub fn poll(&mut self) {
        if let Err(error) = self.try_poll()
            && !self.warned
        {
            stepbox_guest::log::warn(&format!(
                "cannot read the job's Cloud Logging entries (will keep trying): {error}"
            ));
            self.warned = true;
        }
    }

    /// The filter gcloud uses, from the last timestamp seen.
    pub fn filter(&self) -> String {
        let mut filter = format!("resource.type=\"ml_job\" AND resource.labels.job_id=\"{}\"", self.job_id);
        if let Some((timestamp, _)) = &self.last {
            filter.push_str(&format!(" AND timestamp>=\"{timestamp}\""));
        }
        filter
    }

    fn try_poll(&mut self) -> Result<(), CallError> {
        let mut page_token: Option<String> = None;
        // At most 10 pages a poll, so a chatty job cannot stall status checks.
        for _ in 0..10 {
            let mut request = json!({
                "resourceNames": [format!("projects/{}", self.project)],
                "filter": self.filter(),
                "orderBy": "timestamp asc",
                "pageSize": 1000,
            });
            if let Some(token) = &page_token {
                request["pageToken"] = json!(token);
            }
            let page = call_json("POST", &self.url, Some(&request))?;
            for entry in page["entries"].as_array().into_iter().flatten() {
                self.show(entry);
            }
            page_token = page["nextPageToken"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
            if page_token.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn show(&mut self, entry: &Value) {
        let timestamp = entry["timestamp"].as_str().unwrap_or_default().to_owned();
        let id = entry["insertId"].as_str().unwrap_or_default().to_owned();
        match &mut self.last {
            Some((last, seen)) if *last == timestamp => {
                if !seen.insert(id) {
                    return;
                }
            }
            _ => self.last = Some((timestamp, BTreeSet::from([id]))),
        }
        let message = entry["textPayload"].as_str().or_else(|| entry["jsonPayload"]["message"].as_str());
        if let Some(message) = message {
            let task = entry["resource"]["labels"]["task_name"].as_str().unwrap_or("job");
            stepbox_guest::log::info(&format!("{task} | {}", message.trim_end()));
        }
    }
}
