//! The status listener of a running appliance against real mailboxes: the HTML page (also in a
//! real headless Chromium), `/status`, `/healthz`, `/metrics` (parsed as Prometheus text), the
//! read API with its filters and pagination, status codes, a slow client, and HTTPS.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::Sidesync;
use support::web::{Reply, http, https};
use support::{mail, wait_for};

const GOOD: [&str; 3] = [
    "web-a@example.com",
    "web-b@example.com",
    "web-c@example.com",
];
const FAILING: &str = "web-wrong@example.com";
const COUNT: usize = 12;
const SIZE: usize = 1_800;

fn body(d: &Dovecot) -> String {
    let mut b = format!(
        "[[profile]]\ntrack = \"all\"\nname = \"web\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\n\n",
        d.imaps_port,
        d.ca_file.display()
    );
    for m in GOOD {
        b.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{m}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\n"
        ));
    }
    b.push_str(&format!(
        "[[mailbox]]\nemail_address = \"{FAILING}\"\npassword = \"not-the-password\"\napproval = \"approved\"\n"
    ));
    b
}

/// Fills the mailboxes and starts the appliance; waits until the good ones are stored and the
/// failing one is disabled with its alert.
fn running(
    d: &Dovecot,
    setup: &Setup,
    appliance_extra: &str,
) -> (Sidesync, HashMap<String, Vec<u8>>) {
    let mut by_id = HashMap::new();
    for user in GOOD.iter().chain([&FAILING]) {
        for n in 0..COUNT {
            let raw = mail::sample(user, n, SIZE);
            d.deliver(user, &raw, "", SystemTime::now());
            by_id.insert(mail::message_id(user, n), raw);
        }
    }
    let cfg = setup.write(appliance_extra, &body(d));
    let s = if appliance_extra.contains("status_tls_cert") {
        let ca = d.ca_file.clone();
        Sidesync::start_until(
            &cfg,
            &setup.dir.path().join("sidesync.log"),
            setup.port,
            || {
                https(setup.port, &ca, "GET", "/healthz", None)
                    .ok()
                    .filter(|r| r.code == 200)
            },
        )
    } else {
        setup.start(&cfg)
    };
    (s, by_id)
}

fn settled(port: u16, status: impl Fn() -> Value) {
    let _ = port;
    wait_for("the syncs and the failure", Duration::from_secs(90), || {
        let st = status();
        let boxes = st["mailboxes"].as_array()?.clone();
        let stored: u64 = boxes
            .iter()
            .map(|m| m["activities_stored"].as_u64().unwrap_or(0))
            .sum();
        let failed = boxes
            .iter()
            .any(|m| m["email_address"] == FAILING && m["latest_alert"].is_object());
        // Stored is not finished: the sync's end (and its next poll) is committed after the
        // last batch.
        let finished = boxes
            .iter()
            .filter(|m| GOOD.iter().any(|g| m["email_address"] == *g))
            .all(|m| m["last_successful_sync_completed_on"].is_string());
        (stored as usize == GOOD.len() * COUNT && failed && finished).then_some(())
    });
}

fn get(port: u16, path: &str) -> Reply {
    http(port, "GET", path, Some(TOKEN), b"")
}

