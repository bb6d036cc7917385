//! Talking to registries over the OCI distribution API (the `oci-client`
//! crate): pulling a base image's manifest, config and layers into the local
//! layout, and pushing a built image's blobs and manifest.
//!
//! Registries on loopback are spoken to over plain HTTP; every other one over
//! HTTPS. Access is anonymous for now (credentials by secret name come with
//! the secrets capability).

use std::str::FromStr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::layout::Layout;

/// A parsed image reference.
pub fn parse(reference: &str) -> Result<Reference, String> {
    Reference::from_str(reference).map_err(|error| error.to_string())
}

/// The registry part (`host[:port]`) of an image reference, as
/// `registry-credential` grants name it; `None` when it is no reference.
pub fn registry_of(image: &str) -> Option<String> {
    parse(image).ok().map(|reference| reference.registry().to_owned())
}

/// Whether `registry` (`host[:port]`) is on this machine's loopback.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// A client for `registries`, using plain HTTP for the loopback ones.
pub fn client(registries: &[&str]) -> Client {
    let plain: Vec<String> = registries.iter().filter(|r| is_loopback(r)).map(|r| r.to_string()).collect();
    Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(plain), ..Default::default() })
}

/// A user and password for one registry (from a `registry-credential` grant).
/// Its `Debug` shows no password.
#[derive(Debug, Clone)]
pub struct Login {
    /// `host[:port]`, as in image references.
    pub registry: String,
    pub username: String,
    pub password: crate::secrets::SecretValue,
}

impl Login {
    /// The login for `registry` kept in the secret `secret`, which holds
    /// `{"username": …, "password": …}` (a `registry-credential` grant or
    /// `--registry-credential`).
    pub fn from_secret(registry: &str, secret: &str, secrets: &crate::secrets::Secrets) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stored {
            username: String,
            password: String,
        }
        let value = secrets
            .get(secret)
            .map_err(|error| format!("the login for {registry} is the secret `{secret}`: {error}"))?;
        let stored: Stored = serde_json::from_str(value.expose()).map_err(|error| {
            format!(
                "the secret `{secret}` does not hold a registry login ({{\"username\": …, \"password\": …}}): {error}"
            )
        })?;
        Ok(Self {
            registry: registry.to_owned(),
            username: stored.username,
            password: crate::secrets::SecretValue::new(stored.password),
        })
    }
}

/// How to authenticate to `registry`: its login, else anonymously.
pub(crate) fn auth_for(logins: &[Login], registry: &str) -> RegistryAuth {
    match logins.iter().find(|login| login.registry.eq_ignore_ascii_case(registry)) {
        Some(login) => RegistryAuth::Basic(login.username.clone(), login.password.expose().to_owned()),
        None => RegistryAuth::Anonymous,
    }
}

/// A base image from a registry: its manifest's layers and its config.
pub struct PulledBase {
    pub layers: Vec<OciDescriptor>,
    pub config: serde_json::Value,
}

/// Pull `reference`'s manifest and config, and every layer the local
/// layout lacks.
pub async fn pull_base(
    client: &Client,
    logins: &[Login],
    reference: &Reference,
    layout: &Layout,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<PulledBase, String> {
    let auth = auth_for(logins, reference.registry());
    let (manifest, _digest, config) =
        client.pull_manifest_and_config(reference, &auth).await.map_err(|error| error.to_string())?;
    let config: serde_json::Value =
        serde_json::from_str(&config).map_err(|error| format!("its config is not JSON: {error}"))?;
    for layer in &manifest.layers {
        if layout.has_blob(&layer.digest) {
            continue;
        }
        progress(&format!("pulling layer {} ({})", short(&layer.digest), bytesize::ByteSize::b(layer.size as u64)));
        let temp = layout.temp_file().map_err(|error| error.to_string())?;
        let file = tokio::fs::File::from_std(temp.reopen().map_err(|error| error.to_string())?);
        client.pull_blob(reference, layer, file).await.map_err(|error| error.to_string())?;
        layout.adopt_blob(temp, &layer.digest).map_err(|error| error.to_string())?;
    }
    Ok(PulledBase { layers: manifest.layers, config })
}

/// An image in the local layout, ready to push: its blobs and its manifest.
pub struct Pushed<'a> {
    /// The layout holding the blobs.
    pub layout: &'a Layout,
    /// The digests of its blobs (layers and config).
    pub blobs: &'a [String],
    /// The manifest, as stored.
    pub manifest: &'a [u8],
    /// The manifest's digest.
    pub manifest_digest: &'a str,
    /// The manifest's media type.
    pub media_type: &'a str,
}

/// Push the blobs of `image` that `target`'s repository lacks, then its
/// manifest; returns `repository@digest`. Blobs the base image
/// `mount_from` has in the same registry are mounted, not uploaded.
pub async fn push(
    client: &Client,
    logins: &[Login],
    target: &Reference,
    mount_from: Option<&Reference>,
    image: Pushed<'_>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String, String> {
    let Pushed { layout, blobs: digests, manifest, manifest_digest, media_type } = image;
    let auth = auth_for(logins, target.registry());
    client.auth(target, &auth, oci_client::RegistryOperation::Push).await.map_err(|error| error.to_string())?;
    for digest in digests {
        if client.blob_exists(target, digest).await.unwrap_or(false) {
            continue;
        }
        if let Some(source) = mount_from.filter(|source| source.registry() == target.registry())
            && client.mount_blob(target, source, digest).await.is_ok()
            && client.blob_exists(target, digest).await.unwrap_or(false)
        {
            continue;
        }
        let bytes = layout.read_blob(digest).map_err(|error| format!("cannot read blob {digest}: {error}"))?;
        progress(&format!("pushing {} ({})", short(digest), bytesize::ByteSize::b(bytes.len() as u64)));
        client.push_blob(target, bytes, digest).await.map_err(|error| error.to_string())?;
    }
    let pinned = Reference::with_digest(
        target.registry().to_owned(),
        target.repository().to_owned(),
        manifest_digest.to_owned(),
    );
    let content_type = reqwest_header(media_type)?;
    client.push_manifest_raw(&pinned, manifest.to_vec(), content_type).await.map_err(|error| error.to_string())?;
    Ok(format!("{}/{}@{manifest_digest}", target.registry(), target.repository()))
}

fn reqwest_header(media_type: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(media_type).map_err(|error| error.to_string())
}

/// `sha256:0123456789ab`, for progress lines.
pub fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}
