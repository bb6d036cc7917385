//! The wasmtime engine every flavor runs in, and the epoch ticker that gives
//! guest CPU budgets their clock.
//!
//! One engine per process. The epoch advances every [`TICK`]; each store gets
//! a deadline one tick ahead, and the deadline callback counts the ticks in
//! which the guest was running (time blocked in a host call is not counted)
//! and yields to tokio so that one guest cannot starve others.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel};

/// How often the epoch advances: the resolution of guest CPU budgets.
pub const TICK: Duration = Duration::from_millis(10);

/// The process's engine, with its epoch ticker running.
#[derive(Clone)]
pub struct StepboxEngine {
    engine: Engine,
}

impl StepboxEngine {
    /// The shared engine. The ticker thread starts with it and lives as long
    /// as the process.
    pub fn shared() -> anyhow::Result<Self> {
        static ENGINE: OnceLock<Result<StepboxEngine, String>> = OnceLock::new();
        ENGINE.get_or_init(|| Self::new().map_err(|error| format!("{error:#}"))).clone().map_err(anyhow::Error::msg)
    }

    fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        let engine = Engine::new(&config)?;
        let ticker = Arc::new(engine.weak());
        std::thread::Builder::new().name("stepbox-epoch".into()).spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match ticker.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(Self { engine })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A short hex digest of the engine's compatibility hash: precompiled
    /// components are only valid for engines with the same one.
    pub fn compatibility_key(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::hash::{Hash, Hasher};

        struct Sha(Sha256);
        impl Hasher for Sha {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut hasher = Sha(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        hex::encode(&hasher.0.finalize()[..8])
    }
}

/// Guest CPU budget in ticks for a [`Duration`].
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / TICK.as_millis()).max(1) as u64
}
