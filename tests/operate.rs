//! The operator's CLI against a running appliance, over the control socket in the data folder:
//! `status`, `approve`, `alerts`, `send`, `outbox`, `test` work with the listener on HTTPS and
//! the API off (no token configured), the socket is the service's user's and group's only, and
//! a stopped appliance is named as such. Completions and the man page come from the same help.

mod support;

use std::time::{Duration, SystemTime};

use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::{Sidesync, cli};
use support::web::https;
use support::{free_port, mail, wait_for};

const GOOD: &str = "op-good@example.com";
const WAITING: &str = "op-waiting@example.com";
const WRONG: &str = "op-wrong@example.com";

fn run(args: &[&str], cfg: &std::path::Path) -> (i32, String) {
    let mut all: Vec<&str> = args.to_vec();
    let cfg = cfg.to_str().expect("utf-8");
    all.extend(["--config", cfg]);
    let (status, out) = cli(&all);
    (status.code().unwrap_or(-1), out)
}

#[test]
fn the_cli_operates_the_appliance_over_its_control_socket() {
    let d = Dovecot::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    for user in [GOOD, WAITING, WRONG] {
        for n in 0..3 {
            d.deliver(user, &mail::sample(user, n, 1_500), "", SystemTime::now());
        }
    }
    let data = dir.path().join("data");
    // HTTPS on the listener, and no api_token_file: the API is off for the network.
    let cfg = dir.path().join("sidesync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{data}\"\n\
             status_listen = \"127.0.0.1:{port}\"\nretry_interval = \"1s\"\n\
             status_tls_cert = \"{cert}\"\nstatus_tls_key = \"{key}\"\n\n\
             [[profile]]\ntrack = \"all\"\nname = \"p\"\nis_default = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {imaps}\n\
             ca_file = \"{ca}\"\nmin_polling_interval = \"1s\"\n\
             timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
             outgoing_port_number = {submission}\noutgoing_tls = \"starttls\"\n\
             allow_plaintext_login = true\n\n\
             [[mailbox]]\nemail_address = \"{GOOD}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\n\
             [[mailbox]]\nemail_address = \"{WAITING}\"\npassword = \"{PASSWORD}\"\n\n\
             [[mailbox]]\nemail_address = \"{WRONG}\"\npassword = \"not-the-password\"\napproval = \"approved\"\n",
            data = data.display(),
            cert = d.dir.join("server.pem").display(),
            key = d.private_key_in(dir.path()).display(),
            imaps = d.imaps_port,
            ca = d.ca_file.display(),
            submission = d.submission_port,
        ),
    )
    .expect("config");

    // Before it runs, the CLI says so instead of a socket error, with its own exit status.
    for cmd in [
        &["status"][..],
        &["status", "--json"],
        &["mailboxes"],
        &["alerts"],
        &["outbox"],
    ] {
        let (code, out) = run(cmd, &cfg);
        assert_eq!(code, 3, "{cmd:?}: {out}");
        assert!(out.contains("sidesync is not running"), "{out}");
    }

    let ca = d.ca_file.clone();
    let s = Sidesync::start_until(&cfg, &dir.path().join("sidesync.log"), port, || {
        https(port, &ca, "GET", "/healthz", None)
            .ok()
            .filter(|r| r.code == 200)
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("control.sock"))
        .expect("control socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "the service's user and group only");

    // status: the failing mailbox and the one waiting for approval, with why; not the good one.
    // A failing mailbox needs attention: exit 1.
    let out = wait_for(
        "status names the failing mailbox",
        Duration::from_secs(60),
        || {
            let (code, out) = run(&["status"], &cfg);
            (code == 1
                && out
                    .lines()
                    .any(|l| l.starts_with(WRONG) && l.contains("failure")))
            .then_some(out)
        },
    );
    // An aligned table: each column starts where its header does.
    let header = out
        .lines()
        .find(|l| l.starts_with("MAILBOX"))
        .unwrap_or_else(|| panic!("a table header: {out}"));
    let wrong = out
        .lines()
        .find(|l| l.starts_with(WRONG))
        .expect("the failing row");
    assert_eq!(header.find("INCOMING"), wrong.find("failure"), "{out}");
    // --json: the appliance's /status answer, every mailbox, the same exit status.
    let (code, json) = run(&["status", "--json"], &cfg);
    assert_eq!(code, 1, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let listed = v["mailboxes"].as_array().expect("mailboxes");
    assert_eq!(listed.len(), 3, "{json}");
    assert!(
        listed
            .iter()
            .any(|m| m["email_address"] == WRONG && m["incoming_status"] == "failure"),
        "{json}"
    );
    assert!(out.starts_with("sidesync "), "{out}");
    assert!(out.contains("3 mailboxes"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(WAITING)),
        "not processed until approved: {out}"
    );
    assert!(!out.lines().any(|l| l.starts_with(GOOD)), "{out}");
    let (_, all) = run(&["status", "--all"], &cfg);
    assert!(all.lines().any(|l| l.starts_with(GOOD)), "{all}");

    // mailboxes: every one in config order, the failing one needing attention; --failing
    // --json is the API's answer with only it.
    let (code, out) = run(&["mailboxes"], &cfg);
    assert_eq!(code, 1, "{out}");
    let order: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(order, [GOOD, WAITING, WRONG], "{out}");
    let (code, json) = run(&["mailboxes", "--failing", "--json"], &cfg);
    assert_eq!(code, 1, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let failing: Vec<&str> = v["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .filter_map(|m| m["email_address"].as_str())
        .collect();
    assert_eq!(failing, [WRONG], "{json}");

    // alerts: the wrong password's alert, by mailbox; at error level it needs attention (1).
    let (code, out) = run(&["alerts", "--mailbox", WRONG], &cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(WRONG) && out.contains("error"), "{out}");
    let (code, json) = run(&["alerts", "--mailbox", WRONG, "--json"], &cfg);
    assert_eq!(code, 1, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(
        v["alerts"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["mailbox"] == WRONG && a["level"] == "error")),
        "{json}"
    );
    // The good mailbox has no alert at error level: nothing needs attention.
    let (code, out) = run(&["alerts", "--mailbox", GOOD], &cfg);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["alerts", "--limit", "0"], &cfg);
    assert_eq!(code, 1, "a bad limit is refused: {out}");
    assert!(out.contains("limit"), "{out}");

    // approve: the waiting mailbox is approved and syncs.
    let (code, out) = run(&["approve", WAITING], &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("{WAITING}: approval approved"));
    wait_for(
        "the approved mailbox syncs",
        Duration::from_secs(60),
        || {
            let v = https(port, &ca, "GET", "/status", None).ok()?.json();
            let m = v["mailboxes"]
                .as_array()?
                .iter()
                .find(|m| m["email_address"] == WAITING)?;
            (m["activities_stored"] == 3).then_some(())
        },
    );
    let (code, out) = run(&["approve", "nobody@example.com"], &cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no mailbox nobody@example.com"), "{out}");

    // send, then outbox by list and by id.
    let (code, out) = run(
        &[
            "send",
            "--from",
            GOOD,
            "--to",
            "someone@example.net",
            "--subject",
            "from the CLI",
            "--text",
            "hello",
        ],
        &cfg,
    );
    assert_eq!(code, 0, "{out}");
    let id: u64 = out
        .trim()
        .strip_prefix("queued: id ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an id in {out}"));
    let (code, out) = run(&["outbox"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().next() == Some(&id.to_string()) && l.contains(GOOD)),
        "{out}"
    );
    let (code, one) = run(&["outbox", &id.to_string()], &cfg);
    assert_eq!(code, 0, "{one}");
    assert_eq!(one.lines().count(), 2, "a header and the email: {one}");
    let (code, json) = run(&["outbox", &id.to_string(), "--json"], &cfg);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["id"], id, "{json}");
    assert_eq!(v["mailbox"], GOOD, "{json}");
    let (code, json) = run(&["outbox", "--json"], &cfg);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(
        v["outbox"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["id"] == id)),
        "{json}"
    );
    // A status that is not one is the command line's mistake (2), with the ones there are.
    let (code, out) = run(&["outbox", "--status", "queued"], &cfg);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("pending_send, sending, sent, failed"), "{out}");

    // test: Test & Enable through the running appliance.
    let (code, out) = run(&["test", GOOD], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(GOOD) && l.contains("success")),
        "{out}"
    );

    assert!(s.terminate().success());
    assert!(
        !data.join("control.sock").exists(),
        "the socket goes with the process"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_help() {
    let (status, out) = cli(&["completions", "bash"]);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("sidesync") && out.contains("check-config"),
        "{out}"
    );
    let (status, man) = cli(&["man"]);
    assert!(status.success(), "{man}");
    assert!(
        man.starts_with(".ie") || man.contains(".TH sidesync"),
        "{man}"
    );
    for sub in ["status", "approve", "alerts", "outbox", "send", "test"] {
        assert!(man.contains(sub), "the man page names {sub}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, out) = cli(&["man", "--dir", dir.path().to_str().expect("utf-8")]);
    assert!(status.success(), "{out}");
    for page in [
        "sidesync.1",
        "sidesync-run.1",
        "sidesync-status.1",
        "sidesync-secret-rotate.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let (status, out) = cli(&["completions", "tcsh"]);
    assert!(!status.success(), "an unknown shell is refused: {out}");
}

#[test]
fn a_mailbox_that_stops_syncing_goes_stale_with_one_warning() {
    use support::appliance::Setup;
    use support::proxy::{Mode, Proxy};
    let d = Dovecot::start();
    let setup = Setup::new();
    const USER: &str = "op-stale@example.com";
    d.deliver(USER, &mail::sample(USER, 0, 1_500), "", SystemTime::now());
    // The server answers through a proxy the test can make stall: connections then hang until
    // the connection timeout, so syncs stop succeeding without the mailbox being disabled.
    let proxy = Proxy::start(d.imap_port, Mode::Forward);
    let cfg = setup.write(
        "stale_after_polls = 3\n",
        &format!(
            "[[profile]]\ntrack = \"all\"\nname = \"p\"\nis_default = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\n\
             incoming_tls = \"none\"\nallow_plaintext_login = true\nmin_polling_interval = \"1s\"\n\
             timeout_mailbox_connection_after = \"30s\"\n\n\
             [[mailbox]]\nemail_address = \"{USER}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
            proxy.port
        ),
    );
    let s = setup.start(&cfg);
    let synced = wait_for("the first sync", Duration::from_secs(60), || {
        let m = s.mailbox(USER);
        (m["activities_stored"] == 1).then_some(m)
    });
    assert_eq!(synced["stale"], false, "{synced}");
    let stale_alerts = || -> usize {
        let (_, body) = support::sidesync::http(
            setup.port,
            "GET",
            &format!("/api/v1/alerts?mailbox={USER}"),
            Some(support::appliance::TOKEN),
            "",
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["alerts"]
            .as_array()
            .map(|a| a.iter().filter(|a| a["code"] == "mailbox_stale").count())
            .unwrap_or(0)
    };
    assert_eq!(stale_alerts(), 0);

    proxy.set_mode(Mode::Stall);
    let m = wait_for("the mailbox goes stale", Duration::from_secs(60), || {
        let m = s.mailbox(USER);
        (m["stale"] == true && m["stale_alerted_at"].is_string()).then_some(m)
    });
    assert_eq!(m["processing"], "enabled", "stale, not disabled: {m}");
    let (_, metrics) = support::sidesync::http_get(setup.port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("\nsidesync_mailboxes_stale 1\n"),
        "{metrics}"
    );
    let (_, page) = support::sidesync::http_get(setup.port, "/").expect("page");
    assert!(page.contains(", stale</td>"), "the page says so");
    let (_, alerts) = support::sidesync::http(
        setup.port,
        "GET",
        &format!("/api/v1/alerts?mailbox={USER}"),
        Some(support::appliance::TOKEN),
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&alerts).expect("json");
    let alert = v["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["code"] == "mailbox_stale"))
        .unwrap_or_else(|| panic!("a stale alert: {alerts}"));
    assert_eq!(alert["level"], "warning", "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|t| t.contains("has not synced successfully for 3 polling intervals")),
        "{alert}"
    );
    // Still stale a few watch rounds later: still one alert.
    let alerted_at = m["stale_alerted_at"].clone();
    // The watch looks every second here (the shortest polling interval): let three rounds pass.
    let at = alerted_at
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("a time");
    wait_for("three more watch rounds", Duration::from_secs(30), || {
        (chrono::Utc::now() >= at + chrono::Duration::seconds(3)).then_some(())
    });
    assert_eq!(stale_alerts(), 1, "one warning per episode");
    assert_eq!(s.mailbox(USER)["stale_alerted_at"], alerted_at);

    // The server answers again: the next successful sync ends the episode.
    proxy.set_mode(Mode::Forward);
    d.deliver(USER, &mail::sample(USER, 1, 1_500), "", SystemTime::now());
    // The new email is committed before its sync completes: wait for the sync's end too.
    let m = wait_for(
        "it syncs again and is no longer stale",
        Duration::from_secs(90),
        || {
            let m = s.mailbox(USER);
            (m["activities_stored"] == 2 && m["stale"] == false).then_some(m)
        },
    );
    assert!(m["stale_alerted_at"].is_null(), "{m}");
    assert!(s.terminate().success());
}

#[test]
fn a_first_sync_of_ten_thousand_emails_shows_its_progress() {
    use support::appliance::Setup;
    use support::sidesync::http_get;
    const USER: &str = "op-big@example.com";
    const COUNT: u64 = 10_000;
    let d = Dovecot::start();
    let setup = Setup::new();
    for n in 0..COUNT as usize {
        d.deliver(USER, &mail::sample(USER, n, 600), "", SystemTime::now());
    }
    let cfg = setup.write(
        "fetch_batch_size = 100\n",
        &format!(
            "[[profile]]\ntrack = \"all\"\nname = \"p\"\nis_default = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\n\
             incoming_tls = \"none\"\nallow_plaintext_login = true\nmin_polling_interval = \"1m\"\n\n\
             [[mailbox]]\nemail_address = \"{USER}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
            d.imap_port
        ),
    );
    let s = setup.start(&cfg);
    // One moment of the sync, seen in /status, /metrics and on the page together.
    let (progress, metrics, page) =
        wait_for("the first sync half way", Duration::from_secs(120), || {
            let p = s.mailbox(USER)["sync_progress"].clone();
            let stored = p["stored"].as_u64()?;
            if !(p["first_sync"] == true && p["on_server"] == COUNT && stored > 0 && stored < COUNT)
            {
                return None;
            }
            let (_, metrics) = http_get(setup.port, "/metrics")?;
            let (_, page) = http_get(setup.port, "/")?;
            let (_, filtered) = http_get(setup.port, "/?state=first_sync")?;
            (metrics.contains("\nsidesync_first_syncs_running 1\n")
                && page.contains("first sync ")
                && filtered.contains("1 of 1 mailboxes match"))
            .then_some((p, metrics, page))
        });
    assert!(
        progress["rate_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{progress}"
    );
    assert!(progress["eta_seconds"].is_u64(), "{progress}");
    assert!(
        metrics.contains(&format!("\nsidesync_first_sync_emails_on_server {COUNT}\n")),
        "{metrics}"
    );
    assert!(
        page.contains("<progress max=\"10000\""),
        "the page shows a bar"
    );
    assert!(page.contains("/s"), "and a rate");

    // Done: every email stored once, and no progress left behind.
    let m = wait_for("the first sync done", Duration::from_secs(300), || {
        let m = s.mailbox(USER);
        (m["activities_stored"] == COUNT && m["sync_progress"].is_null()).then_some(m)
    });
    assert_eq!(m["activities_stored"], COUNT);
    let (_, metrics) = http_get(setup.port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("\nsidesync_first_syncs_running 0\n"),
        "{metrics}"
    );
    assert!(s.terminate().success());
}

/// The control socket knows who connected (SO_PEERCRED): root is an admin, another member of
/// the socket's group reads until `control_groups` gives that group more, and the audit line
/// names the user. Needs root to act as another user (CI and the fresh machine are root).
#[test]
fn the_control_socket_knows_who_asks_and_what_they_may_do() {
    use std::os::unix::fs::PermissionsExt;
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
    {
        eprintln!("skipped: acting as another local user needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let data = dir.path().join("data");
    let cfg = dir.path().join("sidesync.toml");
    let write = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[appliance]\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\n\
                 allow_plaintext_passwords = true\n{extra}\n\
                 [[profile]]\nname = \"p\"\nis_default = true\n\
                 incoming_server_location = \"127.0.0.1\"\nincoming_port_number = 9\n\
                 min_polling_interval = \"1h\"\n\
                 [[mailbox]]\nemail_address = \"{WAITING}\"\npassword = \"pw\"\n",
                data.display()
            ),
        )
        .expect("config");
    };
    write("");
    let s = Sidesync::start(&cfg, &dir.path().join("sidesync.log"), port);
    // The packaged layout in small: nobody (65534) is in the socket's group, nogroup.
    for p in [dir.path(), data.as_path(), cfg.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::os::unix::fs::chown(data.join("control.sock"), Some(0), Some(65534)).expect("chown");
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(support::sidesync::binary())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("setpriv (util-linux)");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, out) = as_nobody(&["status"]);
    assert_eq!(code, 0, "a member of the group reads: {out}");
    let (code, out) = as_nobody(&["approve", WAITING]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("has scope read; this call needs admin"),
        "{out}"
    );
    // control_groups gives the group more, applied by a reload.
    write("control_groups = { nogroup = \"admin\" }");
    s.hangup();
    let out = wait_for(
        "nobody to approve once nogroup is admin",
        Duration::from_secs(30),
        || {
            let (code, out) = as_nobody(&["approve", WAITING]);
            (code == 0).then_some(out)
        },
    );
    assert_eq!(out.trim(), format!("{WAITING}: approval approved"));
    let log = wait_for("the audit line", Duration::from_secs(10), || {
        let log = s.log_text();
        log.lines()
            .any(|l| {
                l.contains("audit: api call") && l.contains("uid 65534") && l.contains("nobody")
            })
            .then_some(log)
    });
    assert!(
        !log.contains("who=control socket"),
        "the audit names the user"
    );
    // Root is the admin it always was (the approved mailbox's server is not there: 1).
    let (code, out) = run(&["status"], &cfg);
    assert!(code == 0 || code == 1, "{out}");
    assert!(out.starts_with("sidesync "), "{out}");
    assert!(s.terminate().success());
}
