//! The host side of the contract: the state every flavor instance gets, and
//! one module per imported interface.
//!
//! An instance has no ambient authority: no preopened directories, no
//! environment, no arguments, no sockets, and stdout/stderr captured into the
//! flavor's log. Everything else it can do goes through the capabilities
//! linked here, each checked against the step operator's [`Grants`]. A
//! launch links only the granted capabilities.
//!
//! Each capability is one module, as wasmtime-wasi's interfaces are: its
//! per-launch state (`JobsCtx`, …, held in [`Launch`] as an `Option`, `None`
//! when not granted), a view of the instance (`JobsView`, …) that implements
//! the generated `Host` trait, and its `add_to_linker`. `add_to_linker`'s
//! `match` is the one place the capabilities are listed.
//!
//! [`Grants`]: stepbox_store::policy::Grants

pub mod audit;
mod cancellation;
pub mod credentials;
mod guest_output;
pub mod http;
pub mod images;
pub mod jobs;
pub mod launch_context;
pub mod log;
pub mod requirements;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings;
use crate::limits::Limits;
pub use launch_context::LaunchContext;
pub use log::FlavorLogger;
use stepbox_store::capability::Capability;

/// The data of one flavor instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
    egress: http::EgressHooks,
    pub(crate) limits: StoreLimits,
    pub(crate) logger: Arc<FlavorLogger>,
    /// The launch in progress, with the state of each capability it
    /// provides; `None` while `metadata` and `validate-config` run.
    pub(crate) launch: Option<Launch>,
    /// Epoch ticks in which the guest was running, against its budget.
    pub(crate) guest_ticks: u64,
    pub(crate) guest_tick_budget: u64,
}

/// A launch as a flavor instance sees it: what every capability shares, and
/// the state of each capability the step operator grants. `None` means not
/// granted: the capability is not linked, and its host functions (linked
/// anyway when the flavor imports the interface only for its types) answer
/// `unsupported`.
#[derive(Clone)]
pub struct Launch {
    /// The run, its grants, limits, audit record and cancellation.
    pub shared: Arc<LaunchContext>,
    /// `jobs`: the backends and the launch's jobs.
    pub jobs: Option<Arc<jobs::JobsCtx>>,
    /// `requirements`: how environments are made.
    pub requirements: Option<requirements::RequirementsCtx>,
    /// `images`: how images are made.
    pub images: Option<images::ImagesCtx>,
    /// `http`: the egress rules, credentials and request count.
    pub http: Option<Arc<http::HttpCtx>>,
}

impl Launch {
    /// The capabilities a launch of `shared` provides: each granted one's
    /// state, `None` for the others. The launch owns `jobs` (its registry
    /// outlives the instance), so it is passed in; a dry run gets each
    /// capability's dry-run twin.
    pub fn granted(shared: &Arc<LaunchContext>, jobs: &Arc<jobs::JobsCtx>, dry_run: bool) -> Self {
        let granted = |capability| shared.grants.allows(capability);
        let (requirements, images) = match dry_run {
            true => (requirements::RequirementsCtx::DryRun, images::ImagesCtx::DryRun),
            false => (requirements::RequirementsCtx::Install, images::ImagesCtx::Build),
        };
        Self {
            shared: Arc::clone(shared),
            jobs: granted(Capability::Jobs).then(|| Arc::clone(jobs)),
            requirements: granted(Capability::Requirements).then_some(requirements),
            images: granted(Capability::Images).then_some(images),
            http: granted(Capability::Http).then(|| Arc::new(http::HttpCtx::new(Arc::clone(shared)))),
        }
    }

    /// Whether this launch provides `capability` to the flavor.
    pub fn provides(&self, capability: Capability) -> bool {
        match capability {
            Capability::Log | Capability::Cancellation => true,
            Capability::Jobs => self.jobs.is_some(),
            Capability::Requirements => self.requirements.is_some(),
            Capability::Images => self.images.is_some(),
            Capability::Http => self.http.is_some(),
        }
    }
}

impl HostState {
    /// State for one instance of the flavor `logger` speaks for.
    pub fn new(limits: &Limits, logger: Arc<FlavorLogger>, launch: Option<Launch>) -> Self {
        let stdout =
            guest_output::GuestOutput::new(Arc::clone(&logger), guest_output::Which::Stdout, limits.guest_output_bytes);
        let stderr =
            guest_output::GuestOutput::new(Arc::clone(&logger), guest_output::Which::Stderr, limits.guest_output_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            egress: http::EgressHooks::new(launch.as_ref().and_then(|launch| launch.http.clone()), Arc::clone(&logger)),
            limits: StoreLimitsBuilder::new().memory_size(limits.guest_memory_bytes).trap_on_grow_failure(true).build(),
            logger,
            launch,
            guest_ticks: 0,
            guest_tick_budget: crate::engine::ticks(limits.guest_cpu),
        }
    }

    /// What every capability shares of the launch in progress.
    fn shared(&self) -> Option<&Arc<LaunchContext>> {
        self.launch.as_ref().map(|launch| &launch.shared)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

/// `types` holds only types.
impl bindings::types::Host for HostState {}

/// A linker with WASI 0.2 (without ambient authority: see [`HostState::new`]),
/// the capabilities every flavor has (`log`, `cancellation`), and the others
/// `links` says yes to.
pub fn linker(engine: &wasmtime::Engine, links: impl Fn(Capability) -> bool) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::types::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    for capability in Capability::ALL {
        if !capability.needs_grant() || links(capability) {
            add_to_linker(&mut linker, capability)?;
        }
    }
    Ok(linker)
}

/// Link one capability's host functions: the one place the host lists its
/// capabilities (each module owns its view, its state and its linking).
fn add_to_linker(linker: &mut Linker<HostState>, capability: Capability) -> wasmtime::Result<()> {
    match capability {
        Capability::Log => log::add_to_linker(linker),
        Capability::Cancellation => cancellation::add_to_linker(linker),
        Capability::Jobs => jobs::add_to_linker(linker),
        Capability::Requirements => requirements::add_to_linker(linker),
        Capability::Images => images::add_to_linker(linker),
        Capability::Http => http::add_to_linker(linker),
    }
}
