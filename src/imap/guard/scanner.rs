//! The guard's grammar: which bytes of a server's answer are syntax and which are literal data,
//! decided the way imap-proto decides it, or refused where the two could differ.
//!
//! Invariant (what makes the guard a bound and not a hint): every byte the guard skips as literal
//! data is literal data to imap-proto too, and every literal imap-proto takes was announced where
//! the guard counted it. A literal is `{N}` + CRLF, so the question is only ever "is this line end
//! after `{N}` a literal?":
//! - status responses (`* OK|NO|BAD|BYE|PREAUTH …`, tagged replies) and continuation requests
//!   (`+ …`) are free text to imap-proto, except inside response codes, where some take strings:
//!   a line of theirs ending in `{N}` is refused, whatever imap-proto would make of it;
//! - FETCH responses: imap-proto falls back to a lax reader for items it does not know (or whose
//!   value does not parse), which reads CRLF and `{N}` as plain bytes. The guard owns the FETCH
//!   grammar ([`super::fetch`]): the items sidesync asks for and the forms the fallback reads the
//!   same way; anything else is refused;
//! - every other untagged response is read by strict parsers only (no free text, no fallback):
//!   `{N}` + CRLF after a space or `(` is a literal to both, and anything else with a `{` is
//!   refused (imap-proto would not parse it either).
//!
//! Nesting, line length, literal size, response size and the untagged responses per command are
//! bounded for every response, after any text.

use super::fetch::{self, Fetch, FetchStep};
use super::{DEFAULT_LITERAL_LIMIT, MAX_DEPTH, MAX_LINE, MAX_UNTAGGED, Violation};

/// The first bytes of an untagged response, kept until they say which kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    bytes: [u8; HEAD_LEN],
    len: u8,
}

/// Long enough for `* 4294967295 FETCH` and a status word; a longer first word is data.
const HEAD_LEN: usize = 24;

/// Free text up to the line end; `tail` watches for a `{N}` right before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Plain,
    /// `{` and this many digits.
    Open(u8),
    /// `{digits}`.
    Closed,
    /// `{digits}` CR.
    ClosedCr,
}

/// Lexing a strict (non-FETCH) data response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Outside strings; whether the previous byte was a space or `(` (where a literal may start).
    Normal {
        after_delimiter: bool,
    },
    Quoted,
    QuotedEscape,
    /// `{` and the digits so far.
    Brace {
        size: u64,
        digits: u8,
    },
    BraceClosed {
        size: u64,
    },
    BraceCr {
        size: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte of a response.
    Start,
    /// `*` seen: reading the head of an untagged response.
    Head(Head),
    /// A status response, tagged reply or continuation request: free text to the line end.
    Text(Tail),
    Data(Lex),
    Fetch(Fetch),
    /// Literal bytes, opaque, this many to go; then the response goes on.
    Literal {
        left: u64,
        resume: Resume,
    },
}

/// Where a response goes on after a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Data,
    Fetch(Fetch),
}

impl Resume {
    fn phase(self) -> Phase {
        match self {
            Resume::Data => Phase::Data(Lex::Normal {
                after_delimiter: false,
            }),
            Resume::Fetch(f) => Phase::Fetch(f),
        }
    }
}

/// The pure scanner: feed it the bytes in order, it says whether they stay within the grammar
/// and the bounds.
#[derive(Debug, Clone)]
pub struct ResponseScanner {
    phase: Phase,
    depth: u32,
    line: u64,
    response: u64,
    untagged: u64,
    /// First byte of the current response (`*`, `+` or a tag's first character).
    first: Option<u8>,
    /// The limit for a body literal (a FETCH's BODY[…], BINARY[…], RFC822…); every other
    /// literal is held to [`DEFAULT_LITERAL_LIMIT`].
    body_literal_limit: u64,
    /// Responses ended so far (the fuzz harness compares their ends with imap-proto's).
    completed: u64,
    failed: Option<Violation>,
}

impl ResponseScanner {
    pub fn new(body_literal_limit: u64) -> ResponseScanner {
        ResponseScanner {
            phase: Phase::Start,
            depth: 0,
            line: 0,
            response: 0,
            untagged: 0,
            first: None,
            body_literal_limit,
            completed: 0,
            failed: None,
        }
    }

    pub fn set_literal_limit(&mut self, limit: u64) {
        self.body_literal_limit = limit;
    }

    /// How many responses have ended, in the scanner's framing.
    pub fn responses_completed(&self) -> u64 {
        self.completed
    }

    /// The violation the scanner stopped at, if it did.
    pub fn failed(&self) -> Option<&Violation> {
        self.failed.as_ref()
    }

