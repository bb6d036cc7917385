//! `stepbox secret …`: store, list and delete named secrets.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use super::args::SecretCommand;
use super::output::{self, Format};
use super::{Failure, open};
use crate::exit;
use crate::secrets::{MAX_SECRET_BYTES, SecretError};

pub fn run(home: Option<PathBuf>, command: SecretCommand) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    let secrets = stepbox.home.secrets();
    match command {
        SecretCommand::Set { name, from_file } => {
            crate::secrets::check_name(&name).map_err(failure)?;
            let value = match from_file {
                Some(path) => std::fs::read(&path).map_err(|error| {
                    Failure::input(format!("cannot read the secret from {}: {error}", path.display()))
                })?,
                None => read_stdin(&name)?,
            };
            secrets.set(&name, &value).map_err(failure)?;
            output::note(format_args!(
                "stored secret `{name}`; grant it with: stepbox step-operator update NAME --grant secret={name} (for a backend), or --grant http-credential=ORIGIN=SCHEME:{name} (the credential of an origin)"
            ));
        }
        SecretCommand::List { output } => {
            let names = secrets.list().map_err(failure)?;
            match output {
                Format::Json => output::json(&names)?,
                Format::Table if names.is_empty() => {
                    output::line(format_args!("no secrets yet; store one with `stepbox secret set NAME`"))?
                }
                Format::Table => {
                    for name in &names {
                        output::line(name)?;
                    }
                }
            }
        }
        SecretCommand::Delete { name } => {
            secrets.delete(&name).map_err(failure)?;
            output::note(format_args!("deleted secret `{name}`"));
        }
    }
    Ok(exit::OK)
}

/// The value piped in; refuses a terminal (it would echo the secret) and
/// reads one byte past the limit so that a huge input is reported, not cut.
fn read_stdin(name: &str) -> Result<Vec<u8>, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::input(format!(
            "pipe the value of `{name}` in (`printf %s \"$VALUE\" | stepbox secret set {name}`) or use --from-file FILE"
        )));
    }
    let mut value = Vec::new();
    stdin
        .lock()
        .take(MAX_SECRET_BYTES as u64 + 2)
        .read_to_end(&mut value)
        .map_err(|error| Failure::input(format!("cannot read the secret from stdin: {error}")))?;
    Ok(value)
}

fn failure(error: SecretError) -> Failure {
    match error {
        SecretError::Io { .. } => Failure::new(exit::INTERNAL, error),
        _ => Failure::input(error),
    }
}
