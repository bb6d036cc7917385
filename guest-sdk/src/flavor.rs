//! The trait a flavor implements.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{ConfigError, LaunchError, LaunchReport, LaunchRequest};

/// A step-operator flavor.
///
/// The runtime calls [`Flavor::info`] when the flavor is registered,
/// [`Flavor::validate`] when a step operator is registered or updated, and
/// [`Flavor::launch`] for every step. Configuration and settings arrive as
/// JSON and are decoded into your types with serde; their JSON Schemas are
/// derived with schemars and published in the flavor's metadata.
pub trait Flavor {
    /// The step operator's configuration, set once at registration.
    type Config: DeserializeOwned + JsonSchema;
    /// The per-step settings (`step_operator.<flavor>` in ZenML).
    type Settings: DeserializeOwned + JsonSchema + Default;

    /// Who this flavor is.
    fn info() -> FlavorInfo;

    /// Semantic checks beyond what the types express. Decoding errors are
    /// reported before this is called, naming the bad field.
    fn validate(config: &Self::Config) -> Result<(), ConfigError> {
        let _ = config;
        Ok(())
    }

    /// Prepare the environment, run the step, and return when it is done.
    fn launch(
        config: Self::Config,
        settings: Self::Settings,
        request: LaunchRequest,
    ) -> Result<LaunchReport, LaunchError>;
}

/// A flavor's name, version and description. The schemas are added by the SDK.
#[derive(Debug, Clone)]
pub struct FlavorInfo {
    pub(crate) name: String,
    pub(crate) display_name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) docs_url: Option<String>,
}

impl FlavorInfo {
    /// `name` is the flavor's registry name: lowercase letters, digits, `-` and `_`.
    pub fn new(name: &str, display_name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            display_name: display_name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            docs_url: None,
        }
    }

    /// One or two sentences on what the flavor does.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Where users can read more.
    pub fn docs_url(mut self, url: &str) -> Self {
        self.docs_url = Some(url.to_owned());
        self
    }
}

/// Settings for flavors that have none. Accepts only an empty object.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}
