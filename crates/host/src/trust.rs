//! The trust policy for flavors from registries: `stepbox trust add NAME
//! --key KEY.pub --scope REGISTRY/PREFIX`, `trust list`, `trust remove`.
//! A flavor pulled from a registry registers only when a key trusted for
//! its repository signed its digest (or the user said `--allow-unsigned`,
//! which the flavor record keeps).

use std::path::Path;

use stepbox_backends::wasm_oci::keys::{self, PublicKey};
use stepbox_backends::wasm_oci::signature::Candidate;
use stepbox_store::store::TrustedKeyRecord;
use stepbox_store::trust_scope::TrustScope;

use crate::context::Stepbox;
use crate::flavors::FlavorError;

/// A trusted key, parsed and ready to verify with.
pub struct TrustedKey {
    /// What is stored.
    pub record: TrustedKeyRecord,
    /// The key itself.
    pub key: PublicKey,
}

impl TrustedKey {
    /// This key as a verification candidate for `repository`.
    pub fn candidate(&self, repository: &str) -> Candidate<'_> {
        let covering = self.record.scopes.iter().find(|scope| scope.covers(repository));
        let scope = match covering {
            Some(scope) => scope.to_string(),
            None => self.record.scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "),
        };
        Candidate { name: &self.record.name, scope, key: &self.key, covers: covering.is_some() }
    }
}

/// Names are what `trust remove` and the flavor records use.
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Trust the public key in the file `key_path` as `name` for `scopes`.
pub fn add(stepbox: &Stepbox, name: &str, key_path: &Path, scopes: &[String]) -> Result<TrustedKeyRecord, FlavorError> {
    if !valid_name(name) {
        return Err(FlavorError::Input(format!(
            "`{}` is not a key name: 1-63 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            crate::display::visible(name)
        )));
    }
    if scopes.is_empty() {
        return Err(FlavorError::Input(
            "a trusted key needs at least one --scope REGISTRY[/PREFIX]: the registry (and repository prefix) whose flavors it may vouch for".to_owned(),
        ));
    }
    let scopes = scopes
        .iter()
        .map(|text| TrustScope::parse(text).map_err(|why| FlavorError::Input(format!("--scope {text}: {why}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let shown = key_path.display().to_string();
    let text = read_key_file(key_path)?;
    let key = PublicKey::from_pem(&shown, &text).map_err(|error| FlavorError::Input(error.to_string()))?;
    let record = TrustedKeyRecord {
        name: name.to_owned(),
        scopes,
        public_key: key.to_pem(),
        fingerprint: key.fingerprint(),
        added_at: stepbox_store::store::now(),
    };
    if !stepbox.db.add_trusted_key(&record)? {
        return Err(FlavorError::Input(format!(
            "a key named `{name}` is already trusted; `stepbox trust remove {name}` first, or choose another name"
        )));
    }
    Ok(record)
}

/// Read a key file, bounded.
pub fn read_key_file(path: &Path) -> Result<String, FlavorError> {
    use std::io::Read as _;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|error| FlavorError::Input(format!("cannot read the key file {shown}: {error}")))?;
    let mut text = String::new();
    file.take(keys::MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| FlavorError::Input(format!("cannot read the key file {shown}: {error}")))?;
    if text.len() as u64 > keys::MAX_KEY_FILE_BYTES {
        return Err(FlavorError::Input(format!(
            "{shown} is larger than {} bytes: not a key file",
            keys::MAX_KEY_FILE_BYTES
        )));
    }
    Ok(text)
}

/// Every trusted key.
pub fn list(stepbox: &Stepbox) -> Result<Vec<TrustedKeyRecord>, FlavorError> {
    Ok(stepbox.db.trusted_keys()?)
}

/// Stop trusting the key `name`. Flavors it verified stay registered (their
/// records keep which key it was).
pub fn remove(stepbox: &Stepbox, name: &str) -> Result<(), FlavorError> {
    if stepbox.db.remove_trusted_key(name)? {
        Ok(())
    } else {
        Err(FlavorError::Input(format!(
            "no key named `{name}` is trusted; `stepbox trust list` shows the trusted ones"
        )))
    }
}

/// Every trusted key, parsed. A stored key that no longer parses is an
/// internal error, not a silent skip.
pub fn keys(stepbox: &Stepbox) -> Result<Vec<TrustedKey>, FlavorError> {
    stepbox
        .db
        .trusted_keys()?
        .into_iter()
        .map(|record| {
            let key = PublicKey::from_pem(&format!("trusted key `{}`", record.name), &record.public_key)
                .map_err(|error| FlavorError::Internal(error.to_string()))?;
            Ok(TrustedKey { record, key })
        })
        .collect()
}
