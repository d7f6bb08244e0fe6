//! `GET /mailbox/ADDRESS`: one mailbox in detail — its state, the last Test & Enable with its
//! transcripts, its alerts, recent activities and outbox. Server-rendered like the status page,
//! no script. Mail content (subjects, senders, transcripts): the token from everywhere, loopback
//! included (`guard.rs`).

use std::fmt::Write;

use chrono::Utc;
use serde_json::Value;

use super::StatusContext;
use super::page::{CSS, escape, progress_line, relative, text};

/// An address as it goes in a form's path (as the API's client escapes it).
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

/// The newest alerts, activities and outbox emails shown.
const RECENT: usize = 20;

/// The page, or None for an address the config does not have.
/// `caller`: whose token opened the page; an admin's gets the Approve and Test & Enable buttons
/// (`page_actions.rs`).
pub fn render(
    ctx: &StatusContext,
    address: &str,
    caller: Option<&super::api::Caller>,
) -> Result<Option<String>, String> {
    let address = super::error::percent_decode(address).to_ascii_lowercase();
    let config = ctx.config();
    let data = super::status::collect(ctx, &config)?;
    let Some(row) = data
        .rows
        .iter()
        .find(|r| r.mailbox.email_address == address)
    else {
        return Ok(None);
    };
    let m = row.json();
    let now = Utc::now();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>{a} — sidesync</title>\
         <style>{CSS}</style></head><body><p><a href=\"/\">← all mailboxes</a></p>\
         <h1 id=\"mailbox\">{a}</h1>{}",
        progress_line(&m["sync_progress"]),
        a = escape(&address),
    );
    if let Some((approve, test)) = super::page_actions::forms_for(ctx, caller, &address) {
        let target = escape(&path_part(&address));
        h.push_str("<div id=\"actions\">");
        if m["approval"] != "approved" {
            let _ = write!(
                h,
                "<form method=\"post\" action=\"/mailbox/{target}/approve\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Approve</button></form>",
                escape(&approve)
            );
        }
        let running = ctx
            .tests_running
            .lock()
            .map(|r| r.contains(&address))
            .unwrap_or(false);
        if running {
            h.push_str("<p id=\"test-running\">Test &amp; Enable running…</p>");
        } else {
            let _ = write!(
                h,
                "<form method=\"post\" action=\"/mailbox/{target}/test\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Test &amp; Enable</button></form>",
                escape(&test)
            );
        }
        h.push_str("</div>");
    }
    h.push_str("<h2>State</h2><table id=\"state\">");
    let mut field = |label: &str, v: String| {
        let _ = write!(h, "<tr><th>{label}</th><td>{}</td></tr>", escape(&v));
    };
    field("name", text(&m["name"]));
    field("profile", text(&m["profile"]));
    field("owner", text(&m["owner"]));
    field("processing", text(&m["processing"]));
    field("why not processed", text(&m["not_processed_reason"]));
    field("approval", text(&m["approval"]));
    for d in ["incoming", "outgoing"] {
        let e = &m[format!("{d}_enablement")];
        field(
            d,
            format!(
                "{} ({}{})",
                text(&m[format!("{d}_status")]),
                text(&e["state"]),
                e["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        );
    }
    field("stale", text(&m["stale"]));
    field(
        "last successful sync",
        relative(&m["last_successful_sync_completed_on"], now),
    );
    field(
        "last sync started",
        relative(&m["last_sync_started_on"], now),
    );
    field(
        "items in the last sync",
        text(&m["items_processed_last_sync"]),
    );
    field("activities stored", text(&m["activities_stored"]));
    field("emails skipped", text(&m["emails_skipped"]));
    field("track", text(&m["track"]));
    let skipped: Vec<String> = m["skip_automatic"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    field("automatic kinds skipped", skipped.join(", "));
    field(
        "Sent folder read",
        if m["track_sent"] == true { "yes" } else { "no" }.to_string(),
    );
    field("next poll", relative(&m["next_poll"], now));
    let err = &m["last_error"];
    field(
        "last error",
        if err.is_null() {
            String::new()
        } else {
            format!(
                "{} ({}, {} in a row, {})",
                text(&err["text"]),
                text(&err["code"]),
                text(&err["consecutive"]),
                relative(&err["at"], now)
            )
        },
    );
    h.push_str("</table>");

    h.push_str("<h2>Last Test &amp; Enable</h2>");
    match &row.state.last_test {
        None => h.push_str("<p>never tested</p>"),
        Some(t) => {
            let v = super::status::test_full(t);
            let _ = write!(
                h,
                "<p id=\"last-test\">{} · {} ms</p>",
                relative(&v["started_at"], now),
                text(&v["duration_ms"])
            );
            for d in ["incoming", "outgoing"] {
                let _ = write!(
                    h,
                    "<h3>{d}: {}{}</h3><pre>{}</pre>",
                    escape(&text(&v[d]["status"])),
                    v[d]["reason"]
                        .as_str()
                        .map(|r| format!(" — {}", escape(r)))
                        .unwrap_or_default(),
                    escape(&text(&v[d]["transcript"]))
                );
            }
        }
    }

    // The mailbox's wall: its own alerts and its profile's Profile-scope ones.
    h.push_str("<h2>Alerts</h2><table id=\"alerts\"><tr><th>when</th><th>level</th><th>scope</th><th>email</th><th>code</th><th>message</th></tr>");
    let profile = config.mailbox_profile(row.mailbox).map(|p| p.name.as_str());
    let alerts = ctx.store.alerts(usize::MAX).map_err(|e| e.to_string())?;
    for a in alerts
        .iter()
        .filter(|a| super::alert_filter::on_wall_of(a, &address, profile))
        .take(RECENT)
    {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"alert\">{}</td></tr>",
            relative(&Value::from(a.at.to_rfc3339()), now),
            a.level.as_str(),
            a.scope.as_str(),
            a.email.as_ref().map(email_cell).unwrap_or_default(),
            escape(&a.code),
            escape(&a.message)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Recent activities</h2><table id=\"activities\"><tr><th>id</th><th>direction</th><th>from</th><th>subject</th><th>automatic</th><th>stored</th></tr>");
    let url = format!(
        "/api/v1/activities?mailbox={}&limit={RECENT}",
        super::filter::encode(&address)
    );
    let list = super::activities::list(ctx, &url).map_err(|e| e.message)?;
    for a in list["activities"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"automatic\">{}</td><td>{}</td></tr>",
            text(&a["id"]),
            escape(&text(&a["direction"])),
            escape(&text(&a["from"])),
            escape(&text(&a["subject"])),
            // Empty for a person's email: the kinds stand out in the list.
            escape(&text(&a["automatic"])),
            relative(&a["created_at"], now)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Outbox</h2><table id=\"outbox\"><tr><th>id</th><th>status</th><th>tries</th><th>queued</th><th>last reply</th></tr>");
    let outbox = ctx
        .store
        .outbox_newest(None, RECENT, |e| e.mailbox == address)
        .map_err(|e| e.to_string())?;
    for e in &outbox {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.id,
            e.status.as_str(),
            e.tries,
            relative(&Value::from(e.queued_at.to_rfc3339()), now),
            escape(e.last_reply.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(
        h,
        "</table><p class=\"foot\">JSON: <a href=\"/api/v1/mailboxes/{0}/test\">last test</a> · \
         <a href=\"/api/v1/mailboxes/{0}/failures\">item failures</a> (API token)</p></body></html>",
        escape(&super::filter::encode(&address))
    );
    Ok(Some(h))
}

/// An alert's email on the wall: a link to its activity when it has one, else its sync id or
/// outbox id; then its subject.
fn email_cell(e: &crate::store::AlertEmail) -> String {
    let mut cell = match (e.activity_id, e.outbox_id, &e.uidl, e.uid) {
        (Some(id), _, _, _) => format!("<a href=\"/api/v1/activities/{id}\">activity {id}</a>"),
        (None, Some(id), _, _) => format!("outbox {id}"),
        (None, None, Some(uidl), _) => format!("UIDL {}", escape(uidl)),
        (None, None, None, Some(uid)) => format!(
            "{} UID {uid} (UIDVALIDITY {})",
            escape(e.folder.as_deref().unwrap_or("")),
            e.uidvalidity.unwrap_or_default()
        ),
        (None, None, None, None) => String::new(),
    };
    if let Some(subject) = &e.subject {
        let _ = write!(cell, " “{}”", escape(subject));
    }
    cell
}
