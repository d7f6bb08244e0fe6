//! The FETCH grammar the guard lets through: the items sidesync asks for (UID, FLAGS,
//! RFC822.SIZE, INTERNALDATE, MODSEQ, BODY[…], RFC822…), and any other item only in the forms
//! imap-proto's fallback for unknown items reads exactly as the guard does.
//!
//! Why the fallback matters: imap-proto tries its typed parsers first and, when none fits,
//! `msg_att_unknown` takes `NAME SP value`, where value is a `(…)` read up to the first `)`, an
//! nstring, or a token up to the next space or `)` — the first and last read CRLF and `{N}` as
//! plain bytes. A typed item whose value does not parse falls back the same way. So for any item:
//! - a `(…)` may hold no `(`, `"`, `{`, CR or LF: then "up to the first `)`" is the only reading;
//! - a token may hold no CR or LF: it ends on its line, for both;
//! - quoted strings are strict (imap-proto's `quoted`), literals `{N}` CRLF as everywhere.
//!
//! Under those rules the typed reading and the fallback frame the response identically, and
//! nothing nests: the deepest FETCH the guard lets through is `( … ( … ) … )`. ENVELOPE and
//! BODYSTRUCTURE (recursive, and never asked for) are refused by name.

use super::scanner::literal_digit;
use super::{DEFAULT_LITERAL_LIMIT, Violation};

/// Longer names are kept as "long" (never one sidesync asks for).
const NAME_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_LEN],
    len: u8,
    long: bool,
}

impl Name {
    fn push(&mut self, b: u8) {
        if (self.len as usize) < NAME_LEN {
            self.bytes[self.len as usize] = b;
            self.len += 1;
        } else {
            self.long = true;
        }
    }

    fn is(&self, name: &str) -> bool {
        !self.long && self.bytes[..self.len as usize].eq_ignore_ascii_case(name.as_bytes())
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes[..self.len as usize]).into_owned();
        if self.long {
            s.push('…');
        }
        s
    }
}

/// The form of an item's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Number,
    Quoted,
    /// NIL, a quoted string or a literal; `body`: held to the body limit, not the default.
    NString {
        body: bool,
    },
    Flags,
    ModSeq,
    /// `(objectid)` (RFC 8474); `nil`: NIL allowed too.
    ObjectId {
        nil: bool,
    },
    /// Any other item, in the forms both readings agree on.
    Opaque,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    ItemStart,
    Backslash,
    Flag,
    Digits,
    Atom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The value's first byte decides.
    Begin(Shape),
    Digits,
    Quoted {
        escape: bool,
    },
    /// The letters of NIL matched so far.
    Nil(u8),
    Brace {
        size: u64,
        digits: u8,
        limit: u64,
    },
    BraceClosed {
        size: u64,
    },
    BraceCr {
        size: u64,
    },
    List {
        shape: Shape,
        at: List,
    },
    /// An opaque item's token, to the next space or `)`.
    Token,
    /// An opaque item's `(…)`, to the first `)`.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// After "FETCH ": the list opens.
    Open,
    /// An item's name begins, or the list closes.
    ItemStart,
    Name(Name),
    /// Inside a BODY item's `[…]`; `open`: inside its one `(…)`.
    Section {
        open: bool,
    },
    /// After `]`: `<origin>` or the space before the value.
    AfterSection,
    Origin {
        digits: u8,
    },
    AfterOrigin,
    Value(Value),
    /// After an item: a space before the next, or the list closes.
    AfterItem,
    /// After the list: spaces, then CRLF.
    Closed,
    ClosedCr,
}

/// What one byte did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStep {
    Next(Fetch),
    /// `{size}` CRLF: the literal's bytes follow, then `then`.
    Literal {
        size: u64,
        then: Fetch,
    },
    /// CRLF after the list: the response is complete.
    End,
}

fn malformed(expected: &'static str) -> Violation {
    Violation::Malformed {
        what: "a FETCH response",
        expected,
    }
}

/// imap-proto's ATOM-CHAR: no atom-specials, no controls.
pub fn is_atom_char(b: u8) -> bool {
    b > 0x1f && b != 0x7f && !b"(){ %*\"\\]".contains(&b)
}

