//! Azure ML's Run History, as `ml_client.jobs.stream()` reads it: find the
//! workspace's data-plane host (the workspace's `discoveryUrl`, whose `api`
//! key is the base), then poll the run's details for its failure and its
//! `logFiles`, a map of log names to SAS URLs. The SAS URL authorizes the
//! read itself: no credential goes with it (the step operator configures
//! none for the blob origin). The files are cumulative, so each poll prints
//! what is past the length already shown.

use std::collections::BTreeMap;

use serde_json::Value;
use stepbox_guest::http::{CallError, HttpError, Request, call_json};

/// Following one job's run.
pub struct RunHistory {
    /// `{api}/history/v1.0/…/runs/{job}/details`, once discovered.
    details_url: Option<String>,
    /// Log name → bytes already shown.
    shown: BTreeMap<String, usize>,
    warned: bool,
}

impl RunHistory {
    /// Discover the Run History host from the workspace at `workspace_url`
    /// (an ARM URL with its api-version); `workspace_path` is
    /// `subscriptions/…/workspaces/NAME`.
    pub fn discover(workspace_url: &str, workspace_path: &str, job: &str) -> Self {
        let details_url = discover_api(workspace_url)
            .map(|api| format!("{}/history/v1.0/{workspace_path}/runs/{job}/details", api.trim_end_matches('/')));
        let details_url = match details_url {
            Ok(url) => Some(url),
            Err(error) => {
                stepbox_guest::log::warn(&format!("cannot find the workspace's Run History (no job logs): {error}"));
                None
            }
        };
        Self { details_url, shown: BTreeMap::new(), warned: false }
    }

    /// Print the logs written since the last call.
    pub fn poll(&mut self) {
        let Some(details) = self.details() else { return };
        let mut files: Vec<(&String, &Value)> =
            details["logFiles"].as_object().into_iter().flatten().filter(|(name, _)| is_user_log(name)).collect();
        files.sort_by_key(|(name, _)| name.as_str());
        for (name, url) in files {
            let Some(url) = url.as_str() else { continue };
            match Request::get(url).send() {
                Ok(response) if response.is_success() => {
                    let shown = self.shown.entry(name.clone()).or_insert(0);
                    if response.body.len() > *shown {
                        let new = String::from_utf8_lossy(&response.body[*shown..]).into_owned();
                        *shown = response.body.len();
                        let short = name.rsplit('/').next().unwrap_or(name);
                        for line in new.lines() {
                            stepbox_guest::log::info(&format!("{short} | {line}"));
                        }
                    }
                }
                Ok(response) => self.warn_once(&format!("reading {name}: HTTP {}", response.status)),
                Err(error) => self.warn_once(&format!("reading {name}: {error}")),
            }
        }
    }

    /// The run's failure message, if Run History has one.
    pub fn failure(&mut self) -> Option<String> {
        let details = self.details()?;
        let error = &details["error"]["error"];
        error["message"].as_str().map(|message| match error["code"].as_str() {
            Some(code) => format!("{code}: {message}"),
            None => message.to_owned(),
        })
    }

    fn details(&mut self) -> Option<Value> {
        let url = self.details_url.clone()?;
        match call_json("GET", &url, None) {
            Ok(details) => Some(details),
            // Run History knows the run only once it has started.
            Err(CallError::Status { status: 404, .. }) => None,
            Err(error) => {
                self.warn_once(&format!("Run History: {error}"));
                None
            }
        }
    }

    fn warn_once(&mut self, message: &str) {
        if !self.warned {
            stepbox_guest::log::warn(&format!("cannot read the job's logs (will keep trying): {message}"));
            self.warned = true;
        }
    }
}

/// The Run History base URL: the workspace's `discoveryUrl`, then its `api`.
fn discover_api(workspace_url: &str) -> Result<String, CallError> {
    let workspace = call_json("GET", workspace_url, None)?;
    let missing = |what: &str| CallError::Http(HttpError::Decode(what.to_owned()));
    let discovery =
        workspace["properties"]["discoveryUrl"].as_str().ok_or_else(|| missing("the workspace has no discoveryUrl"))?;
    let found = call_json("GET", discovery, None)?;
    found["api"].as_str().map(str::to_owned).ok_or_else(|| missing("the discovery document has no `api`"))
}

/// The user's logs: `user_logs/std_log*.txt` (one per node), or the legacy
/// `azureml-logs/NN_….txt`.
fn is_user_log(name: &str) -> bool {
    let user = name.starts_with("user_logs/std_log") && name.ends_with(".txt");
    let legacy = name
        .strip_prefix("azureml-logs/")
        .is_some_and(|rest| rest.len() > 2 && rest[..2].chars().all(|c| c.is_ascii_digit()) && rest.ends_with(".txt"));
    user || legacy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_logs_are_picked_as_azure_ml_picks_them() {
        for (name, picked) in [
            ("user_logs/std_log.txt", true),
            ("user_logs/std_log_process_0.txt", true),
            ("azureml-logs/70_driver_log.txt", true),
            ("system_logs/lifecycler/execution-wrapper.txt", false),
            ("azureml-logs/driver.txt", false),
        ] {
            assert_eq!(is_user_log(name), picked, "{name}");
        }
    }
}