#[test]
fn page_status_metrics_and_api_over_http() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let (s, samples) = running(&d, &setup, "");
    let port = setup.port;
    settled(port, || s.status());

    // The page: failing mailbox first, its alert shown, a chart, no script.
    let page = http(port, "GET", "/", None, b"");
    assert_eq!(page.code, 200);
    assert_eq!(
        page.header("Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    let failing_at = html
        .find(&format!("\">{FAILING}</a>"))
        .expect("failing row");
    for g in GOOD {
        assert!(failing_at < html.find(&format!("\">{g}</a>")).expect("good row"));
    }
    assert!(html.contains("authentication rejected") || html.contains("Authentication failed"));
    assert!(html.contains("<svg") && !html.contains("<script"));
    assert!(html.contains("1 failing"));

    // /status carries what the engine knows: next poll, data size, queue depth.
    let st = get(port, "/status").json();
    let a = st["mailboxes"]
        .as_array()
        .and_then(|b| b.iter().find(|m| m["email_address"] == GOOD[0]).cloned())
        .expect("mailbox");
    assert!(a["next_poll"].is_string(), "{a}");
    // The profile has no outgoing server: the direction says so instead of "not_run".
    assert_eq!(a["outgoing_status"], "not_configured", "{a}");
    assert_eq!(a["incoming_status"], "success", "{a}");
    assert!(st["appliance"]["data_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(st["appliance"]["queue_depth"].is_u64());
    assert_eq!(get(port, "/healthz").text(), "ok\n");
    let probe = http(port, "HEAD", "/healthz", None, b"");
    assert_eq!(probe.code, 200, "{}", probe.head);
    assert!(probe.body.is_empty(), "HEAD has no body");

    // /metrics parses as Prometheus text and counts what happened.
    let metrics = get(port, "/metrics");
    assert!(
        metrics
            .header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let lines = metrics
        .text()
        .lines()
        .map(|l| Ok(l.to_string()))
        .collect::<Vec<_>>();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
    };
    assert_eq!(
        value("sidesync_emails_ingested_total", Some(("profile", "web"))),
        (GOOD.len() * COUNT) as f64
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|x| x.metric.starts_with("sidesync_profile_")),
        "one family per metric, with a profile label"
    );
    assert!(
        value(
            "sidesync_connection_failures_total",
            Some(("profile", "web"))
        ) >= 1.0
    );
    assert!(
        value(
            "sidesync_failures_by_code_total",
            Some(("code", "authentication_rejected"))
        ) >= 1.0,
        "the wrong password's failures by their code"
    );
    assert_eq!(value("sidesync_build_info", None), 1.0);
    assert!(value("process_resident_memory_bytes", None) > 0.0);
    assert!(value("process_open_fds", None) > 0.0);
    assert!(value("process_start_time_seconds", None) > 1.7e9);
    assert!(value("sidesync_store_size_bytes", None) > 0.0);
    assert!(
        value(
            "sidesync_last_successful_sync_timestamp_seconds",
            Some(("profile", "web"))
        ) > 1.7e9
    );
    assert_eq!(
        value("sidesync_outbox_oldest_queued_age_seconds", None),
        0.0
    );
    // The example alert rules only name metrics the appliance exposes.
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("appliance/prometheus-alerts.yml"),
    )
    .expect("alert rules");
    let mut named = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("sidesync_") || word.starts_with("process_") {
            named += 1;
            assert!(
                scrape.samples.iter().any(|x| x.metric == word),
                "the alert rules name {word}, which /metrics does not have"
            );
        }
    }
    assert!(named >= 8, "{named}");
    assert_eq!(value("sidesync_mailboxes", Some(("state", "failing"))), 1.0);
    let histogram = scrape
        .samples
        .iter()
        .find(|x| x.metric == "sidesync_sync_duration_seconds")
        .expect("histogram");
    assert!(matches!(
        histogram.value,
        prometheus_parse::Value::Histogram(_)
    ));

    // Status codes outside the API.
    assert_eq!(http(port, "POST", "/status", None, b"").code, 405);
    let missing = http(port, "GET", "/nowhere", None, b"");
    assert_eq!(missing.code, 404);
    assert!(
        missing.json()["detail"]
            .as_str()
            .is_some_and(|e| e.contains("/nowhere"))
    );

    // A client that sends half a request and stalls holds its own thread, not the listener.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: 127.")
        .expect("half a request");
    for _ in 0..8 {
        assert_eq!(get(port, "/healthz").code, 200);
    }

    // The token rules.
    assert_eq!(http(port, "GET", "/api/v1/activities", None, b"").code, 401);
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/activities",
            Some("wrong-token-0123456789"),
            b""
        )
        .code,
        401
    );

    // Paging through every activity, newest first, without repeats.
    let mut seen = Vec::new();
    let mut path = "/api/v1/activities?limit=5".to_string();
    loop {
        let r = get(port, &path);
        assert_eq!(r.code, 200, "{}", r.text());
        let v = r.json();
        let page = v["activities"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 5);
        seen.extend(page.iter().filter_map(|a| a["id"].as_u64()));
        match v["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), GOOD.len() * COUNT);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );

    // Filters.
    let count = |q: &str| -> usize {
        let r = get(port, &format!("/api/v1/activities?limit=1000&{q}"));
        assert_eq!(r.code, 200, "{q}: {}", r.text());
        r.json()["activities"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(
        count(&format!("mailbox={}", GOOD[1].replace('@', "%40"))),
        COUNT
    );
    assert_eq!(count("direction=incoming"), GOOD.len() * COUNT);
    assert_eq!(count("direction=outgoing"), 0);
    assert_eq!(count("since=2000-01-01T00:00:00Z"), GOOD.len() * COUNT);
    assert_eq!(count("since=2999-01-01T00:00:00Z"), 0);
    // Sample 1 answers sample 0: the conversation of sample 0 holds both.
    let root = mail::message_id(GOOD[0], 0);
    let conv = get(
        port,
        &format!(
            "/api/v1/activities?conversation={}",
            root.replace('<', "%3C")
                .replace('>', "%3E")
                .replace('@', "%40")
        ),
    )
    .json();
    let subjects: Vec<String> = conv["activities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["message_id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(subjects.len(), 2, "{conv}");
    for (q, needle) in [
        ("direction=sideways", "direction"),
        ("since=yesterday", "RFC 3339"),
        ("limit=0", "limit"),
        ("colour=blue", "\"colour\""),
    ] {
        let r = get(port, &format!("/api/v1/activities?{q}"));
        assert_eq!(r.code, 400, "{q}");
        assert!(
            r.json()["detail"]
                .as_str()
                .is_some_and(|e| e.contains(needle)),
            "{q}: {}",
            r.text()
        );
    }

    // One activity: fields, parties, correlation; and its raw MIME, byte for byte.
    let list = get(
        port,
        &format!(
            "/api/v1/activities?limit=1000&mailbox={}",
            GOOD[0].replace('@', "%40")
        ),
    )
    .json();
    let reply_id = list["activities"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["message_id"] == mail::message_id(GOOD[0], 1).trim_matches(['<', '>']))
        })
        .and_then(|x| x["id"].as_u64())
        .expect("sample 1");
    let one = get(port, &format!("/api/v1/activities/{reply_id}")).json();
    assert_eq!(one["direction"], "incoming");
    assert_eq!(one["mailboxes"], serde_json::json!([GOOD[0]]));
    let parties = one["parties"].as_array().cloned().unwrap_or_default();
    assert_eq!(parties[0]["role"], "from", "{one}");
    assert!(
        parties
            .iter()
            .any(|p| p["address"] == GOOD[0] && p["record"] == format!("user:{}", GOOD[0])),
        "the mailbox resolves to its user: {one}"
    );
    assert!(one["regarding"].is_null());
    // Sample 1 answers sample 0: the same stored conversation, joined by In-Reply-To.
    assert_eq!(one["correlation"]["method"], "in_reply_to", "{one}");
    let related = one["correlation"]["related_activities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(related.len(), 1, "{one}");
    let raw = get(port, &format!("/api/v1/activities/{reply_id}/raw"));
    assert_eq!(raw.code, 200);
    assert_eq!(
        raw.header("Content-Type").as_deref(),
        Some("message/rfc822")
    );
    assert_eq!(raw.body, samples[&mail::message_id(GOOD[0], 1)]);
    // Saved, never rendered by a browser: an email is whatever HTML its sender wrote.
    assert_eq!(
        raw.header("Content-Disposition"),
        Some(format!("attachment; filename=\"{reply_id}.eml\""))
    );
    assert_eq!(
        raw.header("X-Content-Type-Options").as_deref(),
        Some("nosniff")
    );
    // Mail content wants the token from loopback too.
    let anonymous = http(
        port,
        "GET",
        &format!("/api/v1/activities/{reply_id}/raw"),
        None,
        b"",
    );
    assert_eq!(anonymous.code, 401);
    assert_eq!(get(port, "/api/v1/activities/999999").code, 404);
    assert_eq!(get(port, "/api/v1/activities/999999/raw").code, 404);
    assert_eq!(get(port, "/api/v1/activities/abc").code, 400);
    assert_eq!(
        http(port, "DELETE", "/api/v1/activities", Some(TOKEN), b"").code,
        405
    );
    assert_eq!(get(port, "/api/v1/nothing-here").code, 404);
    // Request bodies have a limit (64 KB for everything but the outbox).
    let big = vec![b' '; 100 * 1024];
    let path = format!("/api/v1/mailboxes/{}/approve", GOOD[0].replace('@', "%40"));
    let r = http(port, "POST", &path, Some(TOKEN), &big);
    assert_eq!(r.code, 413, "{}", r.text());

    // Mailboxes, all or failing only.
    let all = get(port, "/api/v1/mailboxes").json();
    assert_eq!(all["total"], GOOD.len() + 1);
    let failing = get(port, "/api/v1/mailboxes?state=failing").json();
    assert_eq!(failing["total"], 1);
    assert_eq!(failing["mailboxes"][0]["email_address"], FAILING);
    drop(slow);
    assert!(s.terminate().success());
}

#[test]
fn https_listener_serves_the_page_and_the_api() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let tls = format!(
        "status_tls_cert = \"{}\"\nstatus_tls_key = \"{}\"\n",
        d.dir.join("server.pem").display(),
        d.private_key_in(setup.dir.path()).display()
    );
    let (s, _) = running(&d, &setup, &tls);
    let port = setup.port;
    let ca = d.ca_file.clone();
    let status = || {
        https(port, &ca, "GET", "/status", None)
            .map(|r| r.json())
            .unwrap_or(Value::Null)
    };
    settled(port, status);
    let page = https(port, &ca, "GET", "/", None).expect("HTTPS page");
    assert_eq!(page.code, 200);
    assert!(page.text().contains(FAILING));
    let api = https(port, &ca, "GET", "/api/v1/activities?limit=3", Some(TOKEN)).expect("API");
    assert_eq!(api.code, 200, "{}", api.text());
    assert_eq!(api.json()["activities"].as_array().map(Vec::len), Some(3));
    let no_token = https(port, &ca, "GET", "/api/v1/activities", None).expect("API");
    assert_eq!(no_token.code, 401);
    // A client that does not trust the certificate gets no answer.
    assert!(https(port, &d.other_ca_file, "GET", "/healthz", None).is_err());
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = plain.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plain HTTP answered on the HTTPS port"
    );
    assert!(s.terminate().success());
}

#[test]
fn the_page_in_headless_chromium() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let (s, _) = running(&d, &setup, "");
    let port = setup.port;
    settled(port, || s.status());
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&out_dir).expect("output folder");
    let profile = tempfile::tempdir().expect("chromium profile");
    // The mailbox pages show mail: the browser gives the token as a Basic password.
    let chromium_as = |extra: &[&str], path: &str, credentials: &str| {
        let out = std::process::Command::new("timeout")
            .arg("90")
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("http://{credentials}127.0.0.1:{port}{path}"))
            .output()
            .expect("run chromium (Debian package chromium)");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let chromium_at = |extra: &[&str], path: &str| chromium_as(extra, path, "");
    let signed_in = format!("operator:{TOKEN}@");
    let chromium_in = |extra: &[&str], path: &str| chromium_as(extra, path, &signed_in);
    let chromium = |extra: &[&str]| chromium_at(extra, "/");
    let dom = chromium(&["--dump-dom"]);
    // The rendered DOM: the mailbox table's first row after the header is the failing mailbox,
    // with its alert text.
    let table = dom
        .split("id=\"mailboxes\"")
        .nth(1)
        .expect("mailbox table in the DOM");
    let first_row = table.split("<tr").nth(2).expect("a mailbox row");
    assert!(first_row.contains(FAILING), "first row: {first_row}");
    assert!(
        first_row.contains("class=\"failing\""),
        "first row: {first_row}"
    );
    let alert = s.mailbox(FAILING)["latest_alert"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!alert.is_empty());
    // As the DOM serializes text: with &, < and > escaped.
    let shown: String = alert
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .chars()
        .take(60)
        .collect();
    assert!(
        first_row.contains(&shown),
        "alert {shown:?} not in {first_row}"
    );
    assert!(dom.contains("<svg"), "the chart is rendered");
    let shot = out_dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", shot.display());

    // Search and filters: a GET form, rendered back with what was asked.
    let dom = chromium_at(&["--dump-dom"], "/?state=failing");
    let table = dom.split("id=\"mailboxes\"").nth(1).expect("mailbox table");
    assert_eq!(
        table.matches("<tr class=").count(),
        1,
        "only the failing one"
    );
    assert!(table.contains(FAILING));
    assert!(dom.contains("1 of 4 mailboxes match"), "{dom}");
    assert!(
        dom.contains("<option value=\"failing\" selected=\"\">"),
        "the form keeps it"
    );
    let dom = chromium_at(&["--dump-dom"], &format!("/?q={}", &GOOD[1][..6]));
    let table = dom.split("id=\"mailboxes\"").nth(1).expect("table");
    assert_eq!(table.matches("<tr class=").count(), 1, "{table}");
    assert!(table.contains(GOOD[1]));
    let dom = chromium_at(&["--dump-dom"], "/?q=nobody-at-all");
    assert!(dom.contains("0 of 4 mailboxes match"));

    // The mailbox detail page, linked from its row: state, the test's transcript, its alerts.
    assert!(first_row.contains(&format!("href=\"/mailbox/{FAILING}\"")));
    let detail_path = format!("/mailbox/{FAILING}");
    let dom = chromium_in(&["--dump-dom"], &detail_path);
    assert!(dom.contains("id=\"state\""), "{dom}");
    assert!(dom.contains("Last Test &amp; Enable"));
    let alerts = dom.split("id=\"alerts\"").nth(1).expect("alerts table");
    assert!(alerts.contains("<td>error</td>"), "its alert: {alerts}");
    assert!(
        !dom.contains("not-the-password"),
        "no password in a transcript"
    );
    let dom = chromium_in(&["--dump-dom"], &format!("/mailbox/{}", GOOD[0]));
    let activities = dom.split("id=\"activities\"").nth(1).expect("activities");
    assert_eq!(
        activities.matches("<tr><td>").count(),
        COUNT,
        "its recent activities: {activities}"
    );
    let missing = http(port, "GET", "/mailbox/nobody@example.com", Some(TOKEN), b"");
    assert_eq!(missing.code, 404);
    let detail_shot = out_dir.join("mailbox-detail.png");
    chromium_in(
        &[&format!("--screenshot={}", detail_shot.display())],
        &detail_path,
    );
    assert!(std::fs::read(&detail_shot).is_ok_and(|p| p.starts_with(b"\x89PNG")));
    // `SIDESYNC_UPDATE_DOCS=1` refreshes the screenshots the README shows.
    if std::env::var_os("SIDESYNC_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs");
        std::fs::copy(&shot, docs.join("status-page.png")).expect("copy");
        std::fs::copy(&detail_shot, docs.join("mailbox-detail.png")).expect("copy");
    }
    assert!(s.terminate().success());
}

