//! Which GPUs this machine has: read through NVML, loaded at run time (the
//! binary starts and runs CPU steps where no NVIDIA library is installed), or
//! from a file describing devices (`$STEPBOX_GPU_INVENTORY`), which is how
//! the tests and `scripts/gpu-check`'s dry runs describe fake devices.
//!
//! A GPU is keyed by its UUID everywhere (leases, the job's variables, CDI
//! names): NVML's index, the `/dev/nvidiaN` minor and CUDA's ordinal are
//! three different numberings.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The variable naming a file that describes this machine's GPUs instead of
/// NVML (see [`Inventory::from_json`] for its shape).
pub const INVENTORY_ENV: &str = "STEPBOX_GPU_INVENTORY";
/// The largest inventory file read: a few hundred bytes per GPU.
const MAX_INVENTORY_BYTES: u64 = 64 * 1024;
/// The control devices a CUDA process needs besides its GPUs' own nodes,
/// bound into a confined job where they exist.
const CONTROL_DEVICES: &[&str] = &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"];

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// NVML's index (PCI bus order), as `nvidia-smi` numbers it.
    pub index: u32,
    /// `GPU-…`: what leases, `CUDA_VISIBLE_DEVICES` and CDI names use.
    pub uuid: String,
    /// The product name, e.g. `NVIDIA H200`; a request's class matches it.
    pub model: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Its device node on this machine (`/dev/nvidia<minor>`); a confined
    /// job sees it at `/dev/<file name>`.
    pub device: PathBuf,
    /// MIG mode is on: CUDA can use only its slices (`MIG-…`, gated by
    /// `nvidia-caps` nodes), which stepbox does not lease yet, so the GPU is
    /// listed but never leased (leasing it whole would start a job that
    /// finds no GPU: a silent CPU run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mig: bool,
}

/// The GPUs of this machine and where the list came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub gpus: Vec<Gpu>,
    /// The shared NVIDIA control nodes present on this machine.
    pub control_devices: Vec<PathBuf>,
    /// `nvml`, or the inventory file's path.
    pub source: String,
    /// Why there are no GPUs, when there are none (no NVIDIA library, no driver, …).
    pub absent_because: Option<String>,
    /// GPUs NVML counted but could not describe (fallen off the bus, …),
    /// left out of `gpus` with the reason, so that the others still serve.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// Why an inventory could not be read.
#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("cannot read the GPU inventory {path} (from ${INVENTORY_ENV}): {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "the GPU inventory {path} (from ${INVENTORY_ENV}) is larger than {MAX_INVENTORY_BYTES} bytes: it describes devices, one small object each"
    )]
    TooLarge { path: PathBuf },
    #[error("the GPU inventory {path} (from ${INVENTORY_ENV}) is not valid: {reason}; unset the variable to read NVML")]
    Invalid { path: PathBuf, reason: String },
}

/// The inventory file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    gpus: Vec<Gpu>,
    #[serde(default)]
    control_devices: Vec<PathBuf>,
}