fn is_objectid_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The shape of an item without a section, or the refusal of one sidesync never asks for.
fn shape_of(name: &Name) -> Result<Shape, Violation> {
    let is_any = |names: &[&str]| names.iter().any(|n| name.is(n));
    Ok(
        if is_any(&["UID", "RFC822.SIZE", "X-GM-MSGID", "X-GM-THRID"]) {
            Shape::Number
        } else if name.is("FLAGS") {
            Shape::Flags
        } else if name.is("MODSEQ") {
            Shape::ModSeq
        } else if name.is("INTERNALDATE") {
            Shape::Quoted
        } else if is_any(&["RFC822", "RFC822.HEADER", "RFC822.TEXT"]) {
            Shape::NString { body: true }
        } else if name.is("EMAILID") {
            Shape::ObjectId { nil: false }
        } else if name.is("THREADID") {
            Shape::ObjectId { nil: true }
        } else if is_any(&["ENVELOPE", "BODYSTRUCTURE", "BODY"]) {
            return Err(Violation::UnexpectedFetchItem(name.text()));
        } else {
            Shape::Opaque
        },
    )
}

/// Where an item ends: a space (another item, or trailing space before `)`) or the list's `)`.
fn after_item(b: u8) -> Result<FetchStep, Violation> {
    match b {
        b' ' => Ok(FetchStep::Next(Fetch::ItemStart)),
        b')' => Ok(FetchStep::Next(Fetch::Closed)),
        _ => Err(malformed("a space or ')' after an item")),
    }
}

/// One byte of a FETCH response after "FETCH ".
pub fn step(f: Fetch, b: u8, body_limit: u64) -> Result<FetchStep, Violation> {
    let next = |f| Ok(FetchStep::Next(f));
    match f {
        Fetch::Open => match b {
            b'(' => next(Fetch::ItemStart),
            _ => Err(malformed("'(' after FETCH")),
        },
        Fetch::ItemStart => match b {
            b')' => next(Fetch::Closed),
            b'[' => Err(malformed("an item's name")),
            _ if is_atom_char(b) => {
                let mut name = Name {
                    bytes: [0; NAME_LEN],
                    len: 0,
                    long: false,
                };
                name.push(b);
                next(Fetch::Name(name))
            }
            _ => Err(malformed("an item's name")),
        },
        Fetch::Name(mut name) => match b {
            b'[' if name.is("BODY") => next(Fetch::Section { open: false }),
            b'[' => Err(Violation::UnexpectedFetchItem(format!(
                "{}[…]",
                name.text()
            ))),
            b' ' => next(Fetch::Value(Value::Begin(shape_of(&name)?))),
            _ if is_atom_char(b) => {
                name.push(b);
                next(Fetch::Name(name))
            }
            _ => Err(malformed("a space after an item's name")),
        },
        Fetch::Section { open } => match b {
            b']' if !open => next(Fetch::AfterSection),
            b'(' if !open => next(Fetch::Section { open: true }),
            b')' if open => next(Fetch::Section { open: false }),
            b' ' | b'.' | b'-' => next(Fetch::Section { open }),
            _ if b.is_ascii_alphanumeric() => next(Fetch::Section { open }),
            _ => Err(malformed("a section of letters, digits, dots and one (…)")),
        },
        Fetch::AfterSection => match b {
            b'<' => next(Fetch::Origin { digits: 0 }),
            b' ' => next(Fetch::Value(Value::Begin(Shape::NString { body: true }))),
            _ => Err(malformed("a space or <origin> after a section")),
        },
        Fetch::Origin { digits } => match b {
            b'0'..=b'9' if digits < 10 => next(Fetch::Origin { digits: digits + 1 }),
            b'>' if digits > 0 => next(Fetch::AfterOrigin),
            _ => Err(malformed("an origin of digits")),
        },
        Fetch::AfterOrigin => match b {
            b' ' => next(Fetch::Value(Value::Begin(Shape::NString { body: true }))),
            _ => Err(malformed("a space after <origin>")),
        },
        Fetch::Value(v) => value(v, b, body_limit),
        Fetch::AfterItem => after_item(b),
        Fetch::Closed => match b {
            b' ' => next(Fetch::Closed),
            b'\r' => next(Fetch::ClosedCr),
            _ => Err(malformed("CRLF after the list")),
        },
        Fetch::ClosedCr => match b {
            b'\n' => Ok(FetchStep::End),
            _ => Err(malformed("CRLF after the list")),
        },
    }
}

