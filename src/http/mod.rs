//! The HTTP side on `status_listen`: the status page `/`, `/status`, `/healthz`, `/metrics`, and the
//! API under `/api/v1/`. It reads the store through read transactions and never waits on the
//! writer; tiny_http answers each connection on a thread of its own, so a slow client holds
//! only that thread. With `status_tls_cert`/`status_tls_key` it serves HTTPS through [`tls`].

mod activities;
mod alert_filter;
mod answer_head;
mod api;
pub mod body;
pub mod client;
mod control;
mod control_peer;
mod cursor;
mod detail;
mod error;
mod events;
pub mod filter;
pub mod front;
pub mod guard;
mod openapi;
mod outbox_queue;
pub mod page;
mod page_actions;
pub mod prometheus;
mod status;
mod status_stream;
mod tls;
mod tracking;
mod views;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tiny_http::{Header, Method, Request, Response, Server};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::engine::Command;
use crate::metrics::Metrics;
use crate::store::{Store, StoreWriter};

pub use status::{test_full, test_summary};

/// Threads taking requests off the listener.
const WORKERS: usize = 4;
/// `/healthz` fails when the scheduler has not looped for this long.
pub const HEARTBEAT_STALE_SECONDS: i64 = 30;

pub struct StatusServer {
    /// The listener behind the front and the control socket, each with its socket file.
    servers: Vec<(Arc<Server>, std::path::PathBuf)>,
    workers: Vec<(usize, JoinHandle<()>)>,
    /// Set by `stop`: a worker's `recv` failing then means "stop", not an error to ride out.
    stopping: Arc<AtomicBool>,
    /// The control front's socket file (its listener ends with the runtime).
    control_socket: std::path::PathBuf,
}

/// Threads answering the control socket (the CLI: one operator at a time, mostly).
const CONTROL_WORKERS: usize = 2;

/// The control socket in the data folder: `sidesync status`, `approve`, `test`, `alerts`,
/// `outbox` and `send` reach the running appliance here, whatever the HTTP settings.
pub fn control_socket_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("control.sock")
}

/// A tiny_http server on a fresh Unix socket at `path` with file mode `mode`.
fn unix_server(path: &std::path::Path, mode: u32) -> Result<Server, String> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let server =
        Server::http_unix(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(server)
}

/// The control socket's listener at `path`, mode 0660 (the service's user and group).
fn control_listener(path: &std::path::Path) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(listener)
}

#[derive(Clone)]
pub struct StatusContext {
    /// The config now (a reload replaces it; `config()` reads it).
    pub live_config: crate::live::Live<Config>,
    pub store: Store,
    pub heartbeat: Arc<AtomicI64>,
    pub started_at: DateTime<Utc>,
    /// For the API: approvals go through the writer, tests through the engine.
    pub writer: Option<StoreWriter>,
    pub commands: Option<mpsc::Sender<Command>>,
    pub outbox_wake: Arc<tokio::sync::Notify>,
    pub metrics: Arc<Metrics>,
    /// What the tracking decision knows of the config (queued email is correlated with it).
    pub directory: crate::live::Live<crate::tracking::decision::Directory>,
    /// The outcome of the last reload (None: none since the start).
    pub reload: Arc<std::sync::Mutex<Option<ReloadOutcome>>>,
    /// Mailboxes whose Test & Enable, started through the API, has not answered yet.
    pub tests_running: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Emails queued per mailbox this minute (`outbox_max_per_minute`).
    pub send_rate: Arc<std::sync::Mutex<crate::outbox::rate::SendRate>>,
}

/// What the last reload did, for `/status` and the page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    pub at: String,
    /// `applied` or `refused`.
    pub result: &'static str,
    /// Why it was refused: each config error as FILE:LINE:COL: message.
    pub errors: Vec<String>,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// Settings that wait for a restart.
    pub at_restart: Vec<&'static str>,
}

impl StatusContext {
    pub fn config(&self) -> Arc<Config> {
        self.live_config.get()
    }
}

