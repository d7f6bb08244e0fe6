//! Hostile and broken servers for IMAP, POP3 and SMTP: each speaks just enough of its protocol
//! to reach the point of attack, then sends what no parser should trust (nesting 100,000 deep,
//! an endless line, a literal announced at 4 GB, a message larger than allowed, one byte a
//! second forever, a listing that never ends). Plaintext: the attacks come before or instead of
//! TLS, and the appliance's bounds must hold either way.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// The greeting is a list nested 100,000 deep.
    NestedGreeting,
    /// After login, an untagged response nested 100,000 deep (IMAP: to EXAMINE).
    NestedUntagged,
    /// A FETCH response whose BODYSTRUCTURE is nested 100,000 deep.
    NestedFetch,
    /// The greeting never ends: bytes without a line end, as fast as they are taken.
    EndlessLine,
    /// A body announced as a 4 GB literal (IMAP), or a body far longer than listed (POP3).
    HugeLiteral,
    /// One byte a second, forever, from the greeting on.
    Drip,
    /// A listing that never ends: one complete response line every 200 ms, no completion.
    DripListing,
    /// A listing that never ends, as fast as it is taken (POP3 UIDL; SMTP EHLO continuation lines).
    EndlessListing,
    /// The message is listed at `size` bytes (IMAP RFC822.SIZE, POP3 LIST) and served whole.
    Large { size: usize },
    /// IMAP: the login is answered with this line after the tag ("NO [UNAVAILABLE] ..."), or,
    /// when it starts with "* BYE", the server says that and hangs up.
    LoginRefused(&'static str),
    /// IMAP: capabilities without IMAP4rev1 (greeting and CAPABILITY).
    NoImap4rev1,
    /// STARTTLS (IMAP) / STLS (POP3) / STARTTLS (SMTP) is offered; the go-ahead is followed at
    /// once by an injected response, before any TLS.
    StartTlsInjection,
    /// STARTTLS offered, then refused with this reply.
    StartTlsRefused(&'static str),
    /// IMAP: the greeting's text ends in `{N}`, and the N bytes after it are a FETCH nested 500
    /// deep (plain text to imap-proto, so those bytes are its next response).
    LiteralInStatusText,
    /// IMAP: the same, hiding a 400 MB body literal, whose bytes then come in short lines.
    HiddenHugeLiteral,
    /// IMAP: to EXAMINE, an unknown FETCH item whose `(…)` holds `{N}` CRLF (plain bytes to
    /// imap-proto's fallback), hiding a FETCH nested 500 deep.
    UnknownItemHides,
    /// IMAP: the same with the unknown item's value a token (`a{N}` CRLF).
    UnknownTokenHides,
    /// The greeting is this line (POP3 "-ERR …", or one that is not the protocol's), then
    /// nothing more.
    Greeting(&'static str),
}

pub struct HostileServer {
    pub port: u16,
    /// Bytes the server managed to write, over all connections.
    pub written: Arc<AtomicU64>,
}

const DEEP: usize = 100_000;

fn deep() -> String {
    "(".repeat(DEEP)
}

/// 525 bytes that overflowed imap-proto's stack when they reached it unguarded.
fn nested_fetch_500() -> String {
    format!("* 1 FETCH (BODYSTRUCTURE {}\r\n", "(".repeat(500))
}

/// `before` announcing the length of `hidden` as a literal, then `hidden`.
fn hiding(before: &str, hidden: &str) -> String {
    format!("{before}{{{}}}\r\n{hidden}", hidden.len())
}

/// Writes `chunk` until the client goes away.
fn forever(out: &mut TcpStream, chunk: &[u8], pause: Duration, written: &AtomicU64) {
    loop {
        if out.write_all(chunk).is_err() {
            return;
        }
        written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}

/// Holds the connection until the client closes it.
fn hold(input: &mut impl Read) {
    let mut buf = [0u8; 512];
    while input.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
}

#[derive(Clone, Copy)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

impl HostileServer {
    pub fn start(protocol: Protocol, attack: Attack) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                thread::spawn(move || {
                    let _ = match protocol {
                        Protocol::Imap => imap(stream, attack, &counter),
                        Protocol::Pop3 => pop3(stream, attack, &counter),
                        Protocol::Smtp => smtp(stream, attack, &counter),
                    };
                });
            }
        });
        HostileServer { port, written }
    }
}

