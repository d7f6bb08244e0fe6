//! The HTTP side on `status_listen`: the status page `/`, `/status`, `/healthz`, `/metrics`, and the
//! API under `/api/v1/`. It reads the store through read transactions and never waits on the
//! writer; tiny_http answers each connection on a thread of its own, so a slow client holds
//! only that thread. With `status_tls_cert`/`status_tls_key` it serves HTTPS through [`tls`].

mod activities;
mod api;
pub mod client;
pub mod page;
pub mod prometheus;
mod status;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tiny_http::{Header, Method, Request, Response, Server};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::engine::Command;
use crate::metrics::Metrics;
use crate::store::{Store, StoreWriter};

pub use status::{status_document, test_full, test_summary};

/// Threads taking requests off the listener.
const WORKERS: usize = 4;
/// `/healthz` fails when the scheduler has not looped for this long.
const HEARTBEAT_STALE_SECONDS: i64 = 30;

pub struct StatusServer {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    /// The Unix socket behind the HTTPS front, removed on stop.
    socket: Option<std::path::PathBuf>,
}

#[derive(Clone)]
pub struct StatusContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub heartbeat: Arc<AtomicI64>,
    pub started_at: DateTime<Utc>,
    /// For the API: approvals go through the writer, tests through the engine.
    pub writer: Option<StoreWriter>,
    pub commands: Option<mpsc::Sender<Command>>,
    pub outbox_wake: Arc<tokio::sync::Notify>,
    pub metrics: Arc<Metrics>,
}

