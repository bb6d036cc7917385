//! Flavors as OCI artifacts: push a component to a registry in the CNCF Wasm
//! OCI layout ([`artifact`]), and pull one back by tag or digest
//! ([`transfer`]), bounded, following a registry's redirects safely, and
//! checked against the digests its manifest declares.
//!
//! No WebAssembly runtime here: the caller checks that the bytes are a
//! flavor, compiles and registers them.

pub mod artifact;
pub mod bundle;
pub mod keys;
pub mod signature;
pub mod transfer;

use thiserror::Error;

pub use artifact::{ComponentWorld, WasmConfig};

/// The prefix that marks a registry reference where a file path could stand.
pub const SCHEME: &str = "oci://";
pub use transfer::{Pulled, Pushed, Signed, pull, push, sign};

/// Why pushing or pulling a flavor artifact failed; nothing was registered.
#[derive(Debug, Error)]
pub enum WasmOciError {
    #[error(
        "`{reference}` is not a registry reference: {message}. Write REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST, e.g. registry.example.com/flavors/local:1.0"
    )]
    Reference { reference: String, message: String },
    #[error("cannot reach the registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error(
        "the registry {registry} wants a login; store it as a secret (`stepbox secret set NAME` with {{\"username\": …, \"password\": …}}) and pass --registry-credential {registry}=basic:NAME"
    )]
    LoginRequired { registry: String },
    #[error(
        "the registry {registry} refused the login or the access ({detail}); check the credential's user, password and rights"
    )]
    Denied { registry: String, detail: String },
    #[error(
        "{reference} was not found in its registry (404); check the repository and tag, or push it with `stepbox flavor push`"
    )]
    NotFound { reference: String },
    #[error("{reference} is not a Wasm component artifact: {why}")]
    NotAWasmArtifact { reference: String, why: String },
    #[error("{what} is {}, more than the {} stepbox takes", bytesize::ByteSize::b(*size), bytesize::ByteSize::b(*limit))]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error(
        "the registry sent more bytes for the {what} than the {declared} its manifest declares; nothing was registered"
    )]
    Oversent { what: String, declared: u64 },
    #[error(
        "the {what} does not match its digest: expected {expected}, the registry sent {actual}; nothing was registered"
    )]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("the registry's redirect for the {what} was not followed: {why}")]
    Redirect { what: String, why: String },
    #[error("the registry {registry} answered {status} for the {what}: {message}")]
    Registry { registry: String, what: String, status: u16, message: String },
    #[error("the signatures beside {reference} cannot be read: {why}")]
    BadSignatures { reference: String, why: String },
    #[error("cannot push to {reference}: {message}")]
    Push { reference: String, message: String },
    #[error("{0}")]
    Internal(String),
}

impl WasmOciError {
    /// The process exit code: unreachable (69), a login wanted or refused
    /// (77), anything else about what was asked for (64).
    pub fn exit_code(&self) -> u8 {
        match self {
            WasmOciError::Unreachable { .. } => crate::exit::UNAVAILABLE,
            WasmOciError::LoginRequired { .. } | WasmOciError::Denied { .. } => crate::exit::DENIED,
            WasmOciError::Internal(_) => crate::exit::INTERNAL,
            _ => crate::exit::BAD_INPUT,
        }
    }
}

/// What the signature tests share: a key `cosign generate-key-pair` wrote
/// (empty password), a repository and digests made of one repeated digit.
#[cfg(test)]
pub(crate) mod fixtures {
    pub const COSIGN_KEY: &str = include_str!("testdata/cosign-generated-empty-password.key");
    pub const REPO: &str = "registry.example.com/flavors/local";

    /// `sha256:` and 64 times `c`.
    pub fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }
}