impl StatusServer {
    /// Listens on `status_listen`: plain HTTP, or HTTPS through the TLS front run on `runtime`.
    pub fn start(
        ctx: StatusContext,
        runtime: &tokio::runtime::Handle,
    ) -> Result<StatusServer, String> {
        let addr = ctx.config().appliance.status_listen;
        let tls = match &ctx.config().appliance.status_tls {
            None => None,
            Some(t) => Some(tls::acceptor(&t.cert, &t.key)?),
        };
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on {addr} for the status page: {e}"))?;
        // tiny_http never faces the network: the front relays to it on a private Unix socket.
        let socket = tls::socket_path(&ctx.config().appliance.data_dir);
        let server = unix_server(&socket, 0o600)?;
        // The operator's door: the service's user and its group (admins added to it) may
        // connect; the control front reads who did and relays to tiny_http's own socket, which
        // only the service opens.
        let control_path = control_socket_path(&ctx.config().appliance.data_dir);
        let control_inner = ctx.config().appliance.data_dir.join("control-relay.sock");
        let control = unix_server(&control_inner, 0o600)?;
        let control_listener = control_listener(&control_path)?;
        let allowed_hosts = ctx.config().appliance.status_allowed_hosts.clone();
        if allowed_hosts.is_empty() {
            tracing::warn!(
                %addr,
                "the status listener answers any Host name: set status_allowed_hosts to the names \
                 clients use, against DNS rebinding"
            );
        }
        runtime.spawn(front::serve(front::Front {
            listener,
            tls,
            socket: socket.clone(),
            limits: front::Limits {
                body_deadline: ctx.config().appliance.status_body_timeout,
                ..front::Limits::default()
            },
            allowed_hosts,
        }));
        runtime.spawn(control::serve(
            control_listener,
            control_inner.clone(),
            front::Limits {
                body_deadline: ctx.config().appliance.status_body_timeout,
                ..front::Limits::default()
            },
        ));
        let servers = vec![
            (Arc::new(server), socket),
            (Arc::new(control), control_inner),
        ];
        let mut workers = Vec::new();
        let stopping = Arc::new(AtomicBool::new(false));
        for (index, (server, _)) in servers.iter().enumerate() {
            let (origin, count) = if index == 0 {
                (Origin::Front, WORKERS)
            } else {
                (Origin::Control, CONTROL_WORKERS)
            };
            for n in 0..count {
                let server = server.clone();
                let ctx = ctx.clone();
                let stopping = stopping.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("http-{index}-{n}"))
                    .spawn(move || {
                        worker(&server, &ctx.metrics, &stopping, |r| {
                            handle(&ctx, r, origin)
                        })
                    });
                if let Ok(handle) = spawned {
                    workers.push((index, handle));
                }
            }
        }
        Ok(StatusServer {
            servers,
            workers,
            stopping,
            control_socket: control_path,
        })
    }

    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for (index, _) in &self.workers {
            self.servers[*index].0.unblock();
        }
        for (_, w) in self.workers {
            let _ = w.join();
        }
        for (_, path) in self.servers {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(&self.control_socket);
    }
}

/// One HTTP worker: takes requests until the server stops. It never dies of a request: a panic
/// while answering is caught and counted (the request, dropped while unwinding, answers 500 on
/// its own), and should one escape anyway — from tiny_http's code between requests — the loop
/// starts again, counted as a restart. A `recv` error that is not the stop (tiny_http hands one
/// worker its listener's accept error) is logged and ridden out.
fn worker(server: &Server, metrics: &Metrics, stopping: &AtomicBool, answer: impl Fn(Request)) {
    serve_requests(|| server.recv(), metrics, stopping, answer)
}

/// [`worker`]'s loop over any source of requests (the tests drive it with one that panics).
fn serve_requests<R>(
    recv: impl Fn() -> std::io::Result<R>,
    metrics: &Metrics,
    stopping: &AtomicBool,
    answer: impl Fn(R),
) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    loop {
        // Unwind safety: a request shares nothing mutable with the next but the context's
        // locks and atomics, and a poisoned lock is already treated as an error where taken.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            loop {
                match recv() {
                    Ok(request) => {
                        if catch_unwind(AssertUnwindSafe(|| answer(request))).is_err() {
                            metrics.http_handler_panics.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                "answering an HTTP request panicked; the worker goes on"
                            );
                        }
                    }
                    Err(_) if stopping.load(Ordering::SeqCst) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "the HTTP listener failed; the worker waits on")
                    }
                }
            }
        }));
        if ran.is_ok() {
            return;
        }
        metrics.http_worker_restarts.fetch_add(1, Ordering::Relaxed);
        tracing::error!("an HTTP worker's loop panicked; it starts again");
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
    problem(&error::ApiError {
        status: code,
        kind: error::kind_of(code),
        message: message.to_string(),
        extra: None,
    })
}

