//! The operator's commands against a running appliance — `sidesync status`, `approve`, `test`,
//! `alerts`, `outbox`, `send` — over its control socket ([`crate::http::client`]). Each returns
//! the lines to print, or a sentence saying what went wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::http::client::{Reply, request};

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

fn call(socket: &Path, method: &str, target: &str, body: &str) -> Result<Reply, String> {
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

/// `sidesync status`: one summary line per profile and the appliance, then every mailbox that
/// is failing or not processed, with why. `all` lists every mailbox.
pub fn status(socket: &Path, all: bool) -> Result<Vec<String>, String> {
    let v = expect(call(socket, "GET", "/status", "")?, 200, "status")?;
    let a = &v["appliance"];
    let mailboxes = v["mailboxes"].as_array().cloned().unwrap_or_default();
    let failing = |m: &Value| {
        m["incoming_status"] == "failure" || m["outgoing_status"] == "failure" || m["stale"] == true
    };
    let not_processed = |m: &Value| m["processing"] == "not processed";
    let mut lines = vec![format!(
        "sidesync {} up {} s: {} mailboxes ({} failing, {} not processed), {} activities, \
         queue {}",
        a["version"].as_str().unwrap_or("?"),
        a["uptime_seconds"],
        mailboxes.len(),
        mailboxes.iter().filter(|m| failing(m)).count(),
        mailboxes.iter().filter(|m| not_processed(m)).count(),
        a["activities_stored"],
        a["queue_depth"],
    )];
    for p in v["profiles"].as_array().into_iter().flatten() {
        lines.push(format!(
            "profile {}: {}",
            p["name"].as_str().unwrap_or("?"),
            if p["active"] == false {
                "inactive"
            } else {
                "active"
            }
        ));
    }
    for m in &mailboxes {
        if !(all || failing(m) || not_processed(m)) {
            continue;
        }
        let why = m["last_error"]["message"]
            .as_str()
            .or(m["not_processed_reason"].as_str())
            .unwrap_or("");
        lines.push(format!(
            "{:<32} in:{:<14} out:{:<14} {}{}",
            m["email_address"].as_str().unwrap_or("?"),
            m["incoming_status"].as_str().unwrap_or("?"),
            m["outgoing_status"].as_str().unwrap_or("?"),
            if m["stale"] == true { "stale; " } else { "" },
            why
        ));
    }
    Ok(lines)
}

/// `sidesync approve ADDRESS [--approval …]`.
pub fn approve(socket: &Path, address: &str, approval: &str) -> Result<Vec<String>, String> {
    let body = serde_json::json!({ "approval": approval }).to_string();
    let target = format!("/api/v1/mailboxes/{}/approve", path_part(address));
    let v = expect(call(socket, "POST", &target, &body)?, 200, "approve")?;
    Ok(vec![format!(
        "{}: approval {}",
        v["email_address"].as_str().unwrap_or(address),
        v["approval"].as_str().unwrap_or(approval)
    )])
}

/// `sidesync alerts [--mailbox …] [--limit N]`: newest first.
pub fn alerts(socket: &Path, mailbox: Option<&str>, limit: usize) -> Result<Vec<String>, String> {
    let mut target = format!("/api/v1/alerts?limit={limit}");
    if let Some(m) = mailbox {
        target.push_str(&format!("&mailbox={}", path_part(m)));
    }
    let v = expect(call(socket, "GET", &target, "")?, 200, "alerts")?;
    Ok(v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} {:<7} {:<24} {}: {}",
                a["at"].as_str().unwrap_or("?"),
                a["level"].as_str().unwrap_or("?"),
                a["mailbox"]
                    .as_str()
                    .or(a["profile"].as_str())
                    .unwrap_or("appliance"),
                a["code"].as_str().unwrap_or("?"),
                a["message"].as_str().unwrap_or("")
            )
        })
        .collect())
}

/// `sidesync outbox [--status …] [--mailbox …] [--limit N]`, or one email by id.
pub fn outbox(
    socket: &Path,
    id: Option<u64>,
    status: Option<&str>,
    mailbox: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, String> {
    let line = |e: &Value| {
        format!(
            "{:>8} {:<13} {:<28} tries {} queued {}{}",
            e["id"],
            e["status"].as_str().unwrap_or("?"),
            e["mailbox"].as_str().unwrap_or("?"),
            e["tries"],
            e["queued_at"].as_str().unwrap_or("?"),
            e["last_reply"]
                .as_str()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        )
    };
    if let Some(id) = id {
        let v = expect(
            call(socket, "GET", &format!("/api/v1/outbox/{id}"), "")?,
            200,
            "outbox",
        )?;
        return Ok(vec![line(&v)]);
    }
    let mut target = format!("/api/v1/outbox?limit={limit}");
    if let Some(s) = status {
        target.push_str(&format!("&status={}", path_part(s)));
    }
    if let Some(m) = mailbox {
        target.push_str(&format!("&mailbox={}", path_part(m)));
    }
    let v = expect(call(socket, "GET", &target, "")?, 200, "outbox")?;
    Ok(v["outbox"]
        .as_array()
        .into_iter()
        .flatten()
        .map(line)
        .collect())
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
pub fn send(socket: &Path, args: SendArgs) -> Result<Value, String> {
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
        return Err(format!("the email was not queued: {}", reply.refusal()));
    }
    expect(reply, 202, "send")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_paths_are_escaped() {
        assert_eq!(path_part("a.b+c@x.example"), "a.b+c@x.example");
        assert_eq!(path_part("a/b c?"), "a%2Fb%20c%3F");
    }
}
