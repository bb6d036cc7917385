//! What Slurm says about a job (`scontrol show job -o`), and what each of
//! its states means for a stepbox job.

use std::collections::BTreeMap;

use crate::backends::{JobState, JobStatus};

/// The `Key=Value` fields of one line of `scontrol show job -o`. A value
/// with spaces in it continues until the next `Key=`.
pub fn parse_fields(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for token in line.split_whitespace() {
        match token.split_once('=') {
            Some((key, value))
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/') =>
            {
                fields.insert(key.to_owned(), value.to_owned());
                last = Some(key.to_owned());
            }
            _ => {
                if let Some(value) = last.as_ref().and_then(|key| fields.get_mut(key)) {
                    value.push(' ');
                    value.push_str(token);
                }
            }
        }
    }
    fields
}

/// The exit code in Slurm's `ExitCode=CODE:SIGNAL`: the code, or 128 +
/// the signal that killed the job. Anything else (a signal no process can
/// get, which `128 +` would overflow) is no exit code.
pub fn exit_code(text: &str) -> Option<i32> {
    let (code, signal) = text.split_once(':')?;
    let (code, signal): (i32, i32) = (code.parse().ok()?, signal.parse().ok()?);
    match signal {
        0 => Some(code),
        1..=127 => Some(128 + signal),
        _ => None,
    }
}

/// The job's status from its fields. `cancel_requested` says stepbox asked
/// for the cancellation: `scancel --signal=TERM` ends a job as FAILED with
/// signal 15, and that is still a cancellation.
pub fn status_of(fields: &BTreeMap<String, String>, cancel_requested: bool) -> JobStatus {
    let raw = fields.get("JobState").map(String::as_str).unwrap_or("UNKNOWN");
    // Flags can follow the state (`CANCELLED+`, `CANCELLED by 0`).
    let state: String = raw.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
    let code = fields.get("ExitCode").and_then(|text| exit_code(text));
    let reason = fields.get("Reason").filter(|r| r.as_str() != "None").cloned();
    let with = |state: JobState, message: Option<String>| JobStatus { state, exit_code: code, message };
    let ended = |what: &str| Some(reason.as_ref().map_or(what.to_owned(), |r| format!("{what} ({r})")));
    match state.as_str() {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESV_DEL_HOLD" => {
            JobStatus { state: JobState::Pending, exit_code: None, message: reason }
        }
        "RUNNING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" | "RESIZING" | "SUSPENDED" | "STOPPED" | "UPDATE_DB"
        | "POWER_UP_NODE" => JobStatus { state: JobState::Running, exit_code: None, message: None },
        _ if cancel_requested => with(JobState::Cancelled, Some(format!("cancelled; Slurm says {state}"))),
        "COMPLETED" => with(JobState::Succeeded, None),
        "FAILED" => with(
            JobState::Failed,
            match code {
                Some(code) if code > 128 => ended(&format!("killed by signal {}", code - 128)),
                Some(code) => Some(format!("exited with code {code}")),
                None => ended("failed"),
            },
        ),
        "CANCELLED" | "REVOKED" => with(JobState::Cancelled, ended("cancelled in Slurm")),
        "TIMEOUT" => with(JobState::TimedOut, Some("ran past its Slurm time limit".to_owned())),
        "DEADLINE" => with(JobState::TimedOut, Some("missed its Slurm deadline".to_owned())),
        "OUT_OF_MEMORY" => with(JobState::Failed, Some("ran out of memory (Slurm OUT_OF_MEMORY)".to_owned())),
        "NODE_FAIL" => with(JobState::Failed, ended("its node failed")),
        "BOOT_FAIL" => with(JobState::Failed, ended("its node failed to boot")),
        "PREEMPTED" => with(JobState::Failed, Some("preempted by a higher-priority job".to_owned())),
        "SPECIAL_EXIT" => with(JobState::Failed, ended("ended in Slurm's SPECIAL_EXIT state")),
        other => with(JobState::Failed, Some(format!("Slurm reports a state stepbox does not know: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_lines_parse_into_fields() {
        let line = "JobId=7 JobName=stepbox-j1 JobState=FAILED Reason=NonZeroExitCode Dependency=(null) \
                    ExitCode=7:0 Command=/runs/my step/run.sh StdOut=/runs/x.log TRES=cpu=1,mem=100M,node=1";
        let fields = parse_fields(line);
        assert_eq!(fields["JobState"], "FAILED");
        assert_eq!(fields["ExitCode"], "7:0");
        assert_eq!(fields["Command"], "/runs/my step/run.sh", "a value with a space");
        assert_eq!(fields["TRES"], "cpu=1,mem=100M,node=1");
    }

    #[test]
    fn exit_codes_are_read_and_impossible_signals_are_none() {
        assert_eq!(exit_code("3:0"), Some(3));
        assert_eq!(exit_code("0:15"), Some(143));
        assert_eq!(exit_code("0:2147483647"), None, "128 + i32::MAX would overflow");
        assert_eq!(exit_code("0:-5"), None);
        assert_eq!(exit_code("nonsense"), None);
    }

    #[test]
    fn every_slurm_state_has_a_meaning() {
        // (JobState, ExitCode, cancel requested, state, exit code)
        let cases: &[(&str, &str, bool, JobState, Option<i32>)] = &[
            ("PENDING", "0:0", false, JobState::Pending, None),
            ("CONFIGURING", "0:0", false, JobState::Pending, None),
            ("REQUEUED", "0:0", false, JobState::Pending, None),
            ("RUNNING", "0:0", false, JobState::Running, None),
            ("COMPLETING", "0:0", false, JobState::Running, None),
            ("SUSPENDED", "0:0", false, JobState::Running, None),
            ("COMPLETED", "0:0", false, JobState::Succeeded, Some(0)),
            ("FAILED", "7:0", false, JobState::Failed, Some(7)),
            ("FAILED", "0:9", false, JobState::Failed, Some(137)),
            ("FAILED", "0:15", true, JobState::Cancelled, Some(143)),
            ("CANCELLED", "0:15", false, JobState::Cancelled, Some(143)),
            ("CANCELLED+", "0:0", false, JobState::Cancelled, Some(0)),
            ("TIMEOUT", "0:1", false, JobState::TimedOut, Some(129)),
            ("DEADLINE", "0:0", false, JobState::TimedOut, Some(0)),
            ("OUT_OF_MEMORY", "0:125", false, JobState::Failed, Some(253)),
            ("NODE_FAIL", "0:0", false, JobState::Failed, Some(0)),
            ("BOOT_FAIL", "0:0", false, JobState::Failed, Some(0)),
            ("PREEMPTED", "0:0", false, JobState::Failed, Some(0)),
            ("SPECIAL_EXIT", "3:0", false, JobState::Failed, Some(3)),
            ("REVOKED", "0:0", false, JobState::Cancelled, Some(0)),
            ("SOMETHING_NEW", "0:0", false, JobState::Failed, Some(0)),
        ];
        for (slurm, exit, cancel_requested, state, code) in cases {
            let fields = parse_fields(&format!("JobId=1 JobState={slurm} Reason=None ExitCode={exit}"));
            let status = status_of(&fields, *cancel_requested);
            assert_eq!((status.state, status.exit_code), (*state, *code), "{slurm} {exit}");
            if status.state.is_terminal() && status.state != JobState::Succeeded {
                assert!(status.message.is_some(), "{slurm} explains itself");
            }
        }
        let oom = status_of(&parse_fields("JobState=OUT_OF_MEMORY ExitCode=0:125"), false);
        assert!(oom.message.unwrap_or_default().contains("out of memory"));
    }
}
