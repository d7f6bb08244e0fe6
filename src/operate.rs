//! The operator's commands against a running appliance — `sidesync status`, `approve`, `test`,
//! `alerts`, `outbox`, `send` — over its control socket ([`crate::http::client`]). Each read
//! command returns an [`Answer`]: the API's JSON (`--json`), aligned tables for a person, and
//! whether it needs attention (exit status 1); or why it got no answer (not running: exit 3).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::http::client::{CallError, Reply, request};

/// Most calls answer at once; queuing a large email or a test's step may take a while.
const QUICK: Duration = Duration::from_secs(30);

/// One row of `sidesync test`'s table.
pub struct TestRow {
    pub mailbox: String,
    pub incoming: String,
    pub outgoing: String,
    pub reasons: Vec<String>,
}

impl TestRow {
    pub fn failed(&self) -> bool {
        self.incoming == "failure" || self.outgoing == "failure"
    }

    pub(crate) fn from_json(v: &serde_json::Value) -> TestRow {
        let dir = |d: &str| v[d]["status"].as_str().unwrap_or("unknown").to_string();
        let reasons = ["incoming", "outgoing"]
            .iter()
            .filter(|d| v[**d]["status"] == "failure")
            .filter_map(|d| v[*d]["reason"].as_str().map(|r| format!("{d}: {r}")))
            .collect();
        TestRow {
            mailbox: v["mailbox"].as_str().unwrap_or("").to_string(),
            incoming: dir("incoming"),
            outgoing: dir("outgoing"),
            reasons,
        }
    }
}

/// The control socket of the appliance that `config` (a file) runs: only its data folder is read.
pub fn control_socket(config: &Path) -> Result<PathBuf, String> {
    Config::data_dir_of(config).map(|d| crate::http::control_socket_path(&d))
}

/// What a read command found: the API's answer as it came (`--json` prints it), the same for a
/// person (aligned tables), and whether it needs the operator's attention (exit status 1).
#[derive(Debug)]
pub struct Answer {
    pub json: Value,
    pub text: String,
    pub attention: bool,
}

/// The CLI's exit statuses (documented in `--help`, the man page and the README).
pub mod exit {
    /// Done; nothing needs attention.
    pub const OK: u8 = 0;
    /// Something needs attention (per command: a failing or stale mailbox, an alert at error
    /// level, a failed email, a config mistake, a failed test), or the command failed.
    pub const ATTENTION: u8 = 1;
    /// The command line was wrong (clap's own).
    pub const USAGE: u8 = 2;
    /// The appliance is not running: no control socket, or nobody answers on it.
    pub const NOT_RUNNING: u8 = 3;
    /// `run` with a config it cannot use (sysexits.h EX_CONFIG; systemd does not restart it).
    pub const CONFIG: u8 = 78;
}

/// The exit status for a call that got no answer.
pub fn exit_status_of(e: &CallError) -> u8 {
    match e {
        CallError::NotRunning(_) => exit::NOT_RUNNING,
        CallError::Other(_) => exit::ATTENTION,
    }
}

fn call(socket: &Path, method: &str, target: &str, body: &str) -> Result<Reply, CallError> {
    request(socket, method, target, body, QUICK)
}

/// The API's JSON answer when it is `expected`, else its refusal as an error.
fn expect(reply: Reply, expected: u16, what: &str) -> Result<Value, String> {
    if reply.status == expected {
        serde_json::from_str(&reply.body).map_err(|e| format!("{what}: no JSON in the answer: {e}"))
    } else {
        Err(format!("{what}: {}", reply.refusal()))
    }
}

/// An address as it goes in a request path.
fn path_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"@.-_+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Columns aligned, no borders (so `grep`, `awk '{print $1}'` and eyes all work), one header
/// line; cells are never wrapped, whatever the terminal's width.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    for r in rows {
        t.add_row(r);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A mailbox of `/status` that is failing (either direction) or stale.
fn mailbox_failing(m: &Value) -> bool {
    m["incoming_status"] == "failure" || m["outgoing_status"] == "failure" || m["stale"] == true
}

