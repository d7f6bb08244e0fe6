//! A TCP proxy in front of a real server that counts connections and can misbehave: forward,
//! stall (accept, then never say a word), or drop (accept and close at once). It keeps the first
//! megabyte the clients sent, so a test can check what went over the wire in the clear.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Forward,
    Stall,
    Drop,
    /// Forward until a client sends this text, then pass nothing more of that client's on to
    /// the server (the command and what follows never arrive): the client is caught right after
    /// deciding to send it.
    HoldAt(&'static str),
    /// Forward until a client sends this text, then close that connection (both ways): only
    /// that client is cut off.
    DropAt(&'static str),
}

#[derive(Default)]
pub struct Counts {
    pub current: AtomicUsize,
    pub max: AtomicUsize,
    pub total: AtomicUsize,
}

pub struct Proxy {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    said: Arc<Mutex<Vec<u8>>>,
    holding: Arc<AtomicBool>,
    /// Connections closed by `DropAt`.
    pub dropped: Arc<AtomicUsize>,
}

/// Bytes from clients kept for [`Proxy::client_bytes`].
const KEEP_SAID: usize = 1 << 20;

/// One connection being counted. It ends when the client says LOGOUT/QUIT (the client can only
/// reuse its connection slot after the answer to that, so the count is causally exact) or closes.
#[derive(Clone)]
struct Live(Arc<Counts>, Arc<AtomicBool>);

impl Live {
    fn new(c: &Arc<Counts>) -> Live {
        let now = c.current.fetch_add(1, Ordering::SeqCst) + 1;
        c.max.fetch_max(now, Ordering::SeqCst);
        c.total.fetch_add(1, Ordering::SeqCst);
        Live(c.clone(), Arc::new(AtomicBool::new(false)))
    }

    fn end(&self) {
        if !self.1.swap(true, Ordering::SeqCst) {
            self.0.current.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if Arc::strong_count(&self.1) == 1 {
            self.end();
        }
    }
}

fn says_goodbye(chunk: &[u8]) -> bool {
    let text = String::from_utf8_lossy(chunk).to_ascii_uppercase();
    text.contains(" LOGOUT\r\n") || text.contains("QUIT\r\n")
}

/// The client side of a forwarded connection: what it said, and where to hold.
struct ClientSide {
    live: Live,
    said: Arc<Mutex<Vec<u8>>>,
    hold_at: Option<&'static str>,
    holding: Arc<AtomicBool>,
    drop_at: Option<(&'static str, Arc<AtomicUsize>)>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, client: Option<ClientSide>) {
    let mut buf = [0u8; 16 * 1024];
    let mut seen: Vec<u8> = Vec::new();
    // The last bytes seen: a command may arrive in several pieces.
    let mut tail: Vec<u8> = Vec::new();
    while let Ok(n) = from.read(&mut buf) {
        if let Some(c) = &client {
            tail.extend_from_slice(&buf[..n]);
            if says_goodbye(&tail) {
                c.live.end();
            }
            let keep = tail.len().saturating_sub(32);
            tail.drain(..keep);
            if let Ok(mut said) = c.said.lock() {
                let room = KEEP_SAID.saturating_sub(said.len()).min(n);
                said.extend_from_slice(&buf[..room]);
            }
            if let Some((pattern, dropped)) = &c.drop_at {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(pattern) {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    break;
                }
                let keep = seen.len().saturating_sub(pattern.len());
                seen.drain(..keep);
            }
            if let Some(pattern) = c.hold_at {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(pattern) {
                    c.holding.store(true, Ordering::SeqCst);
                }
                let keep = seen.len().saturating_sub(pattern.len());
                seen.drain(..keep);
                if c.holding.load(Ordering::SeqCst) {
                    if n == 0 {
                        break;
                    }
                    continue;
                }
            }
        }
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if let Some(c) = &client {
        c.live.end();
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Proxy {
    pub fn start(target_port: u16, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(Mutex::new(mode));
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let said = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (m, c, s, w, h, dr) = (
            mode.clone(),
            counts.clone(),
            stop.clone(),
            said.clone(),
            holding.clone(),
            dropped.clone(),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let live = Live::new(&c);
                let mode = *m.lock().expect("mode");
                let (w, h, dr) = (w.clone(), h.clone(), dr.clone());
                thread::spawn(move || {
                    match mode {
                        Mode::Drop => live.end(),
                        Mode::Stall => {
                            // Hold the connection until the client gives up.
                            let mut c = client;
                            let mut buf = [0u8; 1024];
                            while c.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
                            live.end();
                        }
                        Mode::Forward | Mode::HoldAt(_) | Mode::DropAt(_) => {
                            let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                                live.end();
                                return;
                            };
                            let (c2, s2) = (
                                client.try_clone().expect("clone"),
                                server.try_clone().expect("clone"),
                            );
                            let hold_at = match mode {
                                Mode::HoldAt(p) => Some(p),
                                _ => None,
                            };
                            let drop_at = match mode {
                                Mode::DropAt(p) => Some((p, dr)),
                                _ => None,
                            };
                            let side = ClientSide {
                                live,
                                said: w,
                                hold_at,
                                holding: h,
                                drop_at,
                            };
                            let up = thread::spawn(move || pump(c2, s2, Some(side)));
                            pump(server, client, None);
                            let _ = up.join();
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            mode,
            counts,
            stop,
            said,
            holding,
            dropped,
        }
    }

    /// True once a client sent the `HoldAt` text and is being held.
    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::SeqCst)
    }

    /// What clients sent through the proxy (the first megabyte), as it went over the wire.
    pub fn client_bytes(&self) -> Vec<u8> {
        self.said.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn current(&self) -> usize {
        self.counts.current.load(Ordering::SeqCst)
    }

    pub fn max(&self) -> usize {
        self.counts.max.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        self.counts.total.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
