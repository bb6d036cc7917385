//! The `cancellation` interface: how a flavor hears that its launch is being
//! cancelled (Ctrl-C, `stepbox cancel`, the wall-clock budget), so it can stop
//! work it started outside the host (a cloud job) within `cancel-grace`.
//! Always granted: it gives nothing but the news.

use std::time::Duration;

use crate::bindings::cancellation::Host;
use crate::bindings::types::Error;
use crate::host::HostState;

impl Host for HostState {
    async fn requested(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.launch.as_ref().and_then(|launch| launch.cancellation.reason()))
    }

    async fn sleep(&mut self, milliseconds: u64) -> wasmtime::Result<Result<(), Error>> {
        let Some(launch) = self.launch.clone() else {
            return Ok(Err(Error::Unsupported("cancellation.sleep is only available while launching".to_owned())));
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(milliseconds)) => Ok(Ok(())),
            reason = launch.cancellation.requested() => Ok(Err(Error::Cancelled(reason))),
        }
    }
}
