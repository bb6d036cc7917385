//! `stepbox gpus`: this machine's GPUs and which run holds each.

use std::path::PathBuf;

use serde::Serialize;

use super::Failure;
use super::output::{self, Format};
use crate::exit;
use crate::gpus::{Holder, Inventory, Leases, leases::Occupancy};

/// One GPU as `stepbox gpus -o json` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    gpu: &'a crate::gpus::Gpu,
    held: bool,
    held_by: Option<Holder>,
}

pub fn run(home: Option<PathBuf>, format: Format) -> Result<u8, Failure> {
    let home = match home {
        Some(path) => crate::home::Home::at(path),
        None => crate::home::Home::from_env().map_err(|e| Failure::new(exit::BAD_INPUT, e))?,
    };
    let inventory = Inventory::read().map_err(|error| Failure::new(exit::BAD_INPUT, error))?;
    let leases = Leases::new(home.gpus_dir());
    let mut listed = Vec::with_capacity(inventory.gpus.len());
    for gpu in &inventory.gpus {
        let occupancy = leases.occupancy(gpu).map_err(|error| Failure::new(exit::INTERNAL, error))?;
        let (held, held_by) = match occupancy {
            Occupancy::Free => (false, None),
            Occupancy::Held(holder) => (true, holder),
        };
        listed.push(Listed { gpu, held, held_by });
    }
    match format {
        Format::Json => output::json(&serde_json::json!({
            "source": inventory.source,
            "absent_because": inventory.absent_because,
            "control_devices": inventory.control_devices,
            "not_leased": inventory.not_leased_note(),
            "gpus": listed,
        }))?,
        Format::Table if listed.is_empty() => output::line(format_args!(
            "no GPUs found ({}): {}; steps asking for GPUs are refused here",
            inventory.source,
            inventory.absent_because.as_deref().unwrap_or("none listed")
        ))?,
        Format::Table => {
            let mut table = output::table(&["INDEX", "UUID", "MODEL", "MEMORY", "DEVICE", "HELD BY"]);
            for entry in &listed {
                let held_by = match (&entry.held_by, entry.held) {
                    _ if entry.gpu.mig => "never leased: MIG mode is on".to_owned(),
                    (Some(holder), _) => holder.to_string(),
                    (None, true) => "another stepbox process".to_owned(),
                    (None, false) => "-".to_owned(),
                };
                table.add_row(vec![
                    entry.gpu.index.to_string(),
                    entry.gpu.uuid.clone(),
                    entry.gpu.model.clone(),
                    bytesize::ByteSize::b(entry.gpu.memory_bytes).display().iec().to_string(),
                    entry.gpu.device.display().to_string(),
                    held_by,
                ]);
            }
            output::line(&table)?;
            if let Some(note) = inventory.not_leased_note() {
                output::line(format_args!("{note}"))?;
            }
        }
    }
    Ok(exit::OK)
}