fn value(v: Value, b: u8, body_limit: u64) -> Result<FetchStep, Violation> {
    let next = |v| Ok(FetchStep::Next(Fetch::Value(v)));
    let done = || Ok(FetchStep::Next(Fetch::AfterItem));
    let brace = |limit| {
        next(Value::Brace {
            size: 0,
            digits: 0,
            limit,
        })
    };
    match v {
        Value::Begin(shape) => match (shape, b) {
            (Shape::Number, b'0'..=b'9') => next(Value::Digits),
            (Shape::Quoted | Shape::NString { .. } | Shape::Opaque, b'"') => {
                next(Value::Quoted { escape: false })
            }
            (Shape::NString { body }, b'{') => brace(if body {
                body_limit
            } else {
                DEFAULT_LITERAL_LIMIT
            }),
            (Shape::Opaque, b'{') => brace(DEFAULT_LITERAL_LIMIT),
            (Shape::NString { .. } | Shape::ObjectId { nil: true }, b'N' | b'n') => {
                next(Value::Nil(1))
            }
            (Shape::Flags | Shape::ModSeq | Shape::ObjectId { .. }, b'(') => next(Value::List {
                shape,
                at: List::ItemStart,
            }),
            (Shape::Opaque, b'(') => next(Value::Group),
            (Shape::Opaque, b' ' | b')' | b'\r' | b'\n') => Err(malformed("an item's value")),
            (Shape::Opaque, _) => next(Value::Token),
            _ => Err(malformed("an item's value in its form")),
        },
        Value::Digits => match b {
            b'0'..=b'9' => next(Value::Digits),
            _ => after_item(b),
        },
        Value::Quoted { escape: true } => match b {
            b'"' | b'\\' => next(Value::Quoted { escape: false }),
            _ => Err(malformed("only \\\" or \\\\ escaped in a quoted string")),
        },
        Value::Quoted { escape: false } => match b {
            b'\\' => next(Value::Quoted { escape: true }),
            b'"' => done(),
            b'\r' | b'\n' | 0 => Err(malformed("a quoted string closed on its line")),
            _ => next(Value::Quoted { escape: false }),
        },
        Value::Nil(seen) => match (seen, b) {
            (1, b'I' | b'i') => next(Value::Nil(2)),
            (2, b'L' | b'l') => next(Value::Nil(3)),
            (3, _) => after_item(b),
            _ => Err(malformed("NIL")),
        },
        Value::Brace {
            size,
            digits,
            limit,
        } => match b {
            b'0'..=b'9' => next(Value::Brace {
                size: literal_digit(size, b, limit)?,
                digits: digits.saturating_add(1),
                limit,
            }),
            b'}' if digits > 0 => next(Value::BraceClosed { size }),
            _ => Err(malformed("a literal announced as {digits}")),
        },
        Value::BraceClosed { size } => match b {
            b'\r' => next(Value::BraceCr { size }),
            _ => Err(malformed("CRLF after a literal's announcement")),
        },
        Value::BraceCr { size } => match b {
            b'\n' => Ok(FetchStep::Literal {
                size,
                then: Fetch::AfterItem,
            }),
            _ => Err(malformed("CRLF after a literal's announcement")),
        },
        Value::List { shape, at } => list(shape, at, b),
        Value::Token => match b {
            b' ' | b')' => after_item(b),
            b'\r' | b'\n' => Err(malformed("an item's value on one line")),
            _ => next(Value::Token),
        },
        Value::Group => match b {
            b')' => done(),
            b'(' | b'"' | b'{' | b'\r' | b'\n' => Err(malformed(
                "an unknown item's (…) without nesting, strings, literals or line ends",
            )),
            _ => next(Value::Group),
        },
    }
}

/// Inside FLAGS (…), MODSEQ (…) and EMAILID/THREADID (…).
fn list(shape: Shape, at: List, b: u8) -> Result<FetchStep, Violation> {
    let next = |at| Ok(FetchStep::Next(Fetch::Value(Value::List { shape, at })));
    let done = || Ok(FetchStep::Next(Fetch::AfterItem));
    match (shape, at, b) {
        (Shape::Flags, List::ItemStart, b')') => done(),
        (Shape::Flags, List::ItemStart, b'\\') => next(List::Backslash),
        (Shape::Flags, List::ItemStart | List::Backslash | List::Flag, _) if is_atom_char(b) => {
            next(List::Flag)
        }
        (Shape::Flags, List::Backslash, b'*') => next(List::Flag),
        (Shape::Flags, List::Backslash | List::Flag, b' ') => next(List::ItemStart),
        (Shape::Flags, List::Backslash | List::Flag, b')') => done(),
        (Shape::ModSeq, List::ItemStart | List::Digits, b'0'..=b'9') => next(List::Digits),
        (Shape::ModSeq, List::Digits, b')') => done(),
        (Shape::ObjectId { .. }, List::ItemStart | List::Atom, _) if is_objectid_char(b) => {
            next(List::Atom)
        }
        (Shape::ObjectId { .. }, List::Atom, b')') => done(),
        _ => Err(malformed("a list in its item's form")),
    }
}
