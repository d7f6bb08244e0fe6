//! `GET /`: the status page an admin reads at a glance (A1). Rendered on the server from the same
//! document as `/status`, with no script and no external asset; it refreshes itself. Failing
//! mailboxes come first, and mailboxes are shown a page at a time, so 10,000 of them stay fast.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::metrics::Minute;

/// Mailbox rows per page.
pub const PAGE_SIZE: usize = 100;
/// Seconds between the page's own refreshes.
const REFRESH_SECONDS: u32 = 15;

/// Text made safe for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A short "3 min ago" / "in 40 s" for an RFC 3339 time.
pub(super) fn relative(v: &Value, now: DateTime<Utc>) -> String {
    let Some(t) = v
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    else {
        return "—".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let amount = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86400 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// When the mailbox is polled next: "in 40 s", or "due" once that time has come.
fn next_poll(v: &Value, now: DateTime<Utc>) -> String {
    let due = v
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|t| t.with_timezone(&Utc) <= now);
    if due { "due".into() } else { relative(v, now) }
}

fn status_cell(status: &Value, enablement: &Value) -> String {
    let s = status.as_str().unwrap_or("not_run");
    let disabled = enablement["state"] == "disabled";
    let class = match (s, disabled) {
        (_, true) | ("failure", _) => "bad",
        ("success", _) => "ok",
        _ => "idle",
    };
    let label = if disabled {
        format!("{s}, disabled")
    } else {
        s.to_string()
    };
    format!("<td class=\"{class}\">{}</td>", escape(&label))
}

/// The search box and the profile and state filters: a plain GET form, no script.
fn search_form(h: &mut String, d: &PageData<'_>) {
    use super::filter::StateFilter;
    let f = d.filter;
    let _ = write!(
        h,
        "<form id=\"search\" method=\"get\" action=\"/\"><input type=\"search\" name=\"q\" \
         placeholder=\"address or name\" value=\"{}\"> <select name=\"profile\"><option value=\"\">all profiles</option>",
        escape(&f.q)
    );
    for p in &d.profiles {
        let _ = write!(
            h,
            "<option value=\"{0}\"{1}>{0}</option>",
            escape(&p.name),
            if f.profile.as_deref() == Some(p.name.as_str()) {
                " selected"
            } else {
                ""
            }
        );
    }
    h.push_str("</select> <select name=\"state\"><option value=\"\">any state</option>");
    for s in StateFilter::ALL {
        let _ = write!(
            h,
            "<option value=\"{}\"{}>{}</option>",
            s.as_str(),
            if f.state == Some(s) { " selected" } else { "" },
            s.label()
        );
    }
    h.push_str("</select> <button type=\"submit\">Filter</button></form>");
}

/// A sync under way, under its address: "first sync 2,500 / 10,000 (25%) · 250/s · 30 s left".
pub(super) fn progress_line(p: &Value) -> String {
    if p.is_null() {
        return String::new();
    }
    let (stored, on_server) = (
        p["stored"].as_u64().unwrap_or(0),
        p["on_server"].as_u64().unwrap_or(0),
    );
    let percent = (stored * 100).checked_div(on_server).unwrap_or(0).min(100);
    let left = match p["eta_seconds"].as_u64() {
        Some(s) if s >= 3600 => format!(" · {} h {} min left", s / 3600, s % 3600 / 60),
        Some(s) if s >= 60 => format!(" · {} min {} s left", s / 60, s % 60),
        Some(s) => format!(" · {s} s left"),
        None => String::new(),
    };
    format!(
        "<div class=\"progress\">{} {stored} / {on_server} ({percent}%) · {}/s{left}\
         <progress max=\"{on_server}\" value=\"{stored}\"></progress></div>",
        if p["first_sync"] == true {
            "first sync"
        } else {
            "syncing"
        },
        text(&p["rate_per_second"]),
    )
}

/// A stale mailbox's incoming cell says so, in the failing colour.
fn stale_aware(cell: String, stale: bool) -> String {
    if !stale {
        return cell;
    }
    match cell.rsplit_once("</td>") {
        Some((inner, _)) => format!(
            "{}, stale</td>",
            inner.replacen("class=\"ok\"", "class=\"bad\"", 1)
        ),
        None => cell,
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1_000_000 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// A "nice" upper bound for the chart's scale: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= max {
                return v;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// An inline SVG line chart of emails ingested and sent per minute over the last hour, with a
/// scale (emails per minute, gridlines at 0, half and the top) and a time axis (60 minutes ago
/// to now).
pub fn chart(series: &[Minute]) -> String {
    let (w, h) = (640.0, 150.0);
    // The plot area leaves room for the scale on the left and the time axis below.
    let (left, top, right, bottom) = (44.0, 8.0, 8.0, 24.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let peak = series
        .iter()
        .map(|m| m.ingested.max(m.sent))
        .max()
        .unwrap_or(0);
    let max = nice_ceiling(peak.max(1));
    let step = pw / (series.len().max(2) - 1) as f64;
    let y = |v: u64| top + ph - v as f64 / max as f64 * ph;
    let line = |pick: fn(&Minute) -> u64| {
        series
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{:.1},{:.1}", left + i as f64 * step, y(pick(m))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut axes = String::new();
    for v in [0, max / 2, max] {
        let _ = write!(
            axes,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{v}</text>",
            left + pw,
            left - 4.0,
            y(v) + 4.0,
            y = y(v),
        );
    }
    for (minutes_ago, anchor) in [
        (60, "start"),
        (45, "middle"),
        (30, "middle"),
        (15, "middle"),
        (0, "end"),
    ] {
        let x = left + pw * (60 - minutes_ago) as f64 / 60.0;
        let label = if minutes_ago == 0 {
            "now".to_string()
        } else {
            format!("−{minutes_ago} min")
        };
        let _ = write!(
            axes,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"11\">{label}</text>",
            top + ph,
            top + ph + 4.0,
            h - 6.0,
        );
    }
    let ingested: u64 = series.iter().map(|m| m.ingested).sum();
    let sent: u64 = series.iter().map(|m| m.sent).sum();
    format!(
        "<svg id=\"chart\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         aria-label=\"emails per minute, last hour: {ingested} ingested, {sent} sent\">\
         <title>Emails per minute, last hour (peak {peak})</title>\
         <rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fafafa\" stroke=\"#ddd\"/>{axes}\
         <text x=\"4\" y=\"{top}\" font-size=\"10\" transform=\"rotate(90 4 {top})\">emails/min</text>\
         <polyline fill=\"none\" stroke=\"#2a6fdb\" stroke-width=\"2\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#e08a00\" stroke-width=\"2\" points=\"{}\"/>\
         </svg><p class=\"legend\"><span class=\"in\">■ ingested</span> {ingested} \
         <span class=\"out\">■ sent</span> {sent} in the last hour; peak {peak} per minute</p>",
        line(|m| m.ingested),
        line(|m| m.sent),
    )
}

/// One profile line of the page.
pub struct ProfileLine {
    pub name: String,
    pub active: bool,
    pub server_type: &'static str,
    pub mailboxes: usize,
    pub failing_last_hour: usize,
}

/// One mailbox row: its `/status` form, and whether it is failing.
pub struct PageRow {
    pub data: Value,
    pub failing: bool,
}

/// What the page shows: the appliance, the profiles, and one page of mailbox rows already in
/// order.
pub struct PageData<'a> {
    pub appliance: Value,
    pub profiles: Vec<ProfileLine>,
    pub rows: Vec<PageRow>,
    pub total: usize,
    /// Mailboxes the search and filters let through (all of them without a filter).
    pub matching: usize,
    pub filter: &'a super::filter::Filter,
    pub failing: usize,
    /// 1-based, within `1..=pages`.
    pub page: usize,
    pub pages: usize,
    pub series: &'a [Minute],
    pub data_bytes: u64,
    pub queue_depth: u64,
    pub now: DateTime<Utc>,
}

/// The page's order: failing first, most recent error first, then by address (stable between
/// refreshes). `keys[i]` = (failing, time of the latest error, address) of row `i`.
pub fn order(keys: &[(bool, Option<DateTime<Utc>>, &str)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ka, kb) = (&keys[a], &keys[b]);
        kb.0.cmp(&ka.0)
            .then_with(|| {
                if ka.0 {
                    kb.1.cmp(&ka.1)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| ka.2.cmp(kb.2))
    });
    idx
}

/// Pages of [`PAGE_SIZE`] for `total` rows, and the asked page brought into range.
pub fn paging(total: usize, asked: usize) -> (usize, usize) {
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    (asked.clamp(1, pages), pages)
}

pub fn render(d: &PageData<'_>) -> String {
    let now = d.now;
    let a = &d.appliance;
    let (page, pages, failing) = (d.page, d.pages, d.failing);
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>sidesync — {failing} failing of {total}</title><style>{CSS}</style></head><body>\
         <h1>sidesync</h1><section id=\"appliance\"><p>version {version} · up {uptime} · data {data} · \
         queue depth {queue} · {total} mailboxes, <b class=\"{fclass}\">{failing} failing</b> · \
         activities stored {stored}</p>",
        total = d.total,
        version = escape(&text(&a["version"])),
        uptime = relative(&a["started_at"], now).trim_end_matches(" ago"),
        data = bytes(d.data_bytes),
        queue = d.queue_depth,
        fclass = if failing > 0 { "bad" } else { "ok" },
        stored = text(&a["activities_stored"]),
    );
    let reload = &a["last_reload"];
    if reload["result"] == "refused" {
        let _ = write!(
            h,
            "<p class=\"bad\" id=\"reload\">The config reload at {} was refused; the running \
             config stays in force until these are fixed:</p><ul class=\"alert\">",
            escape(&text(&reload["at"]))
        );
        for e in reload["errors"].as_array().into_iter().flatten() {
            let _ = write!(h, "<li>{}</li>", escape(&text(e)));
        }
        h.push_str("</ul>");
    }
    h.push_str(&chart(d.series));
    h.push_str("</section><h2>Profiles</h2><table id=\"profiles\"><tr><th>profile</th><th>active</th><th>server type</th><th>mailboxes</th><th>failing in the last hour</th></tr>");
    for p in &d.profiles {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&p.name),
            if p.active { "yes" } else { "no" },
            p.server_type,
            p.mailboxes,
            if p.failing_last_hour > 0 { "bad" } else { "ok" },
            p.failing_last_hour,
        );
    }
    h.push_str("</table><h2>Mailboxes</h2>");
    search_form(&mut h, d);
    let f = d.filter;
    let _ = write!(
        h,
        "<p>{}page {page} of {pages}{}{}</p><table id=\"mailboxes\"><tr>\
         <th>mailbox</th><th>incoming</th><th>outgoing</th><th>approval</th><th>last successful sync</th>\
         <th>items last sync</th><th>activities</th><th>next poll</th><th>latest alert</th></tr>",
        if f.is_empty() {
            String::new()
        } else {
            format!(
                "{} of {} mailboxes match · <a href=\"/\">clear</a> · ",
                d.matching, d.total
            )
        },
        if page > 1 {
            format!(" · <a href=\"{}\">previous</a>", escape(&f.query(page - 1)))
        } else {
            String::new()
        },
        if page < pages {
            format!(" · <a href=\"{}\">next</a>", escape(&f.query(page + 1)))
        } else {
            String::new()
        },
    );
    for row in &d.rows {
        let m = &row.data;
        let alert = &m["latest_alert"];
        let alert_text = if alert.is_null() {
            text(&m["not_processed_reason"])
        } else {
            format!("{}: {}", text(&alert["level"]), text(&alert["message"]))
        };
        let _ = write!(
            h,
            "<tr class=\"{}\"><td><a href=\"/mailbox/{}\">{}</a>{}</td>{}{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"alert\">{}</td></tr>",
            if row.failing { "failing" } else { "" },
            escape(&super::filter::encode(&text(&m["email_address"]))),
            escape(&text(&m["email_address"])),
            progress_line(&m["sync_progress"]),
            stale_aware(
                status_cell(&m["incoming_status"], &m["incoming_enablement"]),
                m["stale"] == true
            ),
            status_cell(&m["outgoing_status"], &m["outgoing_enablement"]),
            escape(&text(&m["approval"])),
            relative(&m["last_successful_sync_completed_on"], now),
            text(&m["items_processed_last_sync"]),
            activities_cell(m),
            next_poll(&m["next_poll"], now),
            escape(&alert_text),
        );
    }
    h.push_str("</table><p class=\"foot\">JSON: <a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a></p></body></html>\n");
    h
}

/// Activities stored, and the emails the tracking decision skipped when there are any.
fn activities_cell(m: &Value) -> String {
    let stored = text(&m["activities_stored"]);
    match m["emails_skipped"].as_u64() {
        Some(n) if n > 0 => format!("{stored} <span class=\"idle\">({n} skipped)</span>"),
        _ => stored,
    }
}

pub(super) const CSS: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}\
th{background:#f2f2f2}.ok{color:#1a7f37}.bad{color:#fff;background:#c62828}td.ok{background:#e6f4ea}\
.idle{color:#666}tr.failing td:first-child{font-weight:bold}.alert{max-width:40em}\
.legend .in{color:#2a6fdb}.legend .out{color:#e08a00}.foot{color:#666}\
.progress{font-size:12px;color:#555}.progress progress{display:block;width:16em}\
#search{margin:.5em 0}#actions form{display:inline;margin-right:.5em}pre{background:#f6f6f6;padding:.5em;max-width:80em;overflow:auto;white-space:pre-wrap}";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static NO_FILTER: std::sync::LazyLock<super::super::filter::Filter> =
        std::sync::LazyLock::new(|| super::super::filter::Filter::parse("/"));

    fn row(i: usize, bad: bool) -> PageRow {
        let data = json!({
            "email_address": format!("m{i:05}@example.com"),
            "incoming_status": if bad { "failure" } else { "success" },
            "outgoing_status": "not_run",
            "incoming_enablement": {"state": "enabled"},
            "outgoing_enablement": {"state": "not_tested"},
            "approval": "approved",
            "latest_alert": if bad { json!({"level": "error", "message": "<b>wrong password</b>"}) } else { Value::Null },
            "activities_stored": 3,
        });
        PageRow { data, failing: bad }
    }

    fn data(
        rows: Vec<PageRow>,
        total: usize,
        failing: usize,
        page: usize,
        series: &[Minute],
    ) -> PageData<'_> {
        let (page, pages) = paging(total, page);
        PageData {
            appliance: json!({"version": "0.1.0", "started_at": Utc::now().to_rfc3339(), "activities_stored": 3 * total}),
            profiles: vec![ProfileLine {
                name: "p<1>".into(),
                active: true,
                server_type: "imap_smtp",
                mailboxes: total,
                failing_last_hour: failing,
            }],
            rows,
            total,
            matching: total,
            filter: &NO_FILTER,
            failing,
            page,
            pages,
            series,
            data_bytes: 12_345_678,
            queue_depth: 2,
            now: Utc::now(),
        }
    }

    #[test]
    fn failing_mailboxes_come_first_and_text_is_escaped() {
        let t = Utc::now();
        let keys = vec![
            (false, None, "b@x"),
            (true, Some(t - chrono::Duration::hours(2)), "z@x"),
            (false, None, "a@x"),
            (true, Some(t), "y@x"),
        ];
        assert_eq!(order(&keys), vec![3, 1, 2, 0]);
        let series = vec![Minute::default(); 60];
        let html = render(&data(vec![row(3, true), row(0, false)], 2, 1, 1, &series));
        let first_row = html
            .find("<tr class=\"failing\"><td><a href=\"/mailbox/m00003@")
            .expect("failing row");
        let healthy = html.find(">m00000@").expect("healthy row");
        assert!(first_row < healthy);
        assert!(html.contains("&lt;b&gt;wrong password&lt;/b&gt;"));
        assert!(!html.contains("<b>wrong password</b>"));
        assert!(html.contains("p&lt;1&gt;"));
        assert!(html.contains("1 failing"));
        assert!(!html.contains("<script"), "no JavaScript");
        assert!(html.contains("http-equiv=\"refresh\""));
        // The Content-Security-Policy allows one stylesheet, by its hash: this one, alone, and
        // no style attribute (`guard::content_security_policy`).
        assert_eq!(html.matches("<style>").count(), 1);
        assert!(html.contains(&format!("<style>{CSS}</style>")));
        assert!(
            !html.contains(" style="),
            "an inline style attribute the CSP would block"
        );
    }

    #[test]
    fn ten_thousand_mailboxes_are_paginated() {
        assert_eq!(paging(10_000, 1), (1, 100));
        assert_eq!(
            paging(10_000, 500),
            (100, 100),
            "pages beyond the end show the last"
        );
        assert_eq!(paging(0, 3), (1, 1));
        let series = vec![Minute::default(); 60];
        let rows: Vec<PageRow> = (0..PAGE_SIZE).map(|i| row(i, i == 0)).collect();
        let html = render(&data(rows, 10_000, 1, 1, &series));
        assert!(html.len() < 100_000, "page is {} bytes", html.len());
        assert_eq!(html.matches("<tr class=").count(), PAGE_SIZE);
        assert!(html.contains("page 1 of 100") && html.contains("/?page=2"));
    }

    #[test]
    fn the_chart_scales_to_its_peak() {
        let mut series = vec![Minute::default(); 60];
        series[59].ingested = 50;
        series[30].sent = 10;
        let svg = chart(&series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("50 ingested, 10 sent"));
        assert!(
            svg.contains("632.0,8.0"),
            "the peak (50, a nice ceiling) reaches the top: {svg}"
        );
        assert!(svg.contains(">now</text>") && svg.contains(">−60 min</text>"));
        assert!(
            svg.contains(">25</text>") && svg.contains(">0</text>"),
            "the scale"
        );
        assert_eq!(nice_ceiling(41), 50);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(101), 200);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn progress_of_a_first_sync_under_its_address() {
        let p = json!({"first_sync": true, "on_server": 10_000, "stored": 2_500,
            "rate_per_second": 250.0, "eta_seconds": 30});
        let line = progress_line(&p);
        assert!(
            line.contains("first sync 2500 / 10000 (25%) · 250.0/s · 30 s left"),
            "{line}"
        );
        assert!(line.contains("<progress max=\"10000\" value=\"2500\">"));
        assert_eq!(progress_line(&Value::Null), "");
        let none =
            json!({"first_sync": false, "on_server": 0, "stored": 0, "rate_per_second": 0.0});
        assert!(progress_line(&none).contains("syncing 0 / 0 (0%)"));
    }

    #[test]
    fn relative_times() {
        let now = Utc::now();
        let v = |secs: i64| json!((now - chrono::Duration::seconds(secs)).to_rfc3339());
        assert_eq!(relative(&v(30), now), "30 s ago");
        assert_eq!(relative(&v(-120), now), "in 2 min");
        assert_eq!(relative(&v(7200), now), "2 h ago");
        assert_eq!(relative(&Value::Null, now), "—");
    }
}
