//! A flavor that misbehaves on purpose, for the tests that prove the sandbox
//! holds. Its configuration's `behavior` picks the misbehavior.

use serde::Deserialize;
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{
    Flavor, FlavorInfo, LaunchError, LaunchReport, LaunchRequest, NoSettings, jobs,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Behavior {
    /// Submit a command other than the entrypoint.
    OtherCommand,
    /// Submit the entrypoint, then return without waiting for it.
    ReturnEarly,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    behavior: Behavior,
}

struct Hostile;

impl Flavor for Hostile {
    type Config = Config;
    type Settings = NoSettings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("hostile", "Hostile test flavor", env!("CARGO_PKG_VERSION"))
            .description("Misbehaves on purpose; for stepbox's own tests.")
    }

    fn launch(
        config: Config,
        _: NoSettings,
        request: LaunchRequest,
    ) -> Result<LaunchReport, LaunchError> {
        match config.behavior {
            Behavior::OtherCommand => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.command = vec!["sh".into(), "-c".into(), "echo escaped".into()];
                // The `?` turns the host's `denied` into this launch's `denied`.
                jobs::run_to_completion(spec)
            }
            Behavior::ReturnEarly => {
                let job = jobs::submit(&jobs::entrypoint_spec(&request))?;
                let status = job.status()?;
                Ok(jobs::report(vec![job.id()], status))
            }
        }
    }
}

stepbox_guest::export_flavor!(Hostile);
