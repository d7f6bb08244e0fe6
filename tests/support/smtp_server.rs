//! A small SMTP server for fault cases dovecot and smtp-sink cannot play: it refuses recipients
//! whose address contains "reject" (550) or "later" (450), takes everything else, and keeps the
//! messages it took. Plaintext, any AUTH accepted, PIPELINING offered. It can be told to hold:
//! once it has taken N messages, the next ones are taken (kept) but never answered, so a client
//! is provably in the middle of a send until it goes away. Like postfix, it refuses a MAIL FROM
//! while a transaction is open (503): after a refused transaction the client must RSET.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub recipients: Vec<String>,
    pub data: String,
}

pub struct SmtpServer {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Gate>,
}

/// The hold: after `after` messages (`usize::MAX`: never), take messages without answering.
/// Also counts what clients did.
struct Gate {
    after: AtomicUsize,
    held: AtomicUsize,
    rsets: AtomicUsize,
    connections: AtomicUsize,
    /// Look, before answering a message's end, whether the next command came with it.
    watch_ahead: std::sync::atomic::AtomicBool,
    /// Messages whose end came with the next MAIL FROM in the same write.
    envelopes_ahead: AtomicUsize,
}

fn session(
    stream: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Gate>,
) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    gate.connections.fetch_add(1, Ordering::SeqCst);
    out.write_all(b"220 test-smtp ready\r\n")?;
    // `open`: a MAIL FROM was taken and its transaction has not ended.
    let (mut from, mut rcpts, mut open) = (String::new(), Vec::new(), false);
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-test-smtp\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n".into()
        } else if upper.starts_with("AUTH") {
            "235 2.7.0 ok\r\n".into()
        } else if upper.starts_with("MAIL FROM:") && open {
            "503 5.5.1 Error: nested MAIL command\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().trim_matches(['<', '>']).to_string();
            rcpts.clear();
            open = true;
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let a = cmd[8..].trim().trim_matches(['<', '>']).to_string();
            if a.contains("reject") {
                format!("550 5.1.1 <{a}>: no such user\r\n")
            } else if a.contains("later") {
                format!("450 4.2.1 <{a}>: try again later\r\n")
            } else {
                rcpts.push(a);
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper == "DATA" && rcpts.is_empty() {
            "554 5.5.1 Error: no valid recipients\r\n".into()
        } else if upper == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            open = false;
            if gate.watch_ahead.load(Ordering::SeqCst) {
                // A client that pipelines across messages sent the next envelope with this end,
                // before any answer: it is there at once. One that waits for the answer sends
                // nothing, and the look gives up after a moment.
                input
                    .get_ref()
                    .set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
                let next = input.fill_buf().map(|b| b.to_vec()).unwrap_or_default();
                input.get_ref().set_read_timeout(None)?;
                if next.to_ascii_uppercase().starts_with(b"MAIL FROM:") {
                    gate.envelopes_ahead.fetch_add(1, Ordering::SeqCst);
                }
            }
            let taken = received.lock().map_or(0, |mut r| {
                r.push(Received {
                    from: from.clone(),
                    recipients: rcpts.clone(),
                    data,
                });
                r.len()
            });
            if taken > gate.after.load(Ordering::SeqCst) {
                // Taken, never answered: the client cannot know it arrived.
                gate.held.fetch_add(1, Ordering::SeqCst);
                while input.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    line.clear();
                }
                return Ok(());
            }
            "250 2.0.0 queued as test\r\n".into()
        } else if upper == "RSET" {
            gate.rsets.fetch_add(1, Ordering::SeqCst);
            open = false;
            "250 2.0.0 ok\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 what?\r\n".into()
        };
        out.write_all(reply.as_bytes())?;
    }
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Gate {
            after: AtomicUsize::new(usize::MAX),
            held: AtomicUsize::new(0),
            rsets: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            watch_ahead: std::sync::atomic::AtomicBool::new(false),
            envelopes_ahead: AtomicUsize::new(0),
        });
        let (r, g) = (received.clone(), gate.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, g) = (r.clone(), g.clone());
                thread::spawn(move || {
                    let _ = session(stream, r, g);
                });
            }
        });
        SmtpServer {
            port,
            received,
            gate,
        }
    }

    /// Takes `after` messages normally, then holds every next one unanswered.
    pub fn hold_after(&self, after: usize) {
        self.gate.after.store(after, Ordering::SeqCst);
    }

    /// Answers every message again.
    pub fn release(&self) {
        self.gate.after.store(usize::MAX, Ordering::SeqCst);
    }

    /// Messages taken and left unanswered so far.
    pub fn held(&self) -> usize {
        self.gate.held.load(Ordering::SeqCst)
    }

    /// From now on, counts the messages whose next envelope came with their end.
    pub fn watch_envelopes_ahead(&self) {
        self.gate.watch_ahead.store(true, Ordering::SeqCst);
    }

    pub fn envelopes_ahead(&self) -> usize {
        self.gate.envelopes_ahead.load(Ordering::SeqCst)
    }

    /// RSET commands taken so far.
    pub fn rsets(&self) -> usize {
        self.gate.rsets.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.gate.connections.load(Ordering::SeqCst)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
