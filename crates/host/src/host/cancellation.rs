//! The `cancellation` interface: how a flavor hears that its launch is being
//! cancelled (Ctrl-C, `stepbox cancel`, the wall-clock budget), so it can stop
//! work it started outside the host (a cloud job) within `cancel-grace`.
//! Always granted: it gives nothing but the news.

use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use super::{HostState, LaunchContext};
use crate::bindings::cancellation::Host;
use crate::bindings::types::Error;

/// What `cancellation` sees of an instance: the launch's cancellation, if
/// it is launching.
pub struct CancellationView<'a> {
    launch: Option<&'a LaunchContext>,
}

/// The `cancellation` capability, for the linker.
struct CancellationCapability;

impl HasData for CancellationCapability {
    type Data<'a> = CancellationView<'a>;
}

fn view(state: &mut HostState) -> CancellationView<'_> {
    CancellationView { launch: state.shared().map(|shared| &**shared) }
}

/// Link `cancellation`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    crate::bindings::cancellation::add_to_linker::<HostState, CancellationCapability>(linker, view)
}

impl Host for CancellationView<'_> {
    async fn requested(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.launch.and_then(|launch| launch.cancellation.reason()))
    }

    async fn sleep(&mut self, milliseconds: u64) -> wasmtime::Result<Result<(), Error>> {
        let Some(launch) = self.launch else {
            return Ok(Err(Error::Unsupported("cancellation.sleep is only available while launching".to_owned())));
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(milliseconds)) => Ok(Ok(())),
            reason = launch.cancellation.requested() => Ok(Err(Error::Cancelled(reason))),
        }
    }
}
