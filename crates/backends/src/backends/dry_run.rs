//! A backend that runs nothing: it records each job it is given and reports
//! it succeeded. `stepbox flavor test` launches a flavor against it to see
//! which jobs the flavor would submit, without running any of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::{
    BackendError, JobBackend, JobRequest, JobResources, JobRuntime, JobState, JobStatus, OrphanedJob, RunningJob,
    Stream,
};

/// A job as the dry run saw it. Environment values are left out.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedJob {
    pub backend: &'static str,
    pub name: String,
    pub command: Vec<String>,
    pub env_names: Vec<String>,
    pub working_dir: Option<String>,
    pub resources: JobResources,
    pub timeout_seconds: Option<u64>,
    /// `host`, `environment:HANDLE` or `image:REF`.
    pub runtime: String,
    pub backend_options: Vec<String>,
}

/// Where a dry run's backends record the jobs they are given.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<RecordedJob>>>);

impl Recorder {
    /// The jobs recorded so far, in submission order.
    pub fn jobs(&self) -> Vec<RecordedJob> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn record(&self, job: RecordedJob) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(job);
    }
}

/// Stands in for the backend `name`.
pub struct DryRunBackend {
    name: &'static str,
    recorder: Recorder,
}

/// A dry-run stand-in for every backend of the catalogue, by name.
pub fn standing_in(recorder: &Recorder) -> std::collections::BTreeMap<&'static str, Arc<dyn JobBackend>> {
    super::catalogue::BACKENDS
        .iter()
        .map(|info| {
            let backend: Arc<dyn JobBackend> = Arc::new(DryRunBackend::new(info.name, recorder.clone()));
            (info.name, backend)
        })
        .collect()
}

impl DryRunBackend {
    pub fn new(name: &'static str, recorder: Recorder) -> Self {
        Self { name, recorder }
    }
}

#[async_trait]
impl JobBackend for DryRunBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    /// A dry run started nothing.
    fn stop_orphan(&self, _job: &OrphanedJob<'_>) -> Result<(), String> {
        Ok(())
    }

    async fn submit(&self, request: JobRequest) -> Result<Arc<dyn RunningJob>, BackendError> {
        self.recorder.record(RecordedJob {
            backend: self.name,
            name: request.name.clone(),
            command: request.command.clone(),
            env_names: request.env.iter().map(|(name, _)| name.clone()).collect(),
            working_dir: request.working_dir.as_ref().map(|dir| dir.display().to_string()),
            resources: request.resources.clone(),
            timeout_seconds: request.timeout.map(|timeout| timeout.as_secs()),
            runtime: match &request.runtime {
                JobRuntime::Host => "host".to_owned(),
                JobRuntime::Environment(environment) => format!("environment:{}", environment.handle),
                JobRuntime::Image(image) => format!("image:{image}"),
            },
            backend_options: request.options.keys(),
        });
        request.log.write(Stream::Stdout, format!("dry run: job {} recorded, not run\n", request.name).as_bytes());
        Ok(Arc::new(RecordedRun { id: format!("dry-run-{}", request.id) }))
    }
}

/// A recorded job: it "succeeded" at once.
struct RecordedRun {
    id: String,
}

#[async_trait]
impl RunningJob for RecordedRun {
    fn external_id(&self) -> String {
        self.id.clone()
    }

    fn status(&self) -> JobStatus {
        JobStatus { state: JobState::Succeeded, exit_code: Some(0), message: Some("dry run: not run".to_owned()) }
    }

    async fn wait(&self) -> JobStatus {
        self.status()
    }

    async fn cancel(&self, _grace: Duration) -> JobStatus {
        self.status()
    }
}