    /// A response may hold one literal at the limit plus its lines.
    fn response_limit(&self) -> u64 {
        self.body_literal_limit
            .max(DEFAULT_LITERAL_LIMIT)
            .saturating_add(4 * MAX_LINE)
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
            if let Phase::Literal { left, resume } = self.phase {
                // Literal bytes are opaque: skip them in one step.
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.grow_response(take)?;
                self.phase = match left - take {
                    0 => resume.phase(),
                    rest => Phase::Literal { left: rest, resume },
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.grow_response(1)?;
            if b != b'\n' {
                self.line += 1;
                if self.line > MAX_LINE {
                    return Err(Violation::LineTooLong);
                }
            }
            self.byte(b)?;
        }
        Ok(())
    }

    fn byte(&mut self, b: u8) -> Result<(), Violation> {
        match self.phase {
            Phase::Start => {
                self.first = Some(b);
                self.phase = match b {
                    b'*' => Phase::Head(Head {
                        bytes: [0; HEAD_LEN],
                        len: 0,
                    }),
                    // A continuation request, or a tagged reply: free text after the status.
                    _ => Phase::Text(Tail::Plain),
                };
                if b == b'\n' {
                    return self.end_response();
                }
                Ok(())
            }
            Phase::Head(mut head) => {
                if (head.len as usize) < HEAD_LEN && continues_head(&head, b) {
                    head.bytes[head.len as usize] = b;
                    head.len += 1;
                    self.phase = Phase::Head(head);
                    return Ok(());
                }
                self.begin_kind(head, b)
            }
            Phase::Text(tail) => self.text(tail, b),
            Phase::Data(lex) => self.data(lex, b),
            Phase::Fetch(f) => self.fetch(f, b),
            Phase::Literal { .. } => Ok(()),
        }
    }

    /// The head is complete at `b`: the kind of response decides the grammar for the rest, and
    /// the head's bytes (letters, digits, spaces) go through that grammar first.
    fn begin_kind(&mut self, head: Head, b: u8) -> Result<(), Violation> {
        let head_bytes = &head.bytes[..head.len as usize];
        match classify(head_bytes) {
            Kind::Fetch => {
                self.phase = Phase::Fetch(Fetch::Open);
                // "* N FETCH" is followed by exactly one space, then the list.
                if b != b' ' {
                    return Err(Violation::Malformed {
                        what: "a FETCH response",
                        expected: "a space after FETCH",
                    });
                }
                Ok(())
            }
            Kind::Text => {
                self.phase = Phase::Text(Tail::Plain);
                self.byte(b)
            }
            Kind::Data => {
                self.phase = Phase::Data(Lex::Normal {
                    after_delimiter: false,
                });
                for &h in head_bytes {
                    self.byte(h)?;
                }
                self.byte(b)
            }
        }
    }

    fn text(&mut self, tail: Tail, b: u8) -> Result<(), Violation> {
        let next = match (tail, b) {
            (Tail::ClosedCr, b'\n') => return Err(Violation::LiteralInText),
            (_, b'\n') => return self.end_response(),
            (_, b'{') => Tail::Open(0),
            (Tail::Open(n), b'0'..=b'9') => Tail::Open(n.saturating_add(1)),
            (Tail::Open(n), b'}') if n > 0 => Tail::Closed,
            (Tail::Closed, b'\r') => Tail::ClosedCr,
            _ => Tail::Plain,
        };
        // Status text does not nest for imap-proto; counting its parentheses anyway keeps a
        // greeting of a thousand `(` from being anything but refused.
        match b {
            b'(' => self.open()?,
            b')' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.phase = Phase::Text(next);
        Ok(())
    }

    fn data(&mut self, lex: Lex, b: u8) -> Result<(), Violation> {
        let malformed = |expected| Violation::Malformed {
            what: "an untagged response",
            expected,
        };
        let next = match lex {
            Lex::Normal { after_delimiter } => match b {
                b'\n' => return self.end_response(),
                b'"' => Lex::Quoted,
                b'{' if after_delimiter => Lex::Brace { size: 0, digits: 0 },
                b'{' => return Err(malformed("a literal only after a space or '('")),
                b'(' => {
                    self.open()?;
                    Lex::Normal {
                        after_delimiter: true,
                    }
                }
                b')' => {
                    self.depth = self.depth.saturating_sub(1);
                    Lex::Normal {
                        after_delimiter: false,
                    }
                }
                b' ' => Lex::Normal {
                    after_delimiter: true,
                },
                _ => Lex::Normal {
                    after_delimiter: false,
                },
            },
            Lex::Quoted => match b {
                b'\\' => Lex::QuotedEscape,
                b'"' => Lex::Normal {
                    after_delimiter: false,
                },
                b'\r' | b'\n' | 0 => return Err(malformed("a quoted string closed on its line")),
                _ => Lex::Quoted,
            },
            Lex::QuotedEscape => match b {
                b'"' | b'\\' => Lex::Quoted,
                _ => return Err(malformed("only \\\" or \\\\ escaped in a quoted string")),
            },
            Lex::Brace { size, digits } => match b {
                b'0'..=b'9' => Lex::Brace {
                    size: literal_digit(size, b, DEFAULT_LITERAL_LIMIT)?,
                    digits: digits.saturating_add(1),
                },
                b'}' if digits > 0 => Lex::BraceClosed { size },
                _ => return Err(malformed("a literal announced as {digits}")),
            },
            Lex::BraceClosed { size } => match b {
                b'\r' => Lex::BraceCr { size },
                _ => return Err(malformed("CRLF after a literal's announcement")),
            },
            Lex::BraceCr { size } => match b {
                b'\n' => {
                    self.start_literal(size, Resume::Data);
                    return Ok(());
                }
                _ => return Err(malformed("CRLF after a literal's announcement")),
            },
        };
        self.phase = Phase::Data(next);
        Ok(())
    }

    fn fetch(&mut self, f: Fetch, b: u8) -> Result<(), Violation> {
        match fetch::step(f, b, self.body_literal_limit)? {
            FetchStep::Next(next) => self.phase = Phase::Fetch(next),
            FetchStep::Literal { size, then } => self.start_literal(size, Resume::Fetch(then)),
            FetchStep::End => return self.end_response(),
        }
        Ok(())
    }

    fn start_literal(&mut self, size: u64, resume: Resume) {
        self.line = 0;
        self.phase = match size {
            0 => resume.phase(),
            left => Phase::Literal { left, resume },
        };
    }

    fn open(&mut self) -> Result<(), Violation> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Violation::TooDeep);
        }
        Ok(())
    }

    /// A line feed that is not a literal's: the response is complete.
    fn end_response(&mut self) -> Result<(), Violation> {
        self.line = 0;
        self.phase = Phase::Start;
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
        self.completed += 1;
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

    #[cfg(test)]
    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    #[cfg(test)]
    pub(super) fn set_untagged(&mut self, n: u64) {
        self.untagged = n;
    }

    #[cfg(test)]
    pub(super) fn at_start(&self) -> bool {
        self.phase == Phase::Start
    }
}

