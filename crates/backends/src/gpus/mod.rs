//! GPUs on this machine, for the backends that run jobs here (local and
//! container): which devices there are ([`inventory`]), which a job may have
//! ([`request`]: count and class), and who holds each ([`leases`]: `flock`ed
//! files under `$STEPBOX_HOME/gpus`, keyed by UUID, released when the holder's
//! last descriptor closes, so a SIGKILLed launch frees its GPUs at once).
//!
//! The fence is the device nodes a confined job can reach (see
//! [`crate::backends::confine`]); `CUDA_VISIBLE_DEVICES` is only set so that
//! CUDA numbers what it can see, and is never the only thing that limits a
//! job (NVML ignores it). Facts behind the design:
//! `../shared/research/gpus.md` in the team's notes, summarised in
//! docs/ARCHITECTURE.md.

pub mod inventory;
pub mod leases;
pub mod request;

pub use inventory::{Gpu, Inventory, InventoryError};
pub use leases::{Holder, Lease, LeaseError, Leases};
pub use request::GpuRequest;

/// The variables the host sets for a job from its lease (a flavor's values
/// for them are replaced): the leased GPUs' UUIDs, in lease order, or none.
pub fn visibility_env(gpus: &[Gpu]) -> [(&'static str, String); 3] {
    let uuids: Vec<&str> = gpus.iter().map(|gpu| gpu.uuid.as_str()).collect();
    let list = uuids.join(",");
    [
        // Empty means "no GPU" to CUDA; unset would mean "all of them".
        ("CUDA_VISIBLE_DEVICES", list.clone()),
        // Read by the NVIDIA container runtime only; `void` means no GPU support.
        ("NVIDIA_VISIBLE_DEVICES", if list.is_empty() { "void".to_owned() } else { list }),
        // NVML's order, not CUDA's fastest-first, so indices in logs match `stepbox gpus`.
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".to_owned()),
    ]
}

/// Whether a variable is one the host alone sets for a job.
pub fn is_visibility_variable(name: &str) -> bool {
    matches!(name, "CUDA_VISIBLE_DEVICES" | "NVIDIA_VISIBLE_DEVICES" | "CUDA_DEVICE_ORDER")
}