/// The greeting attacks, the same for every protocol: `ok` is the protocol's greeting start.
/// Returns true when the attack was made (the session is over).
fn greeting_attack(
    out: &mut TcpStream,
    input: &mut impl Read,
    attack: Attack,
    ok: &str,
    written: &AtomicU64,
) -> bool {
    match attack {
        Attack::NestedGreeting => {
            let _ = out.write_all(format!("{ok} {}\r\n", deep()).as_bytes());
            hold(input);
        }
        Attack::EndlessLine => {
            let _ = out.write_all(format!("{ok} ").as_bytes());
            forever(out, &[b'x'; 16 * 1024], Duration::ZERO, written);
        }
        Attack::Drip => forever(out, b"x", Duration::from_secs(1), written),
        Attack::Greeting(line) => {
            let _ = out.write_all(format!("{line}\r\n").as_bytes());
            hold(input);
        }
        _ => return false,
    }
    true
}

const SAMPLE: &str = "Message-ID: <hostile@sample.test>\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\
                      Subject: hostile\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\n\r\nbody\r\n";

/// The one email a server serves: the sample, or padded to the size `Attack::Large` asks for.
/// Its Message-ID names the server's port: each server's email is its own (one activity per
/// email would otherwise merge the copies of all the servers of a test).
fn served_body(attack: Attack, port: u16) -> Vec<u8> {
    let sample = SAMPLE.replace("hostile@", &format!("hostile-{port}@"));
    match attack {
        Attack::Large { size } => large_body(&sample, size),
        _ => sample.into_bytes(),
    }
}