/// An error as RFC 9457 problem+json; a 401 says how to authenticate.
fn problem(e: &error::ApiError) -> Answer {
    let mut answer = Response::from_string(e.body())
        .with_header(header("application/problem+json"))
        .with_status_code(e.status);
    if e.status == 401 {
        let challenge = if e.kind == "invalid-token" {
            "Bearer realm=\"sidesync\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"sidesync\""
        };
        if let Ok(h) = Header::from_bytes(&b"WWW-Authenticate"[..], challenge.as_bytes()) {
            answer.add_header(h);
        }
    }
    answer
}

/// The client's address, as the front says (tiny_http itself only sees the Unix socket, which
/// only the front can reach).
pub(crate) fn peer(request: &Request) -> Option<std::net::IpAddr> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(front::PEER_HEADER))
        .and_then(|h| h.value.as_str().trim().parse().ok())
}

/// Where a request came in: through the front (from the network, HTTP or HTTPS), or on the
/// control socket, whose front says which local user connected (`control.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Front,
    Control,
}

fn handle(ctx: &StatusContext, request: Request, origin: Origin) {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    // A long-poll waits on a thread of its own, not on one of the few workers.
    if events::is_long_poll(path, &url) && events::reserve_waiter() {
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("api-long-poll".into())
            .spawn(move || events::run_as_waiter(|| respond(&ctx, request, origin)));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a long-poll thread");
        }
        return;
    }
    respond(ctx, request, origin);
}

fn respond(ctx: &StatusContext, mut request: Request, origin: Origin) {
    let response = answer(ctx, &mut request, origin);
    let _ = request.respond(secured(response));
}

