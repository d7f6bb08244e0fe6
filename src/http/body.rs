//! Request bodies as the front sees them, before tiny_http does: how the head frames the body
//! (Content-Length, chunked, none) and a chunked decoder fed as bytes arrive. Pure, no I/O.
//!
//! Why here and not in tiny_http: tiny_http hands a request to a worker as soon as its head is
//! in and lets the worker wait for the body; it drains an unread body when the request is
//! dropped (holding the worker for as long as the client likes), and
//! `Content-Length: 18446744073709551615` makes that drain allocate the impossible and panic.
//! So the front reads the whole body first, bounded in size and time, and tiny_http only ever
//! gets a complete request with a Content-Length it has already received.

/// How a request's head says its body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (neither Content-Length nor Transfer-Encoding).
    None,
    Length(u64),
    Chunked,
}

/// Why a body (or its framing) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit of the method and path (413).
    TooLarge(u64),
    /// Framing that cannot be read one way only (400): the words say which.
    Malformed(&'static str),
}

/// The framing from the values of the head's Content-Length and Transfer-Encoding headers (each
/// as many times as it appears), checked against `limit`.
///
/// Refused as malformed: both headers (the classic request-smuggling ambiguity), Content-Length
/// more than once or not a plain decimal number, a transfer coding other than `chunked` alone,
/// and chunked on HTTP/1.0 (RFC 9112 §6.1). A number of digits only that is over the limit —
/// even one past `u64` — is too large, not malformed.
pub fn framing(
    content_length: &[&str],
    transfer_encoding: &[&str],
    http10: bool,
    limit: u64,
) -> Result<Framing, BodyError> {
    match (content_length, transfer_encoding) {
        ([], []) => Ok(Framing::None),
        ([_, ..], [_, ..]) => Err(BodyError::Malformed(
            "the request has both Content-Length and Transfer-Encoding",
        )),
        ([_, _, ..], []) => Err(BodyError::Malformed(
            "the request has more than one Content-Length",
        )),
        ([value], []) => {
            let v = value.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BodyError::Malformed(
                    "Content-Length is not a decimal number",
                ));
            }
            match v.parse::<u64>() {
                Ok(n) if n <= limit => Ok(Framing::Length(n)),
                _ => Err(BodyError::TooLarge(limit)),
            }
        }
        ([], [value]) if value.trim().eq_ignore_ascii_case("chunked") => {
            if http10 {
                Err(BodyError::Malformed(
                    "Transfer-Encoding is not allowed on HTTP/1.0",
                ))
            } else {
                Ok(Framing::Chunked)
            }
        }
        ([], _) => Err(BodyError::Malformed(
            "the only Transfer-Encoding accepted is chunked, once",
        )),
    }
}

/// The longest chunk-size line (with its extensions) and trailer section accepted.
const MAX_SIZE_LINE: usize = 1024;
const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line; `len` bytes of it so far, `size` the hex digits' value,
    /// `digits` whether any came, `ext` whether past them (extensions are skipped).
    Size {
        len: usize,
        size: u64,
        digits: bool,
        ext: bool,
        cr: bool,
    },
    Data(u64),
    /// The CRLF after a chunk's data: `cr` whether the CR came.
    DataEnd {
        cr: bool,
    },
    /// The trailer section: `line` bytes of the current line, `total` in all.
    Trailers {
        line: usize,
        total: usize,
        cr: bool,
    },
    Done,
}

/// A chunked body decoded as it arrives, at most `limit` bytes of data.
pub struct Dechunk {
    state: State,
    limit: u64,
    pub data: Vec<u8>,
}

impl Dechunk {
    pub fn new(limit: u64) -> Dechunk {
        Dechunk {
            state: State::Size {
                len: 0,
                size: 0,
                digits: false,
                ext: false,
                cr: false,
            },
            limit,
            data: Vec::new(),
        }
    }

