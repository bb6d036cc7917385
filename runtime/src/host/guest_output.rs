//! The guest's stdout and stderr: split into lines and sent to the flavor's
//! log, up to a byte limit. Writes never fail, so a chatty guest is silenced
//! rather than crashed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::log::FlavorLogger;
use crate::bindings::log::Level;

/// Which of the guest's streams this is.
#[derive(Clone, Copy)]
pub enum Which {
    Stdout,
    Stderr,
}

/// Longest line kept in the buffer before it is sent on its own.
const MAX_LINE: usize = 16 << 10;

struct Lines {
    logger: Arc<FlavorLogger>,
    which: Which,
    remaining: usize,
    line: Vec<u8>,
    silenced: bool,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.remaining);
        self.remaining -= take;
        for &byte in &bytes[..take] {
            if byte == b'\n' || self.line.len() >= MAX_LINE {
                self.flush_line();
            }
            if byte != b'\n' {
                self.line.push(byte);
            }
        }
        if take < bytes.len() && !self.silenced {
            self.silenced = true;
            self.flush_line();
            self.logger.emit(Level::Warn, &format!("{}: output limit reached; further output is dropped", self.name()));
        }
    }

    fn flush_line(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let level = match self.which {
            Which::Stdout => Level::Info,
            Which::Stderr => Level::Warn,
        };
        self.logger.emit(level, &format!("{}: {text}", self.name()));
    }

    fn name(&self) -> &'static str {
        match self.which {
            Which::Stdout => "stdout",
            Which::Stderr => "stderr",
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.flush_line();
    }
}

/// A guest output stream; clones share one buffer and one limit.
#[derive(Clone)]
pub struct GuestOutput {
    lines: Arc<Mutex<Lines>>,
}

impl GuestOutput {
    pub fn new(logger: Arc<FlavorLogger>, which: Which, limit: usize) -> Self {
        Self {
            lines: Arc::new(Mutex::new(Lines { logger, which, remaining: limit, line: Vec::new(), silenced: false })),
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
