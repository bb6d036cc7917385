//! What `images` may do: the registries a flavor may push to, the base
//! images it may build on, and the registry logins the host applies.

use std::fmt;
use std::str::FromStr;

use super::{Denial, Grants};

/// How the host logs in to an image registry for `images` (a registry
/// the step operator must also be granted with `registry=`). The secret
/// holds `{"username": …, "password": …}`: a user and password, an access
/// token (ACR's token user, Artifact Registry's `_json_key` with the key
/// file as password), never seen by the flavor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// `host[:port]`, as in image references.
    pub registry: String,
    /// The stored secret.
    pub secret: String,
}

impl RegistryCredential {
    /// Parse `HOST[:PORT]=basic:SECRET`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (registry, credential) = text.split_once('=').ok_or("it has no `=`")?;
        if registry.is_empty() || registry.contains(['/', '@', ' ']) {
            return Err(format!("`{registry}` is not a registry host such as registry.example.com:5000"));
        }
        let secret = match credential.split_once(':') {
            Some(("basic", secret)) => secret,
            Some((scheme, _)) => {
                return Err(format!("`{scheme}` is not a registry credential scheme (there is: basic)"));
            }
            None => return Err(format!("`{credential}` is not basic:SECRET")),
        };
        stepbox_backends::secrets::check_name(secret).map_err(|error| error.to_string())?;
        Ok(Self { registry: registry.to_ascii_lowercase(), secret: secret.to_owned() })
    }
}

impl fmt::Display for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=basic:{}", self.registry, self.secret)
    }
}

impl FromStr for RegistryCredential {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

super::stored_as_text!(RegistryCredential);

impl Grants {
    /// An image may be pushed only to a granted registry (`host[:port]`).
    pub fn push_registry(&self, registry: &str) -> Result<(), Denial> {
        if self.registries.iter().any(|granted| granted == registry) {
            return Ok(());
        }
        Err(Denial {
            rule: "registries",
            message: format!(
                "pushing to the registry `{registry}` is not granted to this step operator{}; grant it with --grant registry={registry}",
                granted_list(&self.registries)
            ),
        })
    }

    /// An image may be built only on a granted base image: one equal to a
    /// `base-image=` grant, or starting with one that ends in `*`.
    pub fn base_image(&self, base: &str) -> Result<(), Denial> {
        // A prefix grant must not be escaped with `..` (`oci:/srv/bases/../../etc`).
        if base.split(['/', ':']).any(|part| part == "..") {
            return Err(Denial {
                rule: "base-images",
                message: format!("the base image `{base}` contains `..`; name it without relative path parts"),
            });
        }
        let allowed = self.base_images.iter().any(|granted| match granted.strip_suffix('*') {
            Some(prefix) => base.starts_with(prefix),
            None => granted == base,
        });
        if allowed {
            return Ok(());
        }
        Err(Denial {
            rule: "base-images",
            message: format!(
                "building on the base image `{base}` is not granted to this step operator{}; grant it with --grant base-image={base}",
                granted_list(&self.base_images)
            ),
        })
    }
}

/// ` (granted: a, b)`, or nothing when none is.
fn granted_list(items: &[String]) -> String {
    if items.is_empty() { String::new() } else { format!(" (granted: {})", items.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::granted;

    #[test]
    fn registry_credentials_parse_replace_and_revoke() {
        let mut grants = Grants::default();
        grants.grant("registry-credential=Registry.Example.com:5000=basic:login").expect("parses");
        grants.grant("registry-credential=registry.example.com:5000=basic:other").expect("replaces");
        assert_eq!(grants.describe(), ["registry-credential=registry.example.com:5000=basic:other"]);
        assert_eq!(grants.registry_credentials[0].secret, "other");
        for (bad, message) in [
            ("registry-credential=registry.example.com", "no `=`"),
            ("registry-credential=registry.example.com/path=basic:x", "not a registry host"),
            ("registry-credential=registry.example.com=aws-ecr:x", "there is: basic"),
            ("registry-credential=registry.example.com=basic:../x", "secret"),
        ] {
            let error = grants.grant(bad).expect_err(bad).to_string();
            assert!(error.contains(message) && error.contains("HOST[:PORT]=basic:SECRET"), "{bad}: {error}");
        }
        grants.revoke("registry-credential=registry.example.com:5000").expect("revokes");
        assert!(grants.registry_credentials.is_empty());
    }

    #[test]
    fn images_need_granted_registries_and_base_images() {
        let grants = granted(&[
            "registry=127.0.0.1:5000",
            "base-image=127.0.0.1:5000/python:3.11",
            "base-image=oci:/srv/bases/*",
        ]);
        assert!(grants.push_registry("127.0.0.1:5000").is_ok());
        let denial = grants.push_registry("registry.example").unwrap_err();
        assert_eq!(denial.rule, "registries");
        assert!(denial.message.contains("--grant registry=registry.example"), "{}", denial.message);
        assert!(grants.base_image("127.0.0.1:5000/python:3.11").is_ok());
        assert!(grants.base_image("oci:/srv/bases/python:3.12").is_ok());
        assert!(grants.base_image("oci:/srv/bases/../../etc:x").is_err(), "a prefix grant cannot be escaped");
        let denial = grants.base_image("127.0.0.1:5000/python:3.12").unwrap_err();
        assert_eq!(denial.rule, "base-images");
        assert!(denial.message.contains("--grant base-image="), "{}", denial.message);
    }
}
