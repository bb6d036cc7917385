//! The host side of the contract: the state every flavor instance gets, and
//! one module per imported interface.
//!
//! An instance has no ambient authority: no preopened directories, no
//! environment, no arguments, no sockets, and stdout/stderr captured into the
//! flavor's log. Everything else it can do goes through the capabilities
//! linked here, each checked against the step operator's [`Grants`]. A
//! launch links only the granted capabilities.
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
    /// Present only while `launch` runs; `metadata` and `validate-config`
    /// get no jobs.
    pub(crate) launch: Option<Arc<LaunchContext>>,
    /// Epoch ticks in which the guest was running, against its budget.
    pub(crate) guest_ticks: u64,
    pub(crate) guest_tick_budget: u64,
}

impl HostState {
    /// State for one instance of the flavor `logger` speaks for.
    pub fn new(limits: &Limits, logger: Arc<FlavorLogger>, launch: Option<Arc<LaunchContext>>) -> Self {
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
            egress: http::EgressHooks::new(launch.clone(), Arc::clone(&logger)),
            limits: StoreLimitsBuilder::new().memory_size(limits.guest_memory_bytes).trap_on_grow_failure(true).build(),
            logger,
            launch,
            guest_ticks: 0,
            guest_tick_budget: crate::engine::ticks(limits.guest_cpu),
        }
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

/// A linker with WASI 0.2 (without ambient authority: see [`HostState::new`]),
/// `log`, and the capabilities `allowed` says yes to.
pub fn linker(engine: &wasmtime::Engine, allowed: impl Fn(Capability) -> bool) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::types::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    bindings::log::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    bindings::cancellation::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    if allowed(Capability::Jobs) {
        bindings::jobs::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    }
    if allowed(Capability::Requirements) {
        bindings::requirements::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    }
    if allowed(Capability::Images) {
        bindings::images::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    }
    if allowed(Capability::Http) {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    }
    Ok(linker)
}