/// One more digit of a literal's size, refused past `limit`.
pub(super) fn literal_digit(size: u64, digit: u8, limit: u64) -> Result<u64, Violation> {
    let size = size
        .checked_mul(10)
        .and_then(|n| n.checked_add(u64::from(digit - b'0')))
        .ok_or(Violation::LiteralTooLarge {
            size: u64::MAX,
            limit,
        })?;
    if size > limit {
        return Err(Violation::LiteralTooLarge { size, limit });
    }
    Ok(size)
}

/// The head is `SP word` or `SP number SP word`: letters and digits, and the spaces between.
fn continues_head(head: &Head, b: u8) -> bool {
    let so_far = &head.bytes[..head.len as usize];
    let Some(rest) = so_far.strip_prefix(b" ") else {
        return so_far.is_empty() && b == b' ';
    };
    if b.is_ascii_alphanumeric() {
        return true;
    }
    // One space, after a leading number: the word after it is what the response is.
    b == b' ' && !rest.is_empty() && rest.iter().all(u8::is_ascii_digit)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Fetch,
    Data,
}

/// What the head (`SP word` or `SP number SP word`, as read so far) makes the response.
fn classify(head: &[u8]) -> Kind {
    let Some(rest) = head.strip_prefix(b" ") else {
        // `*` not followed by a space: imap-proto parses nothing of it; the strictest reading.
        return Kind::Text;
    };
    let mut words = rest.splitn(2, |&c| c == b' ');
    let first = words.next().unwrap_or_default();
    let second = words.next();
    let starts = |word: &[u8], prefix: &[u8]| {
        word.len() >= prefix.len() && word[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    match second {
        Some(word) if !first.is_empty() && first.iter().all(u8::is_ascii_digit) => {
            if word.eq_ignore_ascii_case(b"FETCH") {
                Kind::Fetch
            } else {
                Kind::Data
            }
        }
        // imap-proto reads a status word as a prefix (`* OKAY` is OK and then a parse error):
        // every word it could take as one is free text here.
        _ if [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
            .iter()
            .any(|p| starts(first, p)) =>
        {
            Kind::Text
        }
        _ => Kind::Data,
    }
}