impl StatusServer {
    /// Listens on `status_listen`: plain HTTP, or HTTPS through the TLS front run on `runtime`.
    pub fn start(
        ctx: StatusContext,
        runtime: &tokio::runtime::Handle,
    ) -> Result<StatusServer, String> {
        let addr = ctx.config.appliance.status_listen;
        let mut socket_path = None;
        let server = match &ctx.config.appliance.status_tls {
            None => Server::http(addr)
                .map_err(|e| format!("cannot listen on {addr} for the status page: {e}"))?,
            Some(t) => {
                let acceptor = tls::acceptor(&t.cert, &t.key)?;
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| format!("cannot listen on {addr} for the status page: {e}"))?;
                let socket = tls::socket_path(&ctx.config.appliance.data_dir);
                let _ = std::fs::remove_file(&socket);
                let server = Server::http_unix(&socket).map_err(|e| {
                    format!("cannot listen on {} behind HTTPS: {e}", socket.display())
                })?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{}: {e}", socket.display()))?;
                runtime.spawn(tls::front(listener, acceptor, socket.clone()));
                socket_path = Some(socket);
                server
            }
        };
        let server = Arc::new(server);
        let workers = (0..WORKERS)
            .filter_map(|n| {
                let server = server.clone();
                let ctx = ctx.clone();
                std::thread::Builder::new()
                    .name(format!("http-{n}"))
                    .spawn(move || {
                        while let Ok(request) = server.recv() {
                            handle(&ctx, request);
                        }
                    })
                    .ok()
            })
            .collect();
        Ok(StatusServer {
            server,
            workers,
            socket: socket_path,
        })
    }

    pub fn stop(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        if let Some(s) = self.socket {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// A Content-Type header; only ever called with the static values below.
fn header(value: &'static str) -> Header {
    Header::from_bytes(&b"Content-Type"[..], value.as_bytes()).expect("static header is valid")
}

type Answer = Response<std::io::Cursor<Vec<u8>>>;

fn json(code: u16, v: &Value) -> Answer {
    Response::from_string(v.to_string())
        .with_header(header("application/json"))
        .with_status_code(code)
}

fn json_error(code: u16, message: &str) -> Answer {
    json(code, &serde_json::json!({ "error": message }))
}

fn handle(ctx: &StatusContext, mut request: Request) {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let response = if path.starts_with("/api/v1/") {
        match api::handle(ctx, &mut request, &path) {
            Ok(api::Answer::Json(code, v)) => json(code, &v),
            Ok(api::Answer::Mime(raw)) => {
                Response::from_data(raw).with_header(header("message/rfc822"))
            }
            Err(e) => json_error(e.status, &e.message),
        }
    } else {
        page_or_endpoint(ctx, request.method(), &path, &url)
    };
    let _ = request.respond(response);
}

fn page_or_endpoint(ctx: &StatusContext, method: &Method, path: &str, url: &str) -> Answer {
    match (method, path) {
        (Method::Get, "/") => match status_view(ctx) {
            Ok(doc) => {
                let page = url
                    .split_once("page=")
                    .and_then(|(_, p)| p.split('&').next()?.parse().ok())
                    .unwrap_or(1);
                let extras = page::PageExtras {
                    series: &ctx.metrics.series(Utc::now()),
                    data_bytes: ctx.store.file_size(),
                    queue_depth: queue_depth(ctx, &doc),
                    page,
                    now: Utc::now(),
                };
                Response::from_string(page::render(&doc, &extras))
                    .with_header(header("text/html; charset=utf-8"))
            }
            Err(e) => json_error(500, &e),
        },
        (Method::Get, "/healthz") => match health(ctx) {
            Ok(()) => {
                Response::from_string("ok\n").with_header(header("text/plain; charset=utf-8"))
            }
            Err(reason) => Response::from_string(format!("unhealthy: {reason}\n"))
                .with_header(header("text/plain; charset=utf-8"))
                .with_status_code(503),
        },
        (Method::Get, "/status") => match status_view(ctx) {
            Ok(doc) => json(200, &doc),
            Err(e) => json_error(500, &e),
        },
        (Method::Get, "/metrics") => match status_view(ctx) {
            Ok(doc) => Response::from_string(prometheus::render(&ctx.metrics, &gauges(ctx, &doc)))
                .with_header(header("text/plain; version=0.0.4; charset=utf-8")),
            Err(e) => json_error(500, &e),
        },
        (_, "/" | "/healthz" | "/status" | "/metrics") => {
            json_error(405, &format!("{path} answers GET only"))
        }
        _ => json_error(404, &format!("nothing at {path}")),
    }
}

/// The `/status` document with what only the running engine knows: next polls, queue depth.
pub(crate) fn status_view(ctx: &StatusContext) -> Result<Value, String> {
    let mut doc = status_document(ctx)?;
    let next = ctx.metrics.next_polls();
    if let Some(boxes) = doc["mailboxes"].as_array_mut() {
        for m in boxes {
            let t = m["email_address"]
                .as_str()
                .and_then(|a| next.get(a))
                .map(|t| t.to_rfc3339());
            m["next_poll"] = serde_json::json!(t);
        }
    }
    let depth = queue_depth(ctx, &doc);
    doc["appliance"]["data_bytes"] = serde_json::json!(ctx.store.file_size());
    doc["appliance"]["queue_depth"] = serde_json::json!(depth);
    Ok(doc)
}

/// Work waiting: requests queued for the store writer plus emails waiting to be sent.
fn queue_depth(ctx: &StatusContext, doc: &Value) -> u64 {
    let writer = ctx.writer.as_ref().map_or(0, |w| w.queue_depth() as u64);
    let outbox: u64 = doc["mailboxes"]
        .as_array()
        .map(|b| {
            b.iter()
                .map(|m| {
                    m["outbox"]["queued"].as_u64().unwrap_or(0)
                        + m["outbox"]["sending"].as_u64().unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0);
    writer + outbox
}

fn gauges(ctx: &StatusContext, doc: &Value) -> prometheus::Gauges {
    let empty = Vec::new();
    let boxes = doc["mailboxes"].as_array().unwrap_or(&empty);
    let count = |f: &dyn Fn(&Value) -> bool| boxes.iter().filter(|m| f(m)).count() as u64;
    let failing = count(&|m| page::is_failing(m));
    let not_processed = count(&|m| !page::is_failing(m) && m["processing"] == "not processed");
    let waiting = count(&|m| m["processing"] == "waiting for Test & Enable");
    let ok = boxes.len() as u64
        - failing
        - not_processed
        - waiting.min(boxes.len() as u64 - failing - not_processed);
    let outbox = |k: &str| -> u64 {
        boxes
            .iter()
            .map(|m| m["outbox"][k].as_u64().unwrap_or(0))
            .sum()
    };
    prometheus::Gauges {
        mailboxes: vec![
            ("ok", ok),
            ("failing", failing),
            ("not_processed", not_processed),
            ("waiting_for_test", waiting),
        ],
        outbox: vec![
            ("pending_send", outbox("queued")),
            ("sending", outbox("sending")),
            ("sent", outbox("sent")),
            ("failed", outbox("failed")),
        ],
        writer_queue: ctx.writer.as_ref().map_or(0, |w| w.queue_depth() as u64),
        activities_stored: doc["appliance"]["activities_stored"].as_u64().unwrap_or(0),
        uptime_seconds: (Utc::now() - ctx.started_at).num_seconds(),
    }
}

/// Healthy when the scheduler loops and the store answers a read.
fn health(ctx: &StatusContext) -> Result<(), String> {
    let beat = ctx.heartbeat.load(Ordering::Relaxed);
    let age = Utc::now().timestamp() - beat;
    if beat == 0 || age > HEARTBEAT_STALE_SECONDS {
        return Err(format!("the engine's scheduler has not run for {age} s"));
    }
    ctx.store.schema_version().map_err(|e| e.to_string())?;
    if ctx.writer.as_ref().is_some_and(StoreWriter::is_stopped) {
        return Err("the store writer has stopped".into());
    }
    Ok(())
}
