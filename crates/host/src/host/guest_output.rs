//! The guest's stdout and stderr: split into lines and sent to the flavor's
//! log. A write past `guest-output` (or past the log's own `log-bytes`) ends
//! the flavor's call with an error naming the limit.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::log::FlavorLogger;
use crate::bindings::log::Level;
use crate::limits::LimitExceeded;

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
    limit: usize,
    remaining: usize,
    line: Vec<u8>,
    /// Set once a limit was hit: every later write fails the same way.
    exceeded: Option<LimitExceeded>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Result<(), LimitExceeded> {
        if let Some(exceeded) = &self.exceeded {
            return Err(exceeded.clone());
        }
        let take = bytes.len().min(self.remaining);
        self.remaining -= take;
        let result = self.push_lines(&bytes[..take]).and_then(|()| {
            if take < bytes.len() {
                self.flush_line()?;
                return Err(LimitExceeded {
                    limit: "guest-output",
                    detail: format!(
                        "it wrote more than {} to its {}",
                        bytesize::ByteSize::b(self.limit as u64),
                        self.name()
                    ),
                });
            }
            Ok(())
        });
        if let Err(exceeded) = &result {
            self.exceeded = Some(exceeded.clone());
        }
        result
    }

    fn push_lines(&mut self, bytes: &[u8]) -> Result<(), LimitExceeded> {
        for &byte in bytes {
            if byte == b'\n' || self.line.len() >= MAX_LINE {
                self.flush_line()?;
            }
            if byte != b'\n' {
                self.line.push(byte);
            }
        }
        Ok(())
    }

    fn flush_line(&mut self) -> Result<(), LimitExceeded> {
        if self.line.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let level = match self.which {
            Which::Stdout => Level::Info,
            Which::Stderr => Level::Warn,
        };
        self.logger.emit(level, &format!("{}: {text}", self.name()))
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
        // A last unterminated line; past a limit there is nothing to add.
        if self.exceeded.is_none() {
            let _ = self.flush_line();
        }
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
            lines: Arc::new(Mutex::new(Lines {
                logger,
                which,
                limit,
                remaining: limit,
                line: Vec::new(),
                exceeded: None,
            })),
        }
    }

    fn push(&self, bytes: &[u8]) -> Result<(), LimitExceeded> {
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(bytes)
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
        // A trap, not a stream error: the guest cannot carry on past a limit.
        self.push(&bytes).map_err(|exceeded| StreamError::Trap(exceeded.into()))
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
        Poll::Ready(self.push(buf).map(|()| buf.len()).map_err(std::io::Error::other))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
