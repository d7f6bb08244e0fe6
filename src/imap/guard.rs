//! Bounds on what an IMAP server may send, checked on the bytes before async-imap's parser sees
//! them. imap-proto parses nested lists recursively and async-imap grows its buffer up to
//! 512 MiB, so a hostile server (or anyone before STARTTLS) could overflow the stack or hold
//! memory with one response. The scanner follows just enough of the response grammar (quoted
//! strings, literals, parentheses, line ends) to bound nesting depth, line length, literal size,
//! the size of one response and the untagged responses per command. A violation fails the
//! stream for good; the session reports it as `protocol_violation` and drops the connection.
//!
//! imap-codec has such limits built in, but async-imap's command and session layer (which the
//! rest of the IMAP module relies on) is tied to imap-proto; a scanner in front keeps that layer
//! and costs one pass over the bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Parenthesised lists nested deeper than this are refused (BODYSTRUCTURE of real mail stays
/// well under 20).
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside quoted strings and literals.
    Normal,
    Quoted,
    QuotedEscape,
    /// Inside a literal, this many bytes to go.
    Literal(u64),
}

/// The pure scanner: feed it the bytes in order, it says whether they stay within the bounds.
#[derive(Debug, Clone)]
pub struct ResponseScanner {
    state: State,
    depth: u32,
    line: u64,
    response: u64,
    untagged: u64,
    /// First byte of the current response (`*`, `+` or a tag's first character).
    first: Option<u8>,
    /// Digits of a `{N}` being read, and whether its `}` has been seen (it must end the line).
    brace: Option<(u64, bool)>,
    literal_limit: u64,
    failed: Option<Violation>,
}

impl ResponseScanner {
    pub fn new(literal_limit: u64) -> ResponseScanner {
        ResponseScanner {
            state: State::Normal,
            depth: 0,
            line: 0,
            response: 0,
            untagged: 0,
            first: None,
            brace: None,
            literal_limit,
            failed: None,
        }
    }

    pub fn set_literal_limit(&mut self, limit: u64) {
        self.literal_limit = limit;
    }

    /// A response may hold one literal at the limit plus its lines.
    fn response_limit(&self) -> u64 {
        self.literal_limit.saturating_add(4 * MAX_LINE)
    }

