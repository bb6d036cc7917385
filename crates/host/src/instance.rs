//! One flavor instance: a fresh store with limits, instantiation, and calls
//! to the flavor's exports, with failures classified for the user.
//!
//! Every call gets a new store, thrown away afterwards: an instance whose call
//! was interrupted is poisoned, and a flavor must not keep state between
//! launches.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::Flavor;
use crate::bindings::operator::{ConfigError, FlavorMetadata};
use crate::engine::StepboxEngine;
use crate::host::{FlavorLogger, HostState, Launch};
use crate::limits::Limits;
use stepbox_store::capability::Capability;

/// How a call into a flavor failed (as opposed to the flavor returning an
/// error value).
#[derive(Debug, Error)]
pub enum GuestFailure {
    #[error(
        "the flavor ran out of its guest CPU budget ({}) and was stopped. If it really needs more: stepbox step-operator update NAME --limit guest-cpu=DURATION",
        humantime::format_duration(*.0)
    )]
    CpuBudget(Duration),
    #[error(
        "the flavor tried to use more than its memory limit of {} and was stopped. If it really needs more: stepbox step-operator update NAME --limit guest-memory=SIZE",
        bytesize::ByteSize::b(*.0 as u64)
    )]
    Memory(usize),
    #[error("the flavor did not answer within {} and was stopped", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Limit(String),
    #[error("the flavor crashed (trap): {0}")]
    Trap(String),
    #[error("cannot instantiate the flavor: {0}")]
    Instantiate(String),
}

/// The guest ran past its CPU budget (raised from the epoch callback).
#[derive(Debug, Error)]
#[error("guest CPU budget exhausted")]
struct CpuBudgetExhausted;