fn large_body(sample: &str, size: usize) -> Vec<u8> {
    let mut body = sample.as_bytes().to_vec();
    while body.len() + 80 < size {
        body.extend_from_slice(&[b'y'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body
}

fn imap(stream: TcpStream, attack: Attack, written: &AtomicU64) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    if greeting_attack(&mut out, &mut input, attack, "* OK", written) {
        return Ok(());
    }
    let caps = match attack {
        Attack::NoImap4rev1 => "AUTH=PLAIN",
        Attack::StartTlsInjection | Attack::StartTlsRefused(_) => "IMAP4rev1 STARTTLS AUTH=PLAIN",
        _ => "IMAP4rev1 AUTH=PLAIN",
    };
    let greeting = format!("* OK [CAPABILITY {caps}] hostile ready");
    match attack {
        Attack::LiteralInStatusText => {
            out.write_all(hiding(&format!("{greeting} "), &nested_fetch_500()).as_bytes())?;
            hold(&mut input);
            return Ok(());
        }
        Attack::HiddenHugeLiteral => {
            let hidden = "* 1 FETCH (UID 1 BODY[] {400000000}\r\n";
            out.write_all(hiding(&format!("{greeting} "), hidden).as_bytes())?;
            let line = [[b'z'; 998].as_slice(), b"\r\n"].concat();
            forever(&mut out, &line, Duration::ZERO, written);
            return Ok(());
        }
        _ => out.write_all(format!("{greeting}\r\n").as_bytes())?,
    }
    let body = served_body(attack, stream_port(&out));
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.trim_end().splitn(3, ' ');
        let tag = words.next().unwrap_or("").to_string();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let rest = words.next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "CAPABILITY" => {
                out.write_all(format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n").as_bytes())?
            }
            "STARTTLS" => match attack {
                Attack::StartTlsRefused(reply) => {
                    out.write_all(format!("{tag} {reply}\r\n").as_bytes())?
                }
                _ => {
                    // The go-ahead and an injected answer in one segment, before any TLS.
                    out.write_all(
                        format!(
                            "{tag} OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n"
                        )
                        .as_bytes(),
                    )?;
                    hold(&mut input);
                    return Ok(());
                }
            },
            "AUTHENTICATE" => {
                out.write_all(b"+ \r\n")?;
                line.clear();
                input.read_line(&mut line)?;
                match attack {
                    Attack::LoginRefused(reply) if reply.starts_with("* BYE") => {
                        out.write_all(format!("{reply}\r\n").as_bytes())?;
                        return Ok(());
                    }
                    Attack::LoginRefused(reply) => {
                        out.write_all(format!("{tag} {reply}\r\n").as_bytes())?
                    }
                    _ => out.write_all(format!("{tag} OK logged in\r\n").as_bytes())?,
                }
            }
            "LOGIN" => out.write_all(format!("{tag} OK logged in\r\n").as_bytes())?,
            "EXAMINE" | "SELECT" => {
                let hidden = match attack {
                    Attack::NestedUntagged => Some(format!("* {}\r\n", deep())),
                    Attack::UnknownItemHides => Some(hiding(
                        "* 1 FETCH (UID 1 X-HIDE (a ",
                        &format!("))\r\n{}", nested_fetch_500()),
                    )),
                    Attack::UnknownTokenHides => Some(hiding(
                        "* 1 FETCH (UID 1 X-HIDE a",
                        &format!(")\r\n{}", nested_fetch_500()),
                    )),
                    _ => None,
                };
                if let Some(hidden) = hidden {
                    out.write_all(hidden.as_bytes())?;
                    hold(&mut input);
                    return Ok(());
                }
                out.write_all(
                    format!(
                        "* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n\
                         {tag} OK [READ-ONLY] done\r\n"
                    )
                    .as_bytes(),
                )?;
            }
            "UID" if rest.starts_with("FETCH") && rest.contains("RFC822.SIZE") => {
                if attack == Attack::DripListing {
                    let mut n = 1u64;
                    loop {
                        let l = format!(
                            "* {n} FETCH (UID {n} RFC822.SIZE 100 INTERNALDATE \"01-Sep-2025 10:00:00 +0000\")\r\n"
                        );
                        if out.write_all(l.as_bytes()).is_err() {
                            return Ok(());
                        }
                        written.fetch_add(l.len() as u64, Ordering::Relaxed);
                        n += 1;
                        thread::sleep(Duration::from_millis(200));
                    }
                }
                out.write_all(
                    format!(
                        "* 1 FETCH (UID 1 RFC822.SIZE {} INTERNALDATE \"01-Sep-2025 10:00:00 +0000\")\r\n\
                         {tag} OK done\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )?;
            }
            "UID" if rest.starts_with("FETCH") => match attack {
                Attack::NestedFetch => {
                    out.write_all(format!("* 1 FETCH (UID 1 BODYSTRUCTURE {}", deep()).as_bytes())?;
                    hold(&mut input);
                    return Ok(());
                }
                Attack::HugeLiteral => {
                    out.write_all(b"* 1 FETCH (UID 1 BODY[] {4294967296}\r\n")?;
                    forever(&mut out, &[b'z'; 16 * 1024], Duration::ZERO, written);
                    return Ok(());
                }
                _ => {
                    out.write_all(
                        format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", body.len()).as_bytes(),
                    )?;
                    out.write_all(&body)?;
                    out.write_all(format!(")\r\n{tag} OK done\r\n").as_bytes())?;
                }
            },
            "LOGOUT" => {
                out.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())?;
                return Ok(());
            }
            _ => out.write_all(format!("{tag} OK done\r\n").as_bytes())?,
        }
    }
}

fn pop3(stream: TcpStream, attack: Attack, written: &AtomicU64) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    if greeting_attack(&mut out, &mut input, attack, "+OK", written) {
        return Ok(());
    }
    out.write_all(b"+OK hostile ready\r\n")?;
    let body = served_body(attack, stream_port(&out));
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        match verb.as_str() {
            "CAPA" => {
                let nested = if attack == Attack::NestedUntagged {
                    deep()
                } else {
                    String::new()
                };
                out.write_all(
                    format!("+OK\r\nUSER\r\nUIDL\r\nSTLS\r\n{nested}\r\n.\r\n").as_bytes(),
                )?
            }
            "STLS" => match attack {
                Attack::StartTlsRefused(reply) => {
                    out.write_all(format!("{reply}\r\n").as_bytes())?
                }
                _ => {
                    out.write_all(b"+OK begin TLS\r\n+OK injected\r\n")?;
                    hold(&mut input);
                    return Ok(());
                }
            },
            "USER" | "PASS" | "DELE" | "NOOP" => out.write_all(b"+OK\r\n")?,
            "STAT" => out.write_all(format!("+OK 1 {}\r\n", body.len()).as_bytes())?,
            "UIDL" if matches!(attack, Attack::EndlessListing | Attack::DripListing) => {
                out.write_all(b"+OK\r\n")?;
                let pause = if attack == Attack::DripListing {
                    Duration::from_millis(200)
                } else {
                    Duration::ZERO
                };
                let mut n = 1u64;
                loop {
                    let l = format!("{n} uidl-{n}\r\n");
                    if out.write_all(l.as_bytes()).is_err() {
                        return Ok(());
                    }
                    written.fetch_add(l.len() as u64, Ordering::Relaxed);
                    n += 1;
                    if !pause.is_zero() {
                        thread::sleep(pause);
                    }
                }
            }
            "UIDL" => out.write_all(b"+OK\r\n1 uidl-1\r\n.\r\n")?,
            "LIST" => out.write_all(format!("+OK\r\n1 {}\r\n.\r\n", body.len()).as_bytes())?,
            "RETR" if attack == Attack::HugeLiteral => {
                out.write_all(b"+OK\r\n")?;
                forever(&mut out, &[b'z'; 16 * 1024], Duration::ZERO, written);
                return Ok(());
            }
            "RETR" if attack == Attack::NestedFetch => {
                out.write_all(format!("+OK\r\n{SAMPLE}{}\r\n.\r\n", deep()).as_bytes())?
            }
            "RETR" => {
                out.write_all(b"+OK\r\n")?;
                out.write_all(&body)?;
                out.write_all(b".\r\n")?;
            }
            "QUIT" => {
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"-ERR unknown\r\n")?,
        }
    }
}

fn smtp(stream: TcpStream, attack: Attack, written: &AtomicU64) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    if greeting_attack(&mut out, &mut input, attack, "220", written) {
        return Ok(());
    }
    out.write_all(b"220 hostile ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" if attack == Attack::EndlessListing => {
                forever(&mut out, b"250-PIPELINING\r\n", Duration::ZERO, written);
                return Ok(());
            }
            "EHLO" if attack == Attack::NestedUntagged => {
                out.write_all(format!("250-hostile\r\n250-{}\r\n250 SIZE\r\n", deep()).as_bytes())?
            }
            "EHLO" => out.write_all(b"250-hostile\r\n250-STARTTLS\r\n250 PIPELINING\r\n")?,
            "STARTTLS" => match attack {
                Attack::StartTlsRefused(reply) => {
                    out.write_all(format!("{reply}\r\n").as_bytes())?
                }
                _ => {
                    out.write_all(b"220 go ahead\r\n250 injected\r\n")?;
                    hold(&mut input);
                    return Ok(());
                }
            },
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"250 ok\r\n")?,
        }
    }
}

/// The server's own port, as the connection's local address says.
fn stream_port(s: &TcpStream) -> u16 {
    s.local_addr().map(|a| a.port()).unwrap_or(0)
}
