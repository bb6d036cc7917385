//! `stepbox trust …`: the keys trusted to sign flavors from registries.

use std::path::PathBuf;

use super::args::TrustCommand;
use super::output::{self, Format};
use super::{Failure, open};
use crate::exit;

pub fn run(home: Option<PathBuf>, command: TrustCommand) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    match command {
        TrustCommand::Add { name, key, scopes, output } => {
            let record = crate::trust::add(&stepbox, &name, &key, &scopes)?;
            match output {
                Format::Json => output::json(&record)?,
                Format::Table => output::line(format_args!(
                    "trusted key `{}` ({}) for {}",
                    record.name,
                    record.fingerprint,
                    scope_list(&record.scopes)
                ))?,
            }
        }
        TrustCommand::List { output } => {
            let keys = crate::trust::list(&stepbox)?;
            match output {
                Format::Json => output::json(&keys)?,
                Format::Table if keys.is_empty() => output::line(format_args!(
                    "no keys are trusted; flavors from registries register only with --allow-unsigned until one is (`stepbox trust add NAME --key KEY.pub --scope REGISTRY/PREFIX`)"
                ))?,
                Format::Table => {
                    let mut table = output::table(&["NAME", "SCOPES", "FINGERPRINT", "ADDED"]);
                    for key in &keys {
                        table.add_row(vec![
                            key.name.clone(),
                            scope_list(&key.scopes),
                            key.fingerprint.clone(),
                            key.added_at.clone(),
                        ]);
                    }
                    output::line(&table)?;
                }
            }
        }
        TrustCommand::Remove { name } => {
            crate::trust::remove(&stepbox, &name)?;
            output::line(format_args!("no longer trusting the key `{name}`"))?;
        }
    }
    Ok(exit::OK)
}

fn scope_list(scopes: &[crate::trust_scope::TrustScope]) -> String {
    scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