/// Wall-clock bound on `metadata` and `validate-config`, which may block in
/// WASI calls (a sleep) where the CPU budget does not run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A store with the limits and CPU accounting of `state`.
fn new_store(engine: &StepboxEngine, state: HostState) -> Store<HostState> {
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut context| {
        let state = context.data_mut();
        state.guest_ticks += 1;
        if state.guest_ticks > state.guest_tick_budget {
            return Err(CpuBudgetExhausted.into());
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Turn a wasmtime error from instantiation or a call into a [`GuestFailure`].
fn classify(error: wasmtime::Error, limits: &Limits) -> GuestFailure {
    if error.downcast_ref::<CpuBudgetExhausted>().is_some() {
        return GuestFailure::CpuBudget(limits.guest_cpu);
    }
    if let Some(exceeded) = error.downcast_ref::<crate::limits::LimitExceeded>() {
        return GuestFailure::Limit(exceeded.to_string());
    }
    let full = format!("{error:#}");
    tracing::debug!("flavor trap: {full}");
    if full.contains("forcing trap when growing memory") || full.contains("memory minimum size") {
        return GuestFailure::Memory(limits.guest_memory_bytes);
    }
    let cause = error.root_cause().to_string();
    let hint = if cause.contains("unreachable") {
        "; the flavor panicked or aborted, and its stderr in the flavor's log says why"
    } else {
        ""
    };
    GuestFailure::Trap(format!("{cause}{hint} (run with -v for the wasm backtrace)"))
}

/// A component ready to be instantiated.
pub struct Prepared {
    pub engine: StepboxEngine,
    pub component: Component,
    /// Every capability linked, for `metadata` and `validate-config`; built on
    /// first use, since a launch builds its own restricted linker instead.
    query_linker: std::sync::OnceLock<Linker<HostState>>,
    /// The capabilities whose functions the component imports.
    called: std::sync::OnceLock<Vec<Capability>>,
}

impl Prepared {
    pub fn new(engine: StepboxEngine, component: Component) -> anyhow::Result<Self> {
        Ok(Self { engine, component, query_linker: std::sync::OnceLock::new(), called: std::sync::OnceLock::new() })
    }

    /// The capabilities whose functions the component imports (registration
    /// checked the component, so a failure here leaves nothing out).
    fn called_capabilities(&self) -> &[Capability] {
        self.called.get_or_init(|| {
            crate::component::check_shape(&self.engine, "flavor", &self.component)
                .map(|shape| shape.capabilities)
                .unwrap_or_else(|_| Capability::grantable().collect())
        })
    }

    /// The linker for a call: a launch links only what it provides (what
    /// its step operator grants); `metadata` and `validate-config` get every
    /// capability (outside a launch they answer `unsupported`, and a flavor
    /// must be able to describe itself whatever it imports).
    fn linker(&self, launch: Option<&Launch>) -> Result<Cow<'_, Linker<HostState>>, GuestFailure> {
        let engine = self.engine.engine();
        let failed = |error: anyhow::Error| GuestFailure::Instantiate(format!("{error:#}"));
        match launch {
            Some(launch) => {
                // The capabilities the launch provides, and the interfaces the
                // flavor imports for their types only (it can call nothing in them).
                let called = self.called_capabilities();
                let linker = crate::host::linker(engine, |capability| {
                    launch.provides(capability) || !called.contains(&capability)
                });
                linker.map(Cow::Owned).map_err(failed)
            }
            None => {
                if let Some(linker) = self.query_linker.get() {
                    return Ok(Cow::Borrowed(linker));
                }
                let linker = crate::host::linker(engine, |_| true).map_err(failed)?;
                Ok(Cow::Borrowed(self.query_linker.get_or_init(|| linker)))
            }
        }
    }

    async fn instantiate(
        &self,
        limits: &Limits,
        logger: Arc<FlavorLogger>,
        launch: Option<Launch>,
    ) -> Result<(Store<HostState>, Flavor), GuestFailure> {
        let started = std::time::Instant::now();
        let linker = self.linker(launch.as_ref())?;
        let mut store = new_store(&self.engine, HostState::new(limits, logger, launch));
        let flavor = Flavor::instantiate_async(&mut store, &self.component, &linker).await.map_err(|error| {
            match classify(error, limits) {
                GuestFailure::Trap(message) => GuestFailure::Instantiate(message),
                other => other,
            }
        })?;
        tracing::debug!(micros = started.elapsed().as_micros() as u64, "instantiated the flavor");
        Ok((store, flavor))
    }

    /// Instantiate in a fresh store and throw it away (for benchmarks).
    pub async fn instantiate_only(&self, limits: &Limits, logger: Arc<FlavorLogger>) -> Result<(), GuestFailure> {
        self.instantiate(limits, logger, None).await.map(drop)
    }

    /// Call `metadata()`.
    pub async fn metadata(&self, logger: Arc<FlavorLogger>) -> Result<FlavorMetadata, GuestFailure> {
        let limits = Limits::for_query();
        let call = async {
            let (mut store, flavor) = self.instantiate(&limits, logger, None).await?;
            flavor.stepbox_operator_operator().call_metadata(&mut store).await.map_err(|error| classify(error, &limits))
        };
        tokio::time::timeout(QUERY_TIMEOUT, call).await.unwrap_or(Err(GuestFailure::Timeout(QUERY_TIMEOUT)))
    }

    /// Call `validate-config(config)`.
    pub async fn validate_config(
        &self,
        logger: Arc<FlavorLogger>,
        config: &str,
    ) -> Result<Result<(), ConfigError>, GuestFailure> {
        let limits = Limits::for_query();
        let call = async {
            let (mut store, flavor) = self.instantiate(&limits, logger, None).await?;
            flavor
                .stepbox_operator_operator()
                .call_validate_config(&mut store, config)
                .await
                .map_err(|error| classify(error, &limits))
        };
        tokio::time::timeout(QUERY_TIMEOUT, call).await.unwrap_or(Err(GuestFailure::Timeout(QUERY_TIMEOUT)))
    }

    /// Instantiate for a launch and call `launch(config, request)`. The future
    /// may be dropped at any point (interruption); the launch context's job
    /// registry still holds every job.
    pub async fn launch(
        &self,
        launch: Launch,
        logger: Arc<FlavorLogger>,
        config: &str,
        request: &crate::bindings::operator::LaunchRequest,
    ) -> Result<Result<crate::bindings::operator::LaunchReport, crate::bindings::operator::LaunchError>, GuestFailure>
    {
        let limits = launch.shared.limits.clone();
        let (mut store, flavor) = self.instantiate(&limits, logger, Some(launch)).await?;
        flavor
            .stepbox_operator_operator()
            .call_launch(&mut store, config, request)
            .await
            .map_err(|error| classify(error, &limits))
    }
}