/// A request as a browser sends it: extra headers, a form body; (status, headers, body).
fn browser(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    form: &str,
) -> (u16, String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        form.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{form}").expect("send");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, head.to_string(), body.to_string())
}

/// The value of the hidden csrf field of the form that posts to `action`.
fn csrf_of(page: &str, action: &str) -> Option<String> {
    let form = page.split(&format!("action=\"{action}\"")).nth(1)?;
    let value = form.split("name=\"csrf\" value=\"").nth(1)?;
    Some(value.split('"').next()?.to_string())
}

/// The mailbox page's Approve and Test & Enable buttons: shown to an admin token's holder only,
/// refused without the page's CSRF token, with another form's, from another origin or with a
/// read token (403), and with all in order they approve the mailbox and test it against dovecot.
#[test]
fn the_mailbox_page_buttons_approve_and_test_for_an_admin_only() {
    use std::os::unix::fs::PermissionsExt;
    const PENDING: &str = "web-pending@example.com";
    const READ_TOKEN: &str = "read-only-token-0123456789";
    let d = Dovecot::start();
    d.deliver(
        PENDING,
        &mail::sample(PENDING, 0, SIZE),
        "",
        SystemTime::now(),
    );
    let setup = Setup::new();
    let read_file = setup.dir.path().join("read.token");
    std::fs::write(&read_file, READ_TOKEN).expect("token");
    std::fs::set_permissions(&read_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = setup.write(
        &format!(
            "[[appliance.api_tokens]]\nname = \"viewer\"\nscope = \"read\"\nfile = \"{}\"\n",
            read_file.display()
        ),
        &format!(
            "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
             incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
             timeout_mailbox_connection_after = \"10s\"\n\n\
             [[mailbox]]\nemail_address = \"{PENDING}\"\npassword = \"{PASSWORD}\"\n",
            d.imaps_port,
            d.ca_file.display()
        ),
    );
    let s = setup.start(&cfg);
    let port = setup.port;
    let page_path = format!("/mailbox/{PENDING}");
    let approve = format!("{page_path}/approve");
    let test = format!("{page_path}/test");
    let same_origin = [
        ("Origin", format!("http://127.0.0.1:{port}")),
        ("Sec-Fetch-Site", "same-origin".to_string()),
    ];
    let same: Vec<(&str, &str)> = same_origin.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // A read token sees the page without a button or a CSRF token, and may not post.
    let (code, _, page) = browser(port, "GET", &page_path, READ_TOKEN, &[], "");
    assert_eq!(code, 200, "{page}");
    assert!(
        !page.contains("method=\"post\"") && !page.contains("csrf"),
        "{page}"
    );
    // The admin sees both buttons.
    let (code, _, page) = browser(port, "GET", &page_path, TOKEN, &[], "");
    assert_eq!(code, 200, "{page}");
    let approve_csrf = csrf_of(&page, &approve).unwrap_or_else(|| panic!("approve: {page}"));
    let test_csrf = csrf_of(&page, &test).unwrap_or_else(|| panic!("test: {page}"));
    assert_ne!(approve_csrf, test_csrf);
    assert!(
        !page.contains(TOKEN),
        "the token itself is never in the page"
    );
    let form = |csrf: &str| format!("csrf={csrf}");

    let refused = |token: &str, headers: &[(&str, &str)], body: &str, why: &str| {
        let (code, _, answer) = browser(port, "POST", &approve, token, headers, body);
        assert_eq!(code, 403, "{why}: {answer}");
        answer
    };
    let said = refused(TOKEN, &same, "", "no CSRF token");
    assert!(said.contains("CSRF"), "{said}");
    refused(TOKEN, &same, &form("d3JvbmctdG9rZW4"), "a wrong CSRF token");
    refused(TOKEN, &same, &form(&test_csrf), "the other form's token");
    refused(
        TOKEN,
        &[("Origin", "http://evil.example")],
        &form(&approve_csrf),
        "another origin",
    );
    refused(
        TOKEN,
        &[("Sec-Fetch-Site", "cross-site")],
        &form(&approve_csrf),
        "another site",
    );
    let said = refused(READ_TOKEN, &same, &form(&approve_csrf), "a read token");
    assert!(said.contains("scope read"), "{said}");
    let (code, _, _) = browser(port, "GET", &approve, TOKEN, &[], "");
    assert_eq!(code, 405, "POST only");
    assert_ne!(
        s.mailbox(PENDING)["approval"],
        "approved",
        "nothing happened yet"
    );

    // With everything in order: approved, and back to the page.
    let (code, head, body) = browser(port, "POST", &approve, TOKEN, &same, &form(&approve_csrf));
    assert_eq!(code, 303, "{head}{body}");
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("location: {page_path}"))),
        "{head}"
    );
    assert_eq!(s.mailbox(PENDING)["approval"], "approved");
    let (_, _, page) = browser(port, "GET", &page_path, TOKEN, &[], "");
    assert!(
        csrf_of(&page, &approve).is_none(),
        "approved: no Approve button"
    );

    // Test & Enable against the real dovecot, through the API's own test.
    let (code, head, body) = browser(port, "POST", &test, TOKEN, &same, &form(&test_csrf));
    assert_eq!(code, 303, "{head}{body}");
    let result = wait_for("the page's test", Duration::from_secs(120), || {
        let (code, body) = support::sidesync::http(
            port,
            "GET",
            &format!("/api/v1/mailboxes/{PENDING}/test"),
            Some(TOKEN),
            "",
        );
        (code == 200).then(|| serde_json::from_str::<Value>(&body).expect("json"))
    });
    assert_eq!(result["incoming"]["status"], "success", "{result}");
    let log = s.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("audit: status page action") && l.contains("status=303")),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(&approve_csrf),
        "no secret in the log"
    );
    assert!(s.terminate().success());
}