    /// Checks `bytes`, which follow everything fed before. Once it fails it stays failed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if let Some(v) = &self.failed {
            return Err(v.clone());
        }
        let result = self.scan(bytes);
        if let Err(v) = &result {
            self.failed = Some(v.clone());
        }
        result
    }

    fn scan(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Literal(left) = self.state {
                // Literal bytes are opaque: skip them in one step.
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.grow_response(take)?;
                self.state = match left - take {
                    0 => State::Normal,
                    rest => State::Literal(rest),
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.grow_response(1)?;
            if self.first.is_none() {
                self.first = Some(b);
            }
            if b == b'\n' {
                self.end_line()?;
                continue;
            }
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(Violation::LineTooLong);
            }
            match self.state {
                State::Quoted => {
                    self.state = match b {
                        b'\\' => State::QuotedEscape,
                        b'"' => State::Normal,
                        _ => State::Quoted,
                    }
                }
                State::QuotedEscape => self.state = State::Quoted,
                State::Normal => self.normal(b)?,
                State::Literal(_) => {}
            }
        }
        Ok(())
    }

    fn normal(&mut self, b: u8) -> Result<(), Violation> {
        let brace = self.brace.take();
        match (b, brace) {
            (b'{', _) => self.brace = Some((0, false)),
            (b'0'..=b'9', Some((n, false))) => {
                let n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    .ok_or(Violation::LiteralTooLarge {
                        size: u64::MAX,
                        limit: self.literal_limit,
                    })?;
                if n > self.literal_limit {
                    return Err(Violation::LiteralTooLarge {
                        size: n,
                        limit: self.literal_limit,
                    });
                }
                self.brace = Some((n, false));
            }
            // RFC 7888 non-synchronising literal marker.
            (b'+', Some((n, false))) => self.brace = Some((n, false)),
            (b'}', Some((n, false))) => self.brace = Some((n, true)),
            // CR between `}` and LF keeps the announcement alive.
            (b'\r', Some((n, true))) => self.brace = Some((n, true)),
            (b'"', _) => self.state = State::Quoted,
            (b'(', _) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(Violation::TooDeep);
                }
            }
            (b')', _) => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    /// A line feed: either a literal starts, or the response is complete.
    fn end_line(&mut self) -> Result<(), Violation> {
        self.line = 0;
        if self.state == State::Normal
            && let Some((n, true)) = self.brace.take()
        {
            if n > 0 {
                self.state = State::Literal(n);
            }
            return Ok(());
        }
        self.brace = None;
        self.state = State::Normal;
        match self.first.take() {
            Some(b'*') => {
                self.untagged += 1;
                if self.untagged > MAX_UNTAGGED {
                    return Err(Violation::TooManyResponses);
                }
            }
            // A continuation request neither ends nor counts toward a command.
            Some(b'+') | None => {}
            // A tagged completion ends the command.
            Some(_) => self.untagged = 0,
        }
        self.depth = 0;
        self.response = 0;
        Ok(())
    }

    fn grow_response(&mut self, n: u64) -> Result<(), Violation> {
        self.response = self.response.saturating_add(n);
        if self.response > self.response_limit() {
            return Err(Violation::ResponseTooLarge {
                limit: self.response_limit(),
            });
        }
        Ok(())
    }
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
        if let Some(v) = &this.scanner.failed {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> Result<(), Violation> {
        ResponseScanner::new(1000).feed(bytes)
    }

    #[test]
    fn ordinary_responses_pass() {
        let mut s = ResponseScanner::new(1000);
        s.feed(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
            .expect("greeting");
        s.feed(b"* 1 FETCH (UID 5 BODY[] {11}\r\nhello (((((\r\n)\r\n")
            .expect("literal with parentheses inside");
        s.feed(b"* 2 FETCH (FLAGS (\\Seen) ENVELOPE (\"a (b\" NIL))\r\n")
            .expect("quoted parentheses");
        s.feed(b"a1 OK done\r\n").expect("tagged");
        assert_eq!(s.depth, 0);
        assert_eq!(s.untagged, 0);
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_answer() {
        let response = b"* 1 FETCH (UID 5 BODY[] {5}\r\n(((((\r\n)\r\na OK x\r\n";
        for cut in 0..response.len() {
            let mut s = ResponseScanner::new(1000);
            s.feed(&response[..cut]).expect("first part");
            s.feed(&response[cut..]).expect("second part");
            assert_eq!((s.depth, s.state), (0, State::Normal), "cut at {cut}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_as_greeting_or_inside_fetch() {
        let deep = "(".repeat(100_000);
        assert_eq!(
            scan(format!("* OK {deep}").as_bytes()),
            Err(Violation::TooDeep)
        );
        assert_eq!(
            scan(format!("* 1 FETCH (BODYSTRUCTURE {deep}").as_bytes()),
            Err(Violation::TooDeep)
        );
        // At the limit it passes.
        let ok = format!("* 1 FETCH {}{}\r\n", "(".repeat(64), ")".repeat(64));
        assert_eq!(scan(ok.as_bytes()), Ok(()));
    }

    #[test]
    fn endless_lines_and_huge_literals_are_refused() {
        let mut s = ResponseScanner::new(1000);
        let chunk = vec![b'x'; 64 * 1024];
        let mut failed = None;
        for _ in 0..100 {
            if let Err(v) = s.feed(&chunk) {
                failed = Some(v);
                break;
            }
        }
        assert_eq!(failed, Some(Violation::LineTooLong));
        assert!(matches!(
            scan(b"* 1 FETCH (BODY[] {4294967296}\r\n"),
            Err(Violation::LiteralTooLarge { limit: 1000, .. })
        ));
        assert!(matches!(
            scan(b"* 1 FETCH (BODY[] {99999999999999999999999}\r\n"),
            Err(Violation::LiteralTooLarge { .. })
        ));
        assert_eq!(scan(b"* 1 FETCH (BODY[] {1000}\r\n"), Ok(()));
    }

    #[test]
    fn many_literals_in_one_response_are_refused() {
        let mut s = ResponseScanner::new(1000);
        let part = [b"{1000}\r\n".as_slice(), &[b'a'; 1000]].concat();
        let mut failed = None;
        for _ in 0..10_000 {
            if let Err(v) = s.feed(&part) {
                failed = Some(v);
                break;
            }
        }
        assert!(matches!(failed, Some(Violation::ResponseTooLarge { .. })));
    }

    #[test]
    fn untagged_responses_per_command_are_counted() {
        let mut s = ResponseScanner::new(1000);
        s.untagged = MAX_UNTAGGED - 1;
        s.feed(b"* 1 EXISTS\r\n").expect("at the limit");
        assert_eq!(s.feed(b"* 2 EXISTS\r\n"), Err(Violation::TooManyResponses));
        // It stays failed.
        assert_eq!(s.feed(b"a OK\r\n"), Err(Violation::TooManyResponses));
        let mut s = ResponseScanner::new(1000);
        s.untagged = MAX_UNTAGGED - 1;
        s.feed(b"* 1 EXISTS\r\na OK\r\n* 2 EXISTS\r\n")
            .expect("a tagged reply starts a new count");
    }
}
