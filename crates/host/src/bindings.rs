//! Host bindings generated from the contract this stepbox implements, the
//! newest of the SDK's versioned copies (`guest-sdk/wit/since_v0.2.1/`,
//! reached through the `wit` symlink so the packaged crate carries it).
//!
//! Every import is async (host calls may wait on jobs without blocking the
//! runtime's threads) and trappable (only for host faults; policy denials and
//! backend failures are returned to the guest as `error` values).

wasmtime::component::bindgen!({
    path: "wit/since_v0.2.1",
    world: "flavor",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "stepbox:operator/jobs.job": crate::host::jobs::JobResource,
    },
});

pub use self::exports::stepbox::operator::operator;
pub use self::stepbox::operator::{cancellation, images, jobs, log, requirements, types};
