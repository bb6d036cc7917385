//! The GPUs a job on this machine gets: its request checked against the
//! inventory, a lease taken (waiting, with what it waits for in the job's
//! log, at most the job's own time limit), and the variables the host alone
//! sets from it. Shared by the local and container backends.

use std::sync::Arc;

use crate::gpus::{self, GpuRequest, Holder, Inventory, Lease, LeaseError, Leases};

use super::{BackendError, JobLog, JobRequest, Stream};

/// The lease for `request`'s GPUs, or `None` when it asks for none.
pub async fn lease_for(leases: &Leases, request: &JobRequest) -> Result<Option<Lease>, BackendError> {
    let Some(asked) = GpuRequest::of(&request.resources) else {
        return Ok(None);
    };
    let inventory = Inventory::read().map_err(|error| BackendError::Failed(error.to_string()))?;
    let holder = Holder::this_process(&request.run_id, &request.name);
    let log: Arc<JobLog> = Arc::clone(&request.log);
    let said = |line: &str| {
        tracing::info!("job {}: {line}", request.name);
        log.write(Stream::Stderr, format!("stepbox: {line}\n").as_bytes());
    };
    let started = std::time::Instant::now();
    let take = leases.take(&inventory, &asked, &holder, request.timeout, said);
    let taken = match request.closing.clone() {
        Some(mut closing) => tokio::select! {
            taken = take => taken,
            _ = closing.wait_for(|closed| *closed) => {
                return Err(BackendError::Failed(format!(
                    "the launch ended while the job waited for {}; it was not started",
                    asked.describe()
                )));
            }
        },
        None => take.await,
    };
    let lease = taken.map_err(|error| match error {
        LeaseError::NoGpus { .. } | LeaseError::TooMany { .. } | LeaseError::NoSuchClass { .. } => {
            BackendError::Unsatisfiable(error.to_string())
        }
        LeaseError::TimedOut { .. } | LeaseError::Io { .. } => BackendError::Failed(error.to_string()),
    })?;
    let names: Vec<String> = lease.gpus().iter().map(|gpu| format!("{} ({})", gpu.index, gpu.uuid)).collect();
    let waited = started.elapsed();
    let after = if waited >= std::time::Duration::from_secs(1) {
        format!(", after waiting {}", humantime::format_duration(std::time::Duration::from_secs(waited.as_secs())))
    } else {
        String::new()
    };
    request.log.write(Stream::Stderr, format!("stepbox: GPUs leased: {}{after}\n", names.join(", ")).as_bytes());
    Ok(Some(lease))
}

/// The job's environment with the GPU variables the host sets: the
/// flavor's values for them dropped, the lease's (or "none") in their place.
pub fn job_env(env: &[(String, String)], lease: Option<&Lease>) -> Vec<(String, String)> {
    let gpus = lease.map(Lease::gpus).unwrap_or(&[]);
    env.iter()
        .filter(|(name, _)| !gpus::is_visibility_variable(name))
        .cloned()
        .chain(gpus::visibility_env(gpus).into_iter().map(|(name, value)| (name.to_owned(), value)))
        .collect()
}

/// The UUIDs of a lease, for the run record.
pub fn uuids(lease: Option<&Lease>) -> Vec<String> {
    lease.map(|lease| lease.gpus().iter().map(|gpu| gpu.uuid.clone()).collect()).unwrap_or_default()
}