/// `sidesync status` needs attention: a failing or stale mailbox, or a refused reload (the
/// appliance runs an older config than the file). A mailbox waiting for approval or a test is
/// not: it waits for a decision, nothing is broken.
pub fn status_needs_attention(v: &Value) -> bool {
    let failing = v["mailboxes"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(mailbox_failing));
    failing || v["appliance"]["last_reload"]["result"] == "refused"
}

/// `sidesync alerts` needs attention: an alert it lists is at error level.
pub fn alerts_need_attention(v: &Value) -> bool {
    v["alerts"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["level"] == "error"))
}

/// `sidesync outbox` needs attention: an email it lists failed.
pub fn outbox_needs_attention(v: &Value) -> bool {
    match v["outbox"].as_array() {
        Some(list) => list.iter().any(|e| e["status"] == "failed"),
        None => v["status"] == "failed",
    }
}

/// `sidesync status`: one summary line, each profile, then every mailbox that is failing or not
/// processed, with why. `all` lists every mailbox.
pub fn status(socket: &Path, all: bool) -> Result<Answer, CallError> {
    let v = expect(call(socket, "GET", "/status", "")?, 200, "status")?;
    let a = &v["appliance"];
    let mailboxes = v["mailboxes"].as_array().cloned().unwrap_or_default();
    let not_processed = |m: &Value| m["processing"] == "not processed";
    let mut out = vec![format!(
        "sidesync {} up {} s: {} mailboxes ({} failing, {} not processed), {} activities, \
         queue {}",
        a["version"].as_str().unwrap_or("?"),
        a["uptime_seconds"],
        mailboxes.len(),
        mailboxes.iter().filter(|m| mailbox_failing(m)).count(),
        mailboxes.iter().filter(|m| not_processed(m)).count(),
        a["activities_stored"],
        a["queue_depth"],
    )];
    if a["last_reload"]["result"] == "refused" {
        out.push(format!(
            "the last reload was refused: {}",
            text(&a["last_reload"]["errors"])
        ));
    }
    let profiles: Vec<Vec<String>> = v["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                text(&p["name"]),
                if p["active"] == false {
                    "inactive".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    if !profiles.is_empty() {
        out.push(String::new());
        out.push(table(&["profile", "state"], profiles));
    }
    let rows: Vec<Vec<String>> = mailboxes
        .iter()
        .filter(|m| all || mailbox_failing(m) || not_processed(m))
        .map(|m| {
            let why = m["last_error"]["message"]
                .as_str()
                .or(m["not_processed_reason"].as_str())
                .unwrap_or("");
            vec![
                text(&m["email_address"]),
                text(&m["incoming_status"]),
                text(&m["outgoing_status"]),
                text(&m["approval"]),
                format!("{}{why}", if m["stale"] == true { "stale; " } else { "" }),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push(String::new());
        out.push(table(
            &["mailbox", "incoming", "outgoing", "approval", "why"],
            rows,
        ));
    }
    Ok(Answer {
        attention: status_needs_attention(&v),
        text: out.join("\n"),
        json: v,
    })
}

/// `sidesync mailboxes [--failing] [--limit N]`: the mailboxes as `/status` shows them, in config
/// order (`GET /api/v1/mailboxes`, its first page). Needs attention when one listed is failing.
pub fn mailboxes(socket: &Path, failing: bool, limit: usize) -> Result<Answer, CallError> {
    let state = if failing { "failing" } else { "all" };
    let target = format!("/api/v1/mailboxes?state={state}&limit={limit}");
    let v = expect(call(socket, "GET", &target, "")?, 200, "mailboxes")?;
    let listed = v["mailboxes"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|m| {
            vec![
                text(&m["email_address"]),
                text(&m["profile"]),
                text(&m["processing"]),
                text(&m["approval"]),
                text(&m["incoming_status"]),
                text(&m["outgoing_status"]),
                if m["stale"] == true { "yes" } else { "" }.to_string(),
                text(&m["last_successful_sync_completed_on"]),
                text(&m["activities_stored"]),
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "no mailboxes".to_string()
    } else {
        table(
            &[
                "mailbox",
                "profile",
                "processing",
                "approval",
                "incoming",
                "outgoing",
                "stale",
                "last success",
                "activities",
            ],
            rows,
        )
    };
    let total = v["total"].as_u64().unwrap_or(listed.len() as u64);
    if total > listed.len() as u64 {
        out.push_str(&format!(
            "\n{} of {total} shown (--limit up to 1000; status --json has them all)",
            listed.len()
        ));
    }
    Ok(Answer {
        attention: listed.iter().any(mailbox_failing),
        text: out,
        json: v,
    })
}

/// `sidesync approve ADDRESS [--approval …]`.
pub fn approve(socket: &Path, address: &str, approval: &str) -> Result<Answer, CallError> {
    let body = serde_json::json!({ "approval": approval }).to_string();
    let target = format!("/api/v1/mailboxes/{}/approve", path_part(address));
    let v = expect(call(socket, "POST", &target, &body)?, 200, "approve")?;
    Ok(Answer {
        text: format!(
            "{}: approval {}",
            v["email_address"].as_str().unwrap_or(address),
            v["approval"].as_str().unwrap_or(approval)
        ),
        attention: false,
        json: v,
    })
}

/// `sidesync alerts [--mailbox …] [--limit N]`: newest first.
pub fn alerts(socket: &Path, mailbox: Option<&str>, limit: usize) -> Result<Answer, CallError> {
    let mut target = format!("/api/v1/alerts?limit={limit}");
    if let Some(m) = mailbox {
        target.push_str(&format!("&mailbox={}", path_part(m)));
    }
    let v = expect(call(socket, "GET", &target, "")?, 200, "alerts")?;
    let rows: Vec<Vec<String>> = v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                text(&a["at"]),
                text(&a["level"]),
                a["mailbox"]
                    .as_str()
                    .or(a["profile"].as_str())
                    .unwrap_or("appliance")
                    .to_string(),
                text(&a["code"]),
                text(&a["message"]),
            ]
        })
        .collect();
    Ok(Answer {
        text: if rows.is_empty() {
            "no alerts".into()
        } else {
            table(&["at", "level", "where", "code", "message"], rows)
        },
        attention: alerts_need_attention(&v),
        json: v,
    })
}

/// `sidesync outbox [--status …] [--mailbox …] [--limit N]`, or one email by id.
pub fn outbox(
    socket: &Path,
    id: Option<u64>,
    status: Option<&str>,
    mailbox: Option<&str>,
    limit: usize,
) -> Result<Answer, CallError> {
    let row = |e: &Value| {
        vec![
            text(&e["id"]),
            text(&e["status"]),
            text(&e["mailbox"]),
            text(&e["tries"]),
            text(&e["queued_at"]),
            text(&e["last_reply"]),
        ]
    };
    let header = ["id", "status", "mailbox", "tries", "queued", "last reply"];
    let v = if let Some(id) = id {
        expect(
            call(socket, "GET", &format!("/api/v1/outbox/{id}"), "")?,
            200,
            "outbox",
        )?
    } else {
        let mut target = format!("/api/v1/outbox?limit={limit}");
        if let Some(s) = status {
            target.push_str(&format!("&status={}", path_part(s)));
        }
        if let Some(m) = mailbox {
            target.push_str(&format!("&mailbox={}", path_part(m)));
        }
        expect(call(socket, "GET", &target, "")?, 200, "outbox")?
    };
    let rows: Vec<Vec<String>> = match v["outbox"].as_array() {
        Some(list) => list.iter().map(row).collect(),
        None => vec![row(&v)],
    };
    Ok(Answer {
        text: if rows.is_empty() {
            "no emails".into()
        } else {
            table(&header, rows)
        },
        attention: outbox_needs_attention(&v),
        json: v,
    })
}

/// Test & Enable of each selected mailbox through the running appliance: started, then polled
/// until it answers (each step of a test is bounded by the connection timeout).
pub fn test(socket: &Path, selected: &[String]) -> Result<Vec<TestRow>, String> {
    let mut rows = Vec::new();
    for address in selected {
        let target = format!("/api/v1/mailboxes/{}/test", path_part(address));
        let reply = call(socket, "POST", &target, "")?;
        if reply.status != 202 {
            return Err(format!(
                "the appliance refused the test of {address}: {}",
                reply.refusal()
            ));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(900);
        let v = loop {
            let reply = call(socket, "GET", &target, "")?;
            if reply.status == 200 {
                break expect(reply, 200, "test")?;
            }
            if reply.status != 202 || std::time::Instant::now() > deadline {
                return Err(format!(
                    "the test of {address} did not finish: {}",
                    reply.refusal()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        rows.push(TestRow::from_json(&v));
    }
    Ok(rows)
}

/// What `sidesync send` queues.
pub struct SendArgs {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attach: Vec<PathBuf>,
}

/// `sidesync send`: queues an email through the running appliance (which owns the store);
/// returns the answer (id and status).
pub fn send(socket: &Path, args: SendArgs) -> Result<Value, CallError> {
    use base64::Engine;
    let mut attachments = Vec::new();
    for path in &args.attach {
        let data =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "attachment".into());
        attachments.push(serde_json::json!({
            "filename": name,
            "content_type": "application/octet-stream",
            "content_base64": base64::engine::general_purpose::STANDARD.encode(data),
        }));
    }
    let body = serde_json::json!({
        "from": args.from, "to": args.to, "cc": args.cc, "bcc": args.bcc,
        "subject": args.subject, "text": args.text, "html": args.html, "attachments": attachments,
    });
    let reply = request(
        socket,
        "POST",
        "/api/v1/outbox",
        &body.to_string(),
        Duration::from_secs(120),
    )?;
    if reply.status != 202 {
        return Err(format!("the email was not queued: {}", reply.refusal()).into());
    }
    Ok(expect(reply, 202, "send")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_paths_are_escaped() {
        assert_eq!(path_part("a.b+c@x.example"), "a.b+c@x.example");
        assert_eq!(path_part("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn status_needs_attention_for_a_failing_or_stale_mailbox_or_a_refused_reload() {
        use serde_json::json;
        let ok =
            json!({"incoming_status": "success", "outgoing_status": "success", "stale": false});
        let waiting = json!({"incoming_status": "not_tested", "processing": "not processed"});
        assert!(!status_needs_attention(
            &json!({"mailboxes": [ok, waiting]})
        ));
        assert!(!status_needs_attention(&json!({"mailboxes": []})));
        for bad in [
            json!({"incoming_status": "failure"}),
            json!({"outgoing_status": "failure"}),
            json!({"incoming_status": "success", "stale": true}),
        ] {
            assert!(
                status_needs_attention(&json!({"mailboxes": [ok, bad]})),
                "{bad}"
            );
        }
        let refused = json!({"appliance": {"last_reload": {"result": "refused"}}, "mailboxes": []});
        assert!(status_needs_attention(&refused));
        let applied = json!({"appliance": {"last_reload": {"result": "applied"}}, "mailboxes": []});
        assert!(!status_needs_attention(&applied));
    }

    #[test]
    fn alerts_need_attention_at_error_level_only() {
        use serde_json::json;
        let list = |levels: &[&str]| json!({"alerts": levels.iter().map(|l| json!({"level": l})).collect::<Vec<_>>()});
        assert!(!alerts_need_attention(&list(&[])));
        assert!(!alerts_need_attention(&list(&["warning", "information"])));
        assert!(alerts_need_attention(&list(&["warning", "error"])));
    }

    #[test]
    fn the_outbox_needs_attention_when_an_email_failed() {
        use serde_json::json;
        let list = |s: &[&str]| json!({"outbox": s.iter().map(|s| json!({"status": s})).collect::<Vec<_>>()});
        assert!(!outbox_needs_attention(&list(&[
            "sent",
            "pending_send",
            "cancelled"
        ])));
        assert!(outbox_needs_attention(&list(&["sent", "failed"])));
        assert!(outbox_needs_attention(
            &json!({"id": 3, "status": "failed"})
        ));
        assert!(!outbox_needs_attention(&json!({"id": 3, "status": "sent"})));
    }

    #[test]
    fn a_table_aligns_its_columns_without_borders() {
        let t = table(
            &["mailbox", "incoming"],
            vec![
                vec!["a@x.example".into(), "failure".into()],
                vec!["longer@x.example".into(), "ok".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("MAILBOX "), "{t}");
        assert!(lines[1].starts_with("a@x.example "), "{t}");
        assert_eq!(lines[0].find("INCOMING"), lines[2].find("ok"), "{t}");
        assert_eq!(lines[1].find("failure"), lines[2].find("ok"), "{t}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t}");
    }
}
