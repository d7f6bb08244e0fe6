//! The HTTP side: `GET /healthz` and `GET /status` on `status_listen`. It reads the store through
//! read transactions and never waits on the writer.

mod api;
pub mod client;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use tiny_http::{Header, Method, Request, Response, Server};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::engine::Command;
use crate::store::{Store, StoreWriter};

pub use status::{status_document, test_full, test_summary};

/// Threads answering requests: a slow client holds one of them, not the listener.
const WORKERS: usize = 4;
/// `/healthz` fails when the scheduler has not looped for this long.
const HEARTBEAT_STALE_SECONDS: i64 = 30;

pub struct StatusServer {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
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
}

impl StatusServer {
    pub fn start(ctx: StatusContext) -> Result<StatusServer, String> {
        let addr = ctx.config.appliance.status_listen;
        let server = Server::http(addr)
            .map_err(|e| format!("cannot listen on {addr} for the status page: {e}"))?;
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
        Ok(StatusServer { server, workers })
    }

    pub fn stop(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn json_header() -> Header {
    Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("static header is valid")
}

fn text_header() -> Header {
    Header::from_bytes(&b"Content-Type"[..], &b"text/plain; charset=utf-8"[..])
        .expect("static header is valid")
}

fn handle(ctx: &StatusContext, mut request: Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    if path.starts_with("/api/v1/") {
        let (code, body) = match api::handle(ctx, &mut request, &path) {
            Ok(answer) => answer,
            Err(e) => (e.status, serde_json::json!({ "error": e.message })),
        };
        let response = Response::from_string(body.to_string())
            .with_header(json_header())
            .with_status_code(code);
        let _ = request.respond(response);
        return;
    }
    let response = match (request.method(), path.as_str()) {
        (Method::Get, "/healthz") => match health(ctx) {
            Ok(()) => Response::from_string("ok\n").with_header(text_header()),
            Err(reason) => Response::from_string(format!("unhealthy: {reason}\n"))
                .with_header(text_header())
                .with_status_code(503),
        },
        (Method::Get, "/status") => match status_document(ctx) {
            Ok(doc) => Response::from_string(doc.to_string()).with_header(json_header()),
            Err(e) => Response::from_string(serde_json::json!({ "error": e }).to_string())
                .with_header(json_header())
                .with_status_code(500),
        },
        (_, "/healthz" | "/status") => Response::from_string("method not allowed\n")
            .with_header(text_header())
            .with_status_code(405),
        _ => Response::from_string("not found\n")
            .with_header(text_header())
            .with_status_code(404),
    };
    let _ = request.respond(response);
}

/// Healthy when the scheduler loops and the store answers a read.
fn health(ctx: &StatusContext) -> Result<(), String> {
    let beat = ctx.heartbeat.load(Ordering::Relaxed);
    let age = Utc::now().timestamp() - beat;
    if beat == 0 || age > HEARTBEAT_STALE_SECONDS {
        return Err(format!("the engine's scheduler has not run for {age} s"));
    }
    ctx.store.schema_version().map_err(|e| e.to_string())?;
    Ok(())
}
