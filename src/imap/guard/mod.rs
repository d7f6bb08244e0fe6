//! Bounds on what an IMAP server may send, checked on the bytes before async-imap's parser sees
//! them. imap-proto parses nested lists recursively and async-imap grows its buffer up to
//! 512 MiB, so a hostile server (or anyone before STARTTLS) could overflow the stack or hold
//! memory with one response. The guard reads the response grammar ([`scanner`], [`fetch`]) far
//! enough to know, exactly as imap-proto does, which bytes are literal data — and refuses what it
//! cannot decide that way — and bounds nesting depth, line length, literal size, the size of one
//! response and the untagged responses per command. A violation fails the stream for good; the
//! session reports it as `protocol_violation` and drops the connection.
//!
//! imap-codec has such limits built in, but async-imap's command and session layer (which the
//! rest of the IMAP module relies on) is tied to imap-proto; a scanner in front keeps that layer
//! and costs one pass over the bytes outside literals. `tests/fuzz.rs` drives the scanner and
//! imap-proto side by side over generated responses and requires the same framing.

mod fetch;
mod scanner;
#[cfg(test)]
mod tests;

pub use scanner::ResponseScanner;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Parenthesised lists nested deeper than this are refused. No response sidesync reads nests
/// beyond 3 (NAMESPACE); FETCH is held to 2 by its own grammar.
pub const MAX_DEPTH: u32 = 64;
/// A line (outside literals) longer than this is refused.
pub const MAX_LINE: u64 = 1024 * 1024;
/// Untagged responses to one command; bounds what a listing can collect.
pub const MAX_UNTAGGED: u64 = 2_000_000;
/// Literal limit outside body fetches (greeting, capabilities, login, EXAMINE, listings).
pub const DEFAULT_LITERAL_LIMIT: u64 = 1024 * 1024;

/// What the server did wrong, in words for the mailbox's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("lists nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a literal of {size} bytes announced (limit {limit})")]
    LiteralTooLarge { size: u64, limit: u64 },
    #[error("a response larger than {limit} bytes")]
    ResponseTooLarge { limit: u64 },
    #[error("more than {MAX_UNTAGGED} untagged responses to one command")]
    TooManyResponses,
    /// `{N}` CRLF ending status text or a continuation request: a literal to some readings and
    /// plain text to others, so it is neither.
    #[error("a literal announced at the end of status text")]
    LiteralInText,
    #[error("{what} that breaks its grammar (expected {expected})")]
    Malformed {
        what: &'static str,
        expected: &'static str,
    },
    #[error("a FETCH item sidesync never asks for ({0})")]
    UnexpectedFetchItem(String),
}

/// The literal limit a session can change while its stream is inside async-imap.
#[derive(Debug, Clone)]
pub struct LiteralLimit(Arc<AtomicU64>);

impl LiteralLimit {
    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }
}

/// The stream async-imap reads from: every byte passes the scanner first.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    scanner: ResponseScanner,
    limit: Arc<AtomicU64>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S) -> (Guarded<S>, LiteralLimit) {
        let limit = Arc::new(AtomicU64::new(DEFAULT_LITERAL_LIMIT));
        let guarded = Guarded {
            inner,
            scanner: ResponseScanner::new(DEFAULT_LITERAL_LIMIT),
            limit: limit.clone(),
        };
        (guarded, LiteralLimit(limit))
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The io::Error a violation travels in through async-imap; [`violation_of`] finds it again.
fn violation_error(v: Violation) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, v)
}

/// The violation inside an io::Error from a guarded stream, if that is what it is.
pub fn violation_of(e: &io::Error) -> Option<&Violation> {
    e.get_ref()?.downcast_ref::<Violation>()
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.scanner
            .set_literal_limit(this.limit.load(Ordering::Relaxed));
        if let Some(v) = this.scanner.failed() {
            return Poll::Ready(Err(violation_error(v.clone())));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result
            && let Err(v) = this.scanner.feed(&buf.filled()[before..])
        {
            // The offending bytes never reach the parser.
            buf.set_filled(before);
            return Poll::Ready(Err(violation_error(v)));
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