    /// Takes the next bytes; `Some(n)` once the body ended after `n` of them (the rest belongs
    /// to no request: one request per connection), `None` while more is needed.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<usize>, BodyError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(Some(i)),
                State::Data(left) => {
                    // Data is copied in bulk: a 48 MB body is not a byte loop.
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.data.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.state = match left - take as u64 {
                        0 => State::DataEnd { cr: false },
                        left => State::Data(left),
                    };
                    continue;
                }
                _ => {}
            }
            let b = input[i];
            self.state = match self.state {
                // Taken above, before a byte is looked at.
                State::Done | State::Data(_) => continue,
                State::DataEnd { cr: false } if b == b'\r' => State::DataEnd { cr: true },
                State::DataEnd { cr: true } if b == b'\n' => State::Size {
                    len: 0,
                    size: 0,
                    digits: false,
                    ext: false,
                    cr: false,
                },
                State::DataEnd { .. } => {
                    return Err(BodyError::Malformed("a chunk does not end with CRLF"));
                }
                State::Size { len, .. } if len >= MAX_SIZE_LINE => {
                    return Err(BodyError::Malformed("a chunk-size line is too long"));
                }
                State::Size {
                    cr: true,
                    digits,
                    size,
                    ..
                } => {
                    if b != b'\n' || !digits {
                        return Err(BodyError::Malformed("a chunk-size line is malformed"));
                    }
                    if size == 0 {
                        State::Trailers {
                            line: 0,
                            total: 0,
                            cr: false,
                        }
                    } else {
                        State::Data(size)
                    }
                }
                State::Size {
                    len,
                    size,
                    digits,
                    ext,
                    ..
                } => {
                    let len = len + 1;
                    match (b, ext) {
                        (b'\r', _) => State::Size {
                            len,
                            size,
                            digits,
                            ext,
                            cr: true,
                        },
                        (_, false) if b.is_ascii_hexdigit() => {
                            let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                            let size = size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(digit))
                                .filter(|&s| s <= self.limit.saturating_sub(self.data.len() as u64))
                                .ok_or(BodyError::TooLarge(self.limit))?;
                            State::Size {
                                len,
                                size,
                                digits: true,
                                ext: false,
                                cr: false,
                            }
                        }
                        (b';' | b' ' | b'\t', _) if digits => State::Size {
                            len,
                            size,
                            digits,
                            ext: true,
                            cr: false,
                        },
                        (b'\n', _) => {
                            return Err(BodyError::Malformed("a chunk-size line is malformed"));
                        }
                        (_, true) => State::Size {
                            len,
                            size,
                            digits,
                            ext,
                            cr: false,
                        },
                        (_, false) => {
                            return Err(BodyError::Malformed("a chunk size is not hexadecimal"));
                        }
                    }
                }
                State::Trailers { total, .. } if total >= MAX_TRAILERS => {
                    return Err(BodyError::Malformed("the chunked trailers are too long"));
                }
                State::Trailers {
                    line,
                    total,
                    cr: true,
                } => {
                    if b != b'\n' {
                        return Err(BodyError::Malformed("a trailer line is malformed"));
                    }
                    if line == 0 {
                        self.state = State::Done;
                        return Ok(Some(i + 1));
                    }
                    State::Trailers {
                        line: 0,
                        total: total + 1,
                        cr: false,
                    }
                }
                State::Trailers { line, total, .. } => State::Trailers {
                    line: if b == b'\r' { line } else { line + 1 },
                    total: total + 1,
                    cr: b == b'\r',
                },
            };
            i += 1;
        }
        Ok((self.state == State::Done).then_some(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_read_one_way_only() {
        let m = |e: Result<Framing, BodyError>| matches!(e, Err(BodyError::Malformed(_)));
        assert_eq!(framing(&[], &[], false, 10), Ok(Framing::None));
        assert_eq!(framing(&["5"], &[], false, 10), Ok(Framing::Length(5)));
        assert_eq!(framing(&[" 10 "], &[], false, 10), Ok(Framing::Length(10)));
        assert_eq!(
            framing(&["11"], &[], false, 10),
            Err(BodyError::TooLarge(10))
        );
        // The value that panicked tiny_http, and one past u64: too large, not a crash.
        for huge in ["18446744073709551615", "99999999999999999999999"] {
            assert_eq!(
                framing(&[huge], &[], false, 10),
                Err(BodyError::TooLarge(10))
            );
        }
        for bad in ["", "-1", "+5", "0x10", "5, 5", "1e3", "５"] {
            assert!(m(framing(&[bad], &[], false, 10)), "{bad:?}");
        }
        assert!(m(framing(&["5", "5"], &[], false, 10)), "twice");
        assert!(m(framing(&["5"], &["chunked"], false, 10)), "both");
        assert_eq!(framing(&[], &["Chunked"], false, 10), Ok(Framing::Chunked));
        assert!(m(framing(&[], &["chunked"], true, 10)), "HTTP/1.0");
        for bad in ["gzip", "gzip, chunked", "identity", ""] {
            assert!(m(framing(&[], &[bad], false, 10)), "{bad:?}");
        }
        assert!(m(framing(&[], &["chunked", "chunked"], false, 10)));
    }

    fn whole(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), BodyError> {
        let mut d = Dechunk::new(limit);
        match d.feed(input)? {
            Some(n) => Ok((d.data, n)),
            None => Err(BodyError::Malformed("incomplete")),
        }
    }

    #[test]
    fn chunked_bodies_decode_whole_and_stop_at_their_end() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1";
        let (data, end) = whole(body, 100).expect("decoded");
        assert_eq!(data, b"hello, world");
        assert_eq!(
            &body[end..],
            b"GET / HTTP/1.1",
            "the rest is not the body's"
        );
        // Byte by byte, the same.
        let mut d = Dechunk::new(100);
        let mut ended = None;
        for (i, b) in body.iter().enumerate() {
            if let Some(n) = d.feed(std::slice::from_ref(b)).expect("ok") {
                ended = Some(i + n);
                break;
            }
        }
        assert_eq!(ended, Some(end));
        assert_eq!(d.data, b"hello, world");
        assert_eq!(whole(b"0\r\n\r\n", 0).map(|(d, _)| d), Ok(Vec::new()));
        assert_eq!(
            whole(b"A\r\n0123456789\r\n0\r\n\r\n", 10).map(|(d, _)| d.len()),
            Ok(10)
        );
    }

    #[test]
    fn chunked_bodies_are_bounded_and_framed_strictly() {
        assert_eq!(
            whole(b"B\r\n0123456789a\r\n0\r\n\r\n", 10),
            Err(BodyError::TooLarge(10))
        );
        // Over the limit across chunks, and a size that overflows u64: refused at the size line.
        assert_eq!(
            whole(b"6\r\n012345\r\n6\r\n", 10),
            Err(BodyError::TooLarge(10))
        );
        assert_eq!(
            whole(b"FFFFFFFFFFFFFFFFFFFF\r\n", u64::MAX),
            Err(BodyError::TooLarge(u64::MAX))
        );
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b";x\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\r",
            b"0\r\nbad\rx",
        ] {
            assert!(
                matches!(whole(bad, 100), Err(BodyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!("1;{}\r\n", "x".repeat(2000));
        assert!(matches!(
            whole(long_ext.as_bytes(), 100),
            Err(BodyError::Malformed(_))
        ));
        let mut d = Dechunk::new(100);
        assert_eq!(d.feed(b"5\r\nhel"), Ok(None), "more is needed");
    }
}