impl Inventory {
    /// This machine's GPUs: from `$STEPBOX_GPU_INVENTORY` when it is set,
    /// else from NVML. No NVIDIA library or driver is not an error: the
    /// inventory is empty and says why.
    pub fn read() -> Result<Self, InventoryError> {
        match std::env::var_os(INVENTORY_ENV) {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path)),
            _ => Self::from_nvml(),
        }
    }

    /// An inventory file: `{"gpus": [{"index", "uuid", "model",
    /// "memory_bytes", "device"}, …], "control_devices": ["/dev/nvidiactl", …]}`.
    pub fn from_file(path: &Path) -> Result<Self, InventoryError> {
        let read = |source| InventoryError::Read { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        file.take(MAX_INVENTORY_BYTES + 1).read_to_string(&mut text).map_err(read)?;
        if text.len() as u64 > MAX_INVENTORY_BYTES {
            return Err(InventoryError::TooLarge { path: path.to_owned() });
        }
        Self::from_json(&text, &path.display().to_string())
            .map_err(|reason| InventoryError::Invalid { path: path.to_owned(), reason })
    }

    /// Parses and checks an inventory file's text; `source` names it.
    pub fn from_json(text: &str, source: &str) -> Result<Self, String> {
        let file: InventoryFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let inventory = Inventory {
            gpus: file.gpus,
            control_devices: file.control_devices,
            source: source.to_owned(),
            absent_because: None,
            unreadable: Vec::new(),
        };
        inventory.check()?;
        Ok(inventory.with_absence_explained("the inventory file lists none"))
    }

    /// Every GPU has a UUID safe in a file name, a variable and a CDI name,
    /// unique UUIDs and indices, and absolute device paths.
    fn check(&self) -> Result<(), String> {
        let mut uuids = std::collections::BTreeSet::new();
        let mut indices = std::collections::BTreeSet::new();
        for gpu in &self.gpus {
            check_uuid(&gpu.uuid)?;
            if !uuids.insert(&gpu.uuid) {
                return Err(format!("the UUID {} is listed twice", gpu.uuid));
            }
            if !indices.insert(gpu.index) {
                return Err(format!("the index {} is listed twice", gpu.index));
            }
            if gpu.model.trim().is_empty() || gpu.model.chars().any(char::is_control) {
                return Err(format!("GPU {} has no printable model name", gpu.uuid));
            }
            check_device(&gpu.device)?;
        }
        self.control_devices.iter().try_for_each(|path| check_device(path))
    }

    fn with_absence_explained(mut self, why: &str) -> Self {
        if self.gpus.is_empty() && self.absent_because.is_none() {
            self.absent_because = Some(why.to_owned());
        }
        self
    }

    /// NVML's view; an empty inventory, with the reason, when NVML cannot be
    /// loaded or finds no driver.
    pub fn from_nvml() -> Result<Self, InventoryError> {
        let empty = |why: String| Inventory {
            gpus: Vec::new(),
            control_devices: Vec::new(),
            source: "nvml".to_owned(),
            absent_because: Some(why),
            unreadable: Vec::new(),
        };
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(nvml) => nvml,
            Err(error) => return Ok(empty(nvml_absence(&error))),
        };
        let count = match nvml.device_count() {
            Ok(count) => count,
            Err(error) => return Ok(empty(format!("NVML could not count GPUs: {error}"))),
        };
        let mut gpus = Vec::with_capacity(count as usize);
        let mut unreadable = Vec::new();
        for index in 0..count {
            match describe(&nvml, index) {
                Ok(gpu) => gpus.push(gpu),
                Err(error) => unreadable.push(format!("GPU {index} could not be read by NVML ({error})")),
            }
        }
        let control_devices = CONTROL_DEVICES.iter().map(PathBuf::from).filter(|path| path.exists()).collect();
        let inventory =
            Inventory { gpus, control_devices, source: "nvml".to_owned(), absent_because: None, unreadable };
        inventory.check().map_err(|reason| InventoryError::Invalid { path: PathBuf::from("(nvml)"), reason })?;
        let none = match inventory.unreadable.as_slice() {
            [] => "NVML lists no GPUs".to_owned(),
            unreadable => unreadable.join("; "),
        };
        Ok(inventory.with_absence_explained(&none))
    }

    /// The GPUs a job may lease (not in MIG mode) whose model matches
    /// `class` (all of them when `None`).
    pub fn of_class(&self, class: Option<&str>) -> Vec<&Gpu> {
        self.leasable()
            .filter(|gpu| class.is_none_or(|class| super::request::class_matches(class, &gpu.model)))
            .collect()
    }

    /// The GPUs a job may lease.
    pub fn leasable(&self) -> impl Iterator<Item = &Gpu> {
        self.gpus.iter().filter(|gpu| !gpu.mig)
    }

    /// The models of the GPUs a job may lease, once each, for error messages.
    pub fn models(&self) -> Vec<String> {
        let mut models: Vec<String> = Vec::new();
        for gpu in self.leasable() {
            let count = self.leasable().filter(|other| other.model == gpu.model).count();
            let line = format!("{count} x {}", gpu.model);
            if !models.contains(&line) {
                models.push(line);
            }
        }
        models
    }

    /// What is said of the GPUs that are never leased: those in MIG mode
    /// (and how to use them whole) and those NVML could not read; `None`
    /// when every GPU can be leased.
    pub fn not_leased_note(&self) -> Option<String> {
        let mig: Vec<String> =
            self.gpus.iter().filter(|gpu| gpu.mig).map(|gpu| format!("{} ({})", gpu.index, gpu.model)).collect();
        let mut notes = Vec::new();
        if !mig.is_empty() {
            let (noun, verb) = if mig.len() == 1 { ("GPU", "is") } else { ("GPUs", "are") };
            notes.push(format!(
                "{noun} {} {verb} in MIG mode, whose slices stepbox does not lease yet: to use one whole, disable \
                 MIG on it as root (nvidia-smi -i INDEX -mig 0, then reset it)",
                mig.join(", ")
            ));
        }
        notes.extend(self.unreadable.iter().cloned());
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// One GPU as NVML describes it.
fn describe(nvml: &nvml_wrapper::Nvml, index: u32) -> Result<Gpu, nvml_wrapper::error::NvmlError> {
    let device = nvml.device_by_index(index)?;
    Ok(Gpu {
        index,
        uuid: device.uuid()?,
        model: device.name()?,
        memory_bytes: device.memory_info().map(|memory| memory.total).unwrap_or(0),
        device: PathBuf::from(format!("/dev/nvidia{}", device.minor_number()?)),
        // NVML_DEVICE_MIG_ENABLE; GPUs without MIG answer NotSupported.
        mig: device.mig_mode().is_ok_and(|mode| mode.current == 1),
    })
}

/// A user-facing reason for NVML not loading.
fn nvml_absence(error: &nvml_wrapper::error::NvmlError) -> String {
    use nvml_wrapper::error::NvmlError;
    match error {
        NvmlError::LibloadingError(_) => {
            "no NVIDIA driver library (libnvidia-ml.so.1) on this machine: install the NVIDIA driver to use GPUs"
                .to_owned()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".to_owned(),
        NvmlError::NoPermission => "NVML was refused access to the GPUs (permissions of /dev/nvidia*)".to_owned(),
        other => format!("NVML could not start: {other}"),
    }
}

fn check_uuid(uuid: &str) -> Result<(), String> {
    let well_formed = (uuid.starts_with("GPU-") || uuid.starts_with("MIG-"))
        && uuid.len() <= 96
        && uuid.len() > 4
        && uuid.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(format!("`{uuid}` is not a GPU UUID (GPU-… or MIG-…, letters, digits and `-`)"))
    }
}

fn check_device(path: &Path) -> Result<(), String> {
    let named = path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("nvidia"));
    if path.is_absolute() && named && !path.components().any(|part| matches!(part, std::path::Component::ParentDir)) {
        Ok(())
    } else {
        Err(format!("`{}` is not an absolute path to an nvidia* device node", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_H200: &str = r#"{"gpus": [
        {"index": 0, "uuid": "GPU-aaaa", "model": "NVIDIA H200", "memory_bytes": 150754820096, "device": "/dev/nvidia0"},
        {"index": 1, "uuid": "GPU-bbbb", "model": "NVIDIA H200", "memory_bytes": 150754820096, "device": "/dev/nvidia1"}
    ], "control_devices": ["/dev/nvidiactl"]}"#;

    #[test]
    fn an_inventory_file_lists_its_devices() {
        let inventory = Inventory::from_json(TWO_H200, "fake.json").expect("parses");
        assert_eq!(inventory.gpus.len(), 2);
        assert_eq!(inventory.gpus[1].uuid, "GPU-bbbb");
        assert_eq!(inventory.control_devices, [PathBuf::from("/dev/nvidiactl")]);
        assert_eq!(inventory.models(), ["2 x NVIDIA H200"]);
        assert_eq!(inventory.absent_because, None);
        let empty = Inventory::from_json(r#"{"gpus": []}"#, "none.json").expect("parses");
        assert!(empty.absent_because.is_some());
    }

    #[test]
    fn a_bad_inventory_is_refused_with_what_is_wrong() {
        let gpu = |uuid: &str, index: u32, device: &str| {
            format!(r#"{{"index": {index}, "uuid": "{uuid}", "model": "X", "memory_bytes": 1, "device": "{device}"}}"#)
        };
        let cases = [
            (format!(r#"{{"gpus": [{}]}}"#, gpu("0", 0, "/dev/nvidia0")), "is not a GPU UUID"),
            (format!(r#"{{"gpus": [{}]}}"#, gpu("GPU-a/../b", 0, "/dev/nvidia0")), "is not a GPU UUID"),
            (
                format!(r#"{{"gpus": [{}, {}]}}"#, gpu("GPU-a", 0, "/dev/nvidia0"), gpu("GPU-a", 1, "/dev/nvidia1")),
                "listed twice",
            ),
            (
                format!(r#"{{"gpus": [{}, {}]}}"#, gpu("GPU-a", 0, "/dev/nvidia0"), gpu("GPU-b", 0, "/dev/nvidia1")),
                "listed twice",
            ),
            (format!(r#"{{"gpus": [{}]}}"#, gpu("GPU-a", 0, "nvidia0")), "absolute path"),
            (format!(r#"{{"gpus": [{}]}}"#, gpu("GPU-a", 0, "/dev/sda")), "nvidia* device"),
            (format!(r#"{{"gpus": [{}]}}"#, gpu("GPU-a", 0, "/dev/../etc/nvidia0")), "absolute path"),
            (r#"{"gpus": [], "extra": 1}"#.to_owned(), "unknown field"),
            ("not json".to_owned(), "expected"),
        ];
        for (text, expected) in cases {
            let error = Inventory::from_json(&text, "bad.json").expect_err(&text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_class_matches_whole_words_of_the_model() {
        let inventory = Inventory::from_json(TWO_H200, "fake.json").expect("parses");
        assert_eq!(inventory.of_class(Some("h200")).len(), 2);
        assert_eq!(inventory.of_class(Some("H200")).len(), 2);
        assert_eq!(inventory.of_class(Some("h20")).len(), 0);
        assert_eq!(inventory.of_class(None).len(), 2);
    }

    #[test]
    fn a_gpu_in_mig_mode_is_listed_but_never_leasable() {
        let text = TWO_H200.replacen(r#""device": "/dev/nvidia1""#, r#""device": "/dev/nvidia1", "mig": true"#, 1);
        let inventory = Inventory::from_json(&text, "fake.json").expect("parses");
        assert_eq!(inventory.gpus.len(), 2);
        assert_eq!(inventory.of_class(None).len(), 1);
        assert_eq!(inventory.models(), ["1 x NVIDIA H200"]);
        let note = inventory.not_leased_note().expect("a note");
        assert!(note.contains("GPU 1 (NVIDIA H200) is in MIG mode") && note.contains("-mig 0"), "{note}");
        assert_eq!(Inventory::from_json(TWO_H200, "fake.json").expect("parses").not_leased_note(), None);
        // GPUs NVML could not read are said too, after the MIG ones.
        let lost = Inventory { unreadable: vec!["GPU 2 could not be read by NVML (GPU is lost)".into()], ..inventory };
        let note = lost.not_leased_note().expect("a note");
        assert!(note.ends_with("; GPU 2 could not be read by NVML (GPU is lost)"), "{note}");
    }

    #[test]
    fn nvml_absent_is_an_empty_inventory_with_the_reason() {
        // The test machines have no NVIDIA library; where one has, this still must not fail.
        let inventory = Inventory::from_nvml().expect("no error without a driver");
        if inventory.gpus.is_empty() {
            assert!(inventory.absent_because.is_some());
        }
    }
}
