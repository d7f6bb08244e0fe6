//! A webhook receiver for the tests, over HTTPS (the dovecot fixture's certificate), with
//! keep-alive: it checks every delivery's signature and records what arrived. The test makes
//! it answer 500, hang (no answer: the sender's timeout), or drop the connection, and back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET: &str = "whsec_c2lkZXN5bmMtdGVzdC13ZWJob29rLXNlY3JldA==";

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Fail = 1,
    Hang = 2,
    Drop = 3,
}

/// One delivery taken (answered 2xx).
#[derive(Clone, Debug)]
pub struct Received {
    pub seq: u64,
    pub kind: String,
    pub mailbox: Option<String>,
    pub body: serde_json::Value,
    /// When it arrived.
    pub at: Instant,
    pub at_utc: chrono::DateTime<chrono::Utc>,
}

pub struct Receiver {
    pub port: u16,
    mode: Arc<AtomicU8>,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Deliveries whose signature did not verify (or lacked one).
    pub bad_signatures: Arc<AtomicUsize>,
    /// Requests refused, hung or dropped on purpose.
    pub refused: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start(cert: &Path, key: &Path) -> Receiver {
        let config = super::tls_server_config(cert, key);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let r = Receiver {
            port: listener.local_addr().expect("addr").port(),
            mode: Arc::new(AtomicU8::new(Mode::Ok as u8)),
            received: Arc::default(),
            bad_signatures: Arc::default(),
            refused: Arc::default(),
        };
        let (mode, received, bad, refused) = (
            r.mode.clone(),
            r.received.clone(),
            r.bad_signatures.clone(),
            r.refused.clone(),
        );
        let key = sidesync::webhook::sign::key_of(SECRET);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let (config, mode, received, bad, refused, key) = (
                    config.clone(),
                    mode.clone(),
                    received.clone(),
                    bad.clone(),
                    refused.clone(),
                    key.clone(),
                );
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    // Requests on this connection until it closes.
                    loop {
                        let Some((headers, body)) = read_request(&mut tls) else {
                            return;
                        };
                        match mode.load(Ordering::SeqCst) {
                            1 => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                if respond(&mut tls, 500, "{\"error\":\"down\"}").is_err() {
                                    return;
                                }
                                continue;
                            }
                            2 => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                // No answer: hold the connection until the sender gives up.
                                let mut sink = [0u8; 1024];
                                while matches!(tls.read(&mut sink), Ok(n) if n > 0) {}
                                return;
                            }
                            3 => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            _ => {}
                        }
                        let header = |name: &str| {
                            headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        };
                        let (id, ts, sig) = (
                            header("webhook-id"),
                            header("webhook-timestamp"),
                            header("webhook-signature"),
                        );
                        let ok = ts.parse::<i64>().is_ok_and(|ts| {
                            sidesync::webhook::sign::verify(&key, &id, ts, &body, &sig)
                        });
                        if !ok {
                            bad.fetch_add(1, Ordering::SeqCst);
                        }
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        // The id is the event's own (store, seq and content), never a bare number.
                        let expected = v["seq"].as_u64().map(|seq| {
                            format!("evt_{}_{seq}_", v["store"].as_str().unwrap_or("?"))
                        });
                        if v["id"].as_str() != Some(id.as_str())
                            || !expected.is_some_and(|p| id.starts_with(&p))
                            || v["store"].as_str().is_none_or(|s| s.len() != 32)
                        {
                            bad.fetch_add(1, Ordering::SeqCst);
                        }
                        received.lock().expect("received").push(Received {
                            seq: v["seq"].as_u64().unwrap_or(0),
                            kind: v["type"].as_str().unwrap_or("").to_string(),
                            mailbox: v["mailbox"].as_str().map(str::to_string),
                            body: v,
                            at: Instant::now(),
                            at_utc: chrono::Utc::now(),
                        });
                        if respond(&mut tls, 204, "").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        r
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/hooks/sidesync?key=not-logged",
            self.port
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// Waits (with a deadline) until `check` holds for what arrived.
    pub fn wait_until(&self, what: &str, limit: Duration, check: impl Fn(&[Received]) -> bool) {
        super::wait_for(what, limit, || check(&self.received()).then_some(()));
    }
}

type Headers = Vec<(String, String)>;

fn read_request(tls: &mut impl Read) -> Option<(Headers, Vec<u8>)> {
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        if h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    // BufReader may have read ahead: the sender waits for each answer, so it did not.
    Some((headers, body))
}

fn respond(tls: &mut impl Write, status: u16, body: &str) -> std::io::Result<()> {
    let reason = if status < 300 { "OK" } else { "Error" };
    // One write: pieces would go out as separate segments and meet delayed ACKs.
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(answer.as_bytes())?;
    tls.flush()
}