/// Every answer with the headers that keep a browser from doing more with it than showing it
/// (`guard::security_headers`).
fn secured(mut response: tiny_http::ResponseBox) -> tiny_http::ResponseBox {
    for (name, value) in guard::security_headers() {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    response
}

fn answer(ctx: &StatusContext, request: &mut Request, origin: Origin) -> tiny_http::ResponseBox {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    // Whose token opened the page (the mailbox page shows an admin its buttons).
    let mut caller = None;
    // Who may see what (`guard.rs`): mail content needs the token from everywhere, the overview
    // off loopback unless `status_public`; /healthz stays open for monitors. The API checks for
    // itself (and writes its audit line), and the control socket is the operator's.
    if origin == Origin::Front
        && !path.starts_with("/api/")
        && guard::needs_token(&path, peer(request), ctx.config().appliance.status_public)
    {
        let refused = if ctx.config().appliance.api_tokens.is_empty() {
            Err(error::err(
                403,
                "this page shows mail content, which needs the API token, and none is set: set \
                 api_token_file in [appliance]",
            ))
        } else {
            api::authorize(ctx, request).map(|c| caller = Some(c))
        };
        if let Err(e) = refused {
            let mut answer = problem(&e);
            // A browser asks for the token (any user name, the token as password) on Basic.
            if e.status == 401
                && guard::browser_page(&path)
                && let Ok(h) = Header::from_bytes(
                    &b"WWW-Authenticate"[..],
                    &b"Basic realm=\"sidesync\", charset=\"UTF-8\""[..],
                )
            {
                answer.add_header(h);
            }
            return answer.boxed();
        }
    }
    if path == "/status" && *request.method() == Method::Get {
        // Streamed: at 100,000 mailboxes the document is about 100 MB.
        return match status_stream::start(ctx) {
            Ok(body) => Response::new(
                tiny_http::StatusCode(200),
                vec![header("application/json")],
                body,
                None,
                None,
            )
            .boxed(),
            Err(e) => json_error(500, &e).boxed(),
        };
    }
    if path == openapi::PATH {
        return match request.method() {
            Method::Get | Method::Head => Response::from_string(openapi::DOCUMENT)
                .with_header(header(openapi::MEDIA_TYPE))
                .boxed(),
            _ => json_error(405, &format!("{path} answers GET only")).boxed(),
        };
    }
    if path.starts_with("/api/v1/") {
        return match api::handle(ctx, request, &path, origin) {
            Ok(api::Answer::Json(code, v)) => json(code, &v).boxed(),
            Ok(api::Answer::Mime(raw)) => {
                // Saved, not shown: an email is whatever HTML its sender wrote.
                let id = path.split('/').nth(4).unwrap_or("");
                let mut answer = Response::from_data(raw).with_header(header("message/rfc822"));
                if let Ok(h) = Header::from_bytes(
                    &b"Content-Disposition"[..],
                    guard::raw_mime_disposition(id).as_bytes(),
                ) {
                    answer.add_header(h);
                }
                answer.boxed()
            }
            Err(e) => problem(&e).boxed(),
        };
    }
    // The mailbox page's buttons (`page_actions.rs`); only through the front, where a token
    // said who is asking.
    if origin == Origin::Front && page_actions::PageAction::of_path(&path).is_some() {
        return match page_actions::handle(ctx, request, caller.as_ref(), &path) {
            Ok(location) => {
                let mut answer = Response::from_string("").with_status_code(303);
                if let Ok(h) = Header::from_bytes(&b"Location"[..], location.as_bytes()) {
                    answer.add_header(h);
                }
                answer.boxed()
            }
            Err(e) => problem(&e).boxed(),
        };
    }
    page_or_endpoint(ctx, request.method(), &path, &url, caller.as_ref()).boxed()
}

fn page_or_endpoint(
    ctx: &StatusContext,
    method: &Method,
    path: &str,
    url: &str,
    caller: Option<&api::Caller>,
) -> Answer {
    match (method, path) {
        (Method::Get, "/") => match status_page(ctx, url) {
            Ok(html) => Response::from_string(html).with_header(header("text/html; charset=utf-8")),
            Err(e) => json_error(500, &e),
        },
        // HEAD too: a load balancer's or monitor's probe (tiny_http sends no body for it).
        (Method::Get | Method::Head, "/healthz") => match health(ctx) {
            Ok(()) => {
                Response::from_string("ok\n").with_header(header("text/plain; charset=utf-8"))
            }
            Err(reason) => Response::from_string(format!("unhealthy: {reason}\n"))
                .with_header(header("text/plain; charset=utf-8"))
                .with_status_code(503),
        },
        (Method::Get, "/metrics") => match status::collect(ctx, &ctx.config()) {
            Ok(data) => {
                Response::from_string(prometheus::render(&ctx.metrics, &gauges(ctx, &data)))
                    .with_header(header("text/plain; version=0.0.4; charset=utf-8"))
            }
            Err(e) => json_error(500, &e),
        },
        (Method::Get, p) if p.starts_with("/mailbox/") => {
            match detail::render(ctx, &p["/mailbox/".len()..], caller) {
                Ok(Some(html)) => {
                    Response::from_string(html).with_header(header("text/html; charset=utf-8"))
                }
                Ok(None) => json_error(404, &format!("no mailbox {} in the config", &p[9..])),
                Err(e) => json_error(500, &e),
            }
        }
        (_, "/" | "/healthz" | "/status" | "/metrics") => {
            json_error(405, &format!("{path} answers GET only"))
        }
        _ => json_error(404, &format!("nothing at {path}")),
    }
}

/// The HTML page: rows ordered and cut to one page before any of them becomes JSON.
fn status_page(ctx: &StatusContext, url: &str) -> Result<String, String> {
    let config = ctx.config();
    let data = status::collect(ctx, &config)?;
    let filter = filter::Filter::parse(url);
    let shown: Vec<usize> = (0..data.rows.len())
        .filter(|&i| {
            let r = &data.rows[i];
            filter.matches(&filter::Facts {
                address: &r.mailbox.email_address,
                name: r.mailbox.name.as_deref(),
                profile: r.mailbox.profile.as_deref(),
                failing: r.failing(),
                stale: r.stale(),
                not_processed: r.not_processed(),
                waiting_for_test: r.waiting_for_test(),
                first_sync: r.first_sync().is_some(),
            })
        })
        .collect();
    let keys: Vec<_> = shown
        .iter()
        .map(|&i| {
            let r = &data.rows[i];
            (r.failing(), r.error_at(), r.mailbox.email_address.as_str())
        })
        .collect();
    let order = page::order(&keys);
    let failing = data.rows.iter().filter(|r| r.failing()).count();
    let (page_no, pages) = page::paging(shown.len(), filter.page);
    let rows = order
        .iter()
        .skip((page_no - 1) * page::PAGE_SIZE)
        .take(page::PAGE_SIZE)
        .map(|&k| {
            let r = &data.rows[shown[k]];
            page::PageRow {
                data: r.json(),
                failing: r.failing(),
            }
        })
        .collect();
    let now = Utc::now();
    let profiles = ctx
        .config()
        .profiles
        .iter()
        .map(|p| {
            let mine = data
                .rows
                .iter()
                .filter(|r| r.mailbox.profile.as_deref() == Some(&p.name));
            let (mut mailboxes, mut failing_last_hour) = (0, 0);
            for r in mine {
                mailboxes += 1;
                if r.failing_within_hour(now) {
                    failing_last_hour += 1;
                }
            }
            page::ProfileLine {
                name: p.name.clone(),
                active: p.active,
                server_type: match p.server_type {
                    crate::config::ServerType::ImapSmtp => "imap_smtp",
                    crate::config::ServerType::Pop3Smtp => "pop3_smtp",
                },
                mailboxes,
                failing_last_hour,
            }
        })
        .collect();
    let series = ctx.metrics.series(now);
    Ok(page::render(&page::PageData {
        appliance: serde_json::json!(status::appliance_view(ctx, &data, queue_depth(ctx, &data))),
        profiles,
        rows,
        total: data.rows.len(),
        matching: shown.len(),
        filter: &filter,
        failing,
        page: page_no,
        pages,
        series: &series,
        data_bytes: ctx.store.file_size(),
        queue_depth: queue_depth(ctx, &data),
        now,
    }))
}

/// Work waiting: requests queued for the store writer plus emails waiting to be sent.
fn queue_depth(ctx: &StatusContext, data: &status::StatusData<'_>) -> u64 {
    let writer = ctx.writer.as_ref().map_or(0, |w| w.queue_depth() as u64);
    let outbox: u64 = data
        .rows
        .iter()
        .map(|r| r.outbox().queued + r.outbox().sending)
        .sum();
    writer + outbox
}

fn gauges(ctx: &StatusContext, data: &status::StatusData<'_>) -> prometheus::Gauges {
    let rows = &data.rows;
    let count =
        |f: &dyn Fn(&status::MailboxRow<'_>) -> bool| rows.iter().filter(|r| f(r)).count() as u64;
    let failing = count(&|r| r.failing());
    let not_processed = count(&|r| !r.failing() && r.not_processed());
    let waiting = count(&|r| !r.failing() && r.waiting_for_test());
    let ok = rows.len() as u64 - failing - not_processed - waiting;
    let outbox = |f: fn(&crate::store::OutboxCounts) -> u64| -> u64 {
        rows.iter().map(|r| f(r.outbox())).sum()
    };
    prometheus::Gauges {
        mailboxes: vec![
            ("ok", ok),
            ("failing", failing),
            ("not_processed", not_processed),
            ("waiting_for_test", waiting),
        ],
        outbox: vec![
            ("pending_send", outbox(|o| o.queued)),
            ("sending", outbox(|o| o.sending)),
            ("sent", outbox(|o| o.sent)),
            ("failed", outbox(|o| o.failed)),
        ],
        writer_queue: ctx.writer.as_ref().map_or(0, |w| w.queue_depth() as u64),
        activities_stored: data.activities_stored,
        decisions: data.decisions.clone(),
        uptime_seconds: (Utc::now() - ctx.started_at).num_seconds(),
        stale_mailboxes: count(&|r| r.stale()),
        store_bytes: ctx.store.file_size(),
        last_success: ctx
            .config()
            .profiles
            .iter()
            .map(|p| {
                let latest = rows
                    .iter()
                    .filter(|r| r.mailbox.profile.as_deref() == Some(&p.name))
                    .filter_map(|r| r.state.last_successful_sync_completed_on)
                    .max();
                (p.name.clone(), latest.map_or(0, |t| t.timestamp()))
            })
            .collect(),
        oldest_queued_age_seconds: ctx
            .store
            .outbox_oldest_waiting()
            .ok()
            .flatten()
            .map_or(0, |t| (Utc::now() - t).num_seconds().max(0)),
        started_at: ctx.started_at.timestamp(),
        first_syncs: {
            let now = Utc::now();
            let mut f = prometheus::FirstSyncs::default();
            for p in rows.iter().filter_map(|r| r.first_sync()) {
                f.running += 1;
                f.on_server += p.on_server;
                f.stored += p.done;
                f.per_second += p.rate(now);
                f.seconds_left = f.seconds_left.max(p.eta_seconds(now).unwrap_or(0));
            }
            f
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn context(dir: &std::path::Path) -> StatusContext {
        context_with(dir, "")
    }

    fn context_with(dir: &std::path::Path, rest: &str) -> StatusContext {
        let config = Config::parse_allowing_plaintext(
            std::path::Path::new("/etc/sidesync/sidesync.toml"),
            &format!("[appliance]\ndata_dir = \"{}\"\n{rest}", dir.display()),
        )
        .expect("config");
        let metrics = Arc::new(Metrics::new(std::iter::empty()));
        StatusContext {
            store: Store::open(dir).expect("store"),
            live_config: crate::live::Live::new(Arc::new(config)),
            reload: Arc::default(),
            heartbeat: Arc::new(AtomicI64::new(0)),
            started_at: Utc::now(),
            writer: None,
            commands: None,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            metrics,
            directory: crate::live::Live::new(Arc::default()),
            tests_running: Arc::default(),
            send_rate: Arc::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_reader_behind_the_retention_gets_410_with_the_oldest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context(dir.path());
        let writer = ctx.store.start_writer();
        let alert = |code: &str| crate::store::Alert {
            at: Utc::now(),
            level: crate::store::AlertLevel::Warning,
            scope: crate::store::AlertScope::Profile,
            mailbox: None,
            profile: Some("p".into()),
            code: code.into(),
            message: "m".into(),
            email: None,
        };
        let keep = Utc::now() - chrono::Duration::days(1);
        writer.alert(alert("one"), keep).await.expect("alert");
        writer.alert(alert("two"), keep).await.expect("alert");
        writer.flush().await.expect("flush");
        let page = tokio::task::block_in_place(|| events::list(&ctx, "/api/v1/events?after=0"))
            .expect("events");
        assert_eq!(page.events.len(), 2);
        // Both older than a 1 ms retention; the next commit prunes them.
        ctx.store
            .feed()
            .set_retention(std::time::Duration::from_millis(1));
        let newest = page.events[1].at;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Utc::now() <= newest + chrono::Duration::milliseconds(2) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        ctx.store.feed().force_prune();
        writer.alert(alert("three"), keep).await.expect("alert");
        writer.flush().await.expect("flush");
        let gone = tokio::task::block_in_place(|| events::list(&ctx, "/api/v1/events?after=0"))
            .err()
            .expect("410");
        assert_eq!((gone.status, gone.kind), (410, "events-expired"));
        let body: Value = serde_json::from_str(&gone.body()).expect("problem");
        assert_eq!(body["oldest_seq"], 3);
        assert_eq!(body["type"], "urn:sidesync:problem:events-expired");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("event_retention"))
        );
        // From the oldest kept on, the feed goes on.
        let page = tokio::task::block_in_place(|| events::list(&ctx, "/api/v1/events?after=2"))
            .expect("events");
        assert_eq!(page.events[0].seq, 3);
        writer.shutdown();
    }

    /// `GET /api/v1/alerts` filters by profile, scope and level; a mailbox's wall has its
    /// profile's Profile-scope alerts; a bad scope or level is a 400 problem naming the parameter.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_alerts_list_filters_by_profile_scope_and_level() {
        use crate::store::{Alert, AlertEmail, AlertLevel, AlertScope};
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context_with(
            dir.path(),
            "[[profile]]\nname = \"p\"\nincoming_server_location = \"h\"\n\
             [[profile]]\nname = \"q\"\nincoming_server_location = \"h\"\n\
             [[mailbox]]\nemail_address = \"a@x\"\nprofile = \"p\"\npassword = \"pw\"\n\
             [[mailbox]]\nemail_address = \"b@x\"\nprofile = \"q\"\npassword = \"pw\"\n",
        );
        let writer = ctx.store.start_writer();
        let alert = |scope, level, mailbox: Option<&str>, profile: &str, code: &str| Alert {
            at: Utc::now(),
            level,
            scope,
            mailbox: mailbox.map(str::to_string),
            profile: Some(profile.into()),
            code: code.into(),
            message: "m".into(),
            email: (scope == AlertScope::Email).then(|| AlertEmail {
                folder: Some("INBOX".into()),
                uidvalidity: Some(3),
                uid: Some(9),
                ..AlertEmail::default()
            }),
        };
        let keep = Utc::now() - chrono::Duration::days(1);
        for a in [
            alert(
                AlertScope::Email,
                AlertLevel::Warning,
                Some("a@x"),
                "p",
                "too_large",
            ),
            alert(
                AlertScope::Mailbox,
                AlertLevel::Error,
                Some("a@x"),
                "p",
                "disabled",
            ),
            alert(
                AlertScope::Profile,
                AlertLevel::Error,
                None,
                "p",
                "p_secret",
            ),
            alert(
                AlertScope::Mailbox,
                AlertLevel::Warning,
                Some("b@x"),
                "q",
                "b_retry",
            ),
            alert(
                AlertScope::Profile,
                AlertLevel::Information,
                None,
                "q",
                "q_mail",
            ),
        ] {
            writer.alert(a, keep).await.expect("alert");
        }
        writer.flush().await.expect("flush");
        let codes = |url: &str| -> Vec<String> {
            let (status, v) =
                tokio::task::block_in_place(|| api::alerts(&ctx, url)).expect("answered");
            assert_eq!(status, 200);
            v["alerts"]
                .as_array()
                .expect("list")
                .iter()
                .map(|a| a["code"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(codes("/api/v1/alerts").len(), 5);
        assert_eq!(codes("/api/v1/alerts?scope=email"), ["too_large"]);
        assert_eq!(
            codes("/api/v1/alerts?scope=profile"),
            ["q_mail", "p_secret"]
        );
        assert_eq!(codes("/api/v1/alerts?profile=q"), ["q_mail", "b_retry"]);
        assert_eq!(
            codes("/api/v1/alerts?profile=p&scope=mailbox"),
            ["disabled"]
        );
        assert_eq!(
            codes("/api/v1/alerts?level=error"),
            ["p_secret", "disabled"]
        );
        // The wall of a@x: its own alerts and profile p's, not profile q's.
        assert_eq!(
            codes("/api/v1/alerts?mailbox=A%40x"),
            ["p_secret", "disabled", "too_large"]
        );
        let (_, v) =
            tokio::task::block_in_place(|| api::alerts(&ctx, "/api/v1/alerts?scope=email"))
                .expect("answered");
        let email = &v["alerts"][0];
        assert_eq!(email["scope"], "email");
        assert_eq!(email["email"]["folder"], "INBOX");
        assert_eq!(email["email"]["uid"], 9);
        assert_eq!(email["email"]["uidvalidity"], 3);
        let (_, v) =
            tokio::task::block_in_place(|| api::alerts(&ctx, "/api/v1/alerts?scope=mailbox"))
                .expect("answered");
        assert!(v["alerts"][0]["email"].is_null(), "{v}");
        for (url, parameter) in [
            ("/api/v1/alerts?scope=everything", "scope"),
            ("/api/v1/alerts?level=fatal", "level"),
        ] {
            let e = tokio::task::block_in_place(|| api::alerts(&ctx, url)).expect_err("400");
            assert_eq!((e.status, e.kind), (400, "bad-request"));
            let body: Value = serde_json::from_str(&e.body()).expect("problem");
            assert_eq!(body["type"], "urn:sidesync:problem:bad-request");
            assert_eq!(body["parameter"], parameter);
            assert!(
                body["allowed"].as_array().is_some_and(|a| a.len() == 3),
                "{body}"
            );
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(&format!("{parameter} = "))),
                "{body}"
            );
        }
        writer.shutdown();
    }

    /// A request whose answering panics gets 500; the worker counts it and answers the next.
    #[test]
    fn a_panicking_request_leaves_the_worker_alive() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.sock");
        let server = Arc::new(unix_server(&path, 0o600).expect("server"));
        let metrics = Arc::new(Metrics::new(std::iter::empty()));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, metrics, stopping) = (server.clone(), metrics.clone(), stopping.clone());
            std::thread::spawn(move || {
                worker(&server, &metrics, &stopping, |r: Request| {
                    assert!(r.url() != "/boom", "a handler bug");
                    let _ = r.respond(Response::from_string("fine"));
                })
            })
        };
        let get = |target: &str| {
            let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            write!(s, "GET {target} HTTP/1.0\r\n\r\n").expect("send");
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("read");
            answer
        };
        // One worker: each answer below comes from the same thread, after the panics.
        for _ in 0..3 {
            let answer = get("/boom");
            assert!(answer.starts_with("HTTP/1.0 500"), "{answer}");
        }
        assert!(get("/ok").ends_with("fine"));
        assert_eq!(metrics.http_handler_panics.load(Ordering::Relaxed), 3);
        stopping.store(true, Ordering::SeqCst);
        server.unblock();
        thread.join().expect("the worker ends when stopped");
    }

    /// Should a panic escape the per-request catch (tiny_http's own code between requests), the
    /// loop starts again, counted, and goes on taking requests.
    #[test]
    fn a_worker_whose_loop_panics_starts_again_and_is_counted() {
        let metrics = Metrics::new(std::iter::empty());
        let stopping = AtomicBool::new(false);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let answered = std::sync::Mutex::new(Vec::new());
        serve_requests(
            || match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 2 => panic!("inside tiny_http's recv"),
                1 | 3 => Ok(calls.load(Ordering::SeqCst)),
                _ => {
                    stopping.store(true, Ordering::SeqCst);
                    Err(std::io::Error::other("unblocked"))
                }
            },
            &metrics,
            &stopping,
            |n| answered.lock().expect("lock").push(n),
        );
        assert_eq!(metrics.http_worker_restarts.load(Ordering::Relaxed), 2);
        assert_eq!(*answered.lock().expect("lock"), vec![2, 4]);
        assert_eq!(metrics.http_handler_panics.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn health_needs_a_looping_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ctx = context(dir.path());
        let never = health(&ctx).expect_err("the engine never looped");
        assert!(never.contains("scheduler has not run"), "{never}");
        ctx.heartbeat
            .store(Utc::now().timestamp(), Ordering::Relaxed);
        assert_eq!(health(&ctx), Ok(()));
        ctx.heartbeat
            .store(Utc::now().timestamp() - 120, Ordering::Relaxed);
        assert!(health(&ctx).is_err(), "a stalled engine is unhealthy");
        let answer = page_or_endpoint(&ctx, &Method::Get, "/healthz", "/healthz", None);
        assert_eq!(answer.status_code().0, 503);
        ctx.heartbeat
            .store(Utc::now().timestamp(), Ordering::Relaxed);
        let writer = ctx.store.start_writer();
        ctx.writer = Some(writer.clone());
        assert_eq!(health(&ctx), Ok(()));
        ctx.writer = None;
        writer.shutdown();
    }

    #[test]
    fn status_streams_a_document_of_many_chunks_whole() {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("tmp");
        let mut rest = String::from(
            "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"h\"\n",
        );
        for i in 0..1500 {
            rest.push_str(&format!(
                "[[mailbox]]\nemail_address = \"m{i}@x.example\"\npassword = \"pw\"\n"
            ));
        }
        let ctx = context_with(dir.path(), &rest);
        let mut body = String::new();
        status_stream::start(&ctx)
            .expect("started")
            .read_to_string(&mut body)
            .expect("read");
        assert!(
            body.len() > 4 * 64 * 1024,
            "{} bytes: one chunk",
            body.len()
        );
        let doc: Value = serde_json::from_str(&body).expect("one JSON document");
        let mailboxes = doc["mailboxes"].as_array().expect("mailboxes");
        assert_eq!(mailboxes.len(), 1500);
        let addresses: std::collections::HashSet<&str> = mailboxes
            .iter()
            .filter_map(|m| m["email_address"].as_str())
            .collect();
        assert_eq!(addresses.len(), 1500, "every mailbox once");
        assert!(doc["appliance"]["version"].is_string());
        assert!(doc["profiles"].is_array());
    }
}
