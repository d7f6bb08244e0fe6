//! Status listener benchmark at 10,000 mailboxes: latency of `/`, `/status`, `/metrics` and
//! `/healthz` from a running appliance, beside Python's `http.server` serving the same page as a
//! static file (the floor for a page of that size), in the same run. Run it through
//! `bench/status.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::sidesync::Sidesync;
use support::web::http;
use support::{free_port, wait_for};

fn timings(port: u16, path: &str, n: usize) -> (Vec<f64>, usize) {
    let mut ms = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = http(port, "GET", path, None, b"");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.code, 200, "{path}: {}", r.text());
        size = r.body.len();
    }
    ms.sort_by(f64::total_cmp);
    (ms, size)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mailboxes: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let root = PathBuf::from(
        std::env::var("SIDESYNC_BENCH_DIR").unwrap_or_else(|_| "/tmp/sidesync-bench-status".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench folder");
    // A server that accepts and never answers: the appliance is busy with it (its syncs wait
    // out their timeout, holding their slots) while the page is measured, as a working
    // appliance is.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stalled_port = stalled.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in stalled.incoming().flatten() {
            held.push(c);
        }
    });
    let port = free_port();
    let mut cfg = format!(
        "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\nretry_interval = \"1h\"\n\n\
         [[profile]]\ntrack = \"all\"\nname = \"corp\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {stalled_port}\nincoming_tls = \"none\"\nallow_plaintext_login = true\nmin_polling_interval = \"1h\"\n\
         timeout_mailbox_connection_after = \"100s\"\n\n",
        root.join("data").display()
    );
    for i in 0..mailboxes {
        cfg.push_str(&format!(
            "[[mailbox]]\nemail_address = \"user{i:05}@bench.example\"\npassword = \"pw\"\napproval = \"approved\"\n"
        ));
    }
    let cfg_path = root.join("sidesync.toml");
    std::fs::write(&cfg_path, &cfg).expect("config");
    let failing = realistic_state(&cfg_path, &cfg, &root.join("data"));
    let s = Sidesync::start(&cfg_path, &root.join("sidesync.log"), port);
    wait_for(
        "the page to list the failing mailboxes",
        Duration::from_secs(120),
        || {
            let st = s.status();
            let failed = st["mailboxes"]
                .as_array()?
                .iter()
                .filter(|m| m["last_error"].is_object())
                .count();
            (failed >= failing).then_some(())
        },
    );
    let page = http(port, "GET", "/", None, b"");
    let site = root.join("static");
    std::fs::create_dir_all(&site).expect("static dir");
    std::fs::write(site.join("index.html"), &page.body).expect("page copy");
    let static_port = free_port();
    let mut python = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &static_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    wait_for("http.server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", static_port)).ok()
    });
    println!(
        "{mailboxes} mailboxes, every one tested (transcripts kept) and synced, {failing} failing \
         with alerts; {n} sequential requests each\n"
    );
    println!(
        "{:<28} {:>10} {:>11} {:>11}",
        "endpoint", "bytes", "median ms", "p95 ms"
    );
    let mut medians = Vec::new();
    for path in ["/", "/?page=50", "/status", "/metrics", "/healthz"] {
        let (ms, size) = timings(port, path, n);
        let (median, p95) = (ms[ms.len() / 2], ms[ms.len() * 95 / 100]);
        println!(
            "{:<28} {:>10} {:>11.1} {:>11.1}",
            format!("sidesync {path}"),
            size,
            median,
            p95
        );
        medians.push((path, median));
    }
    let (ms, size) = timings(static_port, "/index.html", n);
    let floor = ms[ms.len() / 2];
    println!(
        "{:<28} {:>10} {:>11.1} {:>11.1}",
        "python http.server (static)",
        size,
        floor,
        ms[ms.len() * 95 / 100]
    );
    let _ = python.kill();
    let _ = python.wait();
    println!(
        "\nratio sidesync / to the static copy (median): {:.2}",
        medians[0].1 / floor
    );
    assert!(s.terminate().success());
}

/// Writes the store a working appliance has: every mailbox tested (both transcripts kept) and
/// synced with its counts; one in ten failing (its error, three warning alerts), one in fifty of
/// those disabled. Returns how many are failing.
fn realistic_state(cfg_path: &std::path::Path, text: &str, data: &std::path::Path) -> usize {
    use chrono::Utc;
    use sidesync::config::Config;
    use sidesync::store::{
        Alert, AlertLevel, AlertScope, DirectionTest, Enablement, MailboxUpdate, RunStatus, Store,
        TestRecord,
    };
    let config = Config::parse(cfg_path, text).expect("config");
    let store = Store::open(data).expect("store");
    let writer = store.start_writer();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let transcript = |who: &str| {
        format!(
            "S: * OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\nC: a1 STARTTLS\nS: a1 OK go\n\
             C: a2 AUTHENTICATE PLAIN ****\nS: a2 OK [CAPABILITY IMAP4rev1 IDLE CONDSTORE] {who} logged in\n\
             C: a3 EXAMINE INBOX\nS: * 1234 EXISTS\nS: * OK [UIDVALIDITY 1700000000]\nS: * OK [UIDNEXT 1235]\n\
             S: a3 OK [READ-ONLY] done\nC: a4 LOGOUT\nS: * BYE\nS: a4 OK\n"
        )
        .repeat(3)
    };
    let mut failing = 0;
    rt.block_on(async {
        let now = Utc::now();
        for (i, m) in config.mailboxes.iter().enumerate() {
            let a = m.email_address.as_str();
            let test = TestRecord {
                mailbox: a.to_string(),
                started_at: now,
                duration_ms: 180,
                incoming: DirectionTest {
                    status: RunStatus::Success,
                    code: None,
                    reason: None,
                    transient: false,
                    transcript: transcript(a),
                },
                outgoing: DirectionTest {
                    status: RunStatus::Success,
                    code: None,
                    reason: None,
                    transient: false,
                    transcript: transcript(a),
                },
            };
            let updates = [
                MailboxUpdate::Tested {
                    profile: None,
                    record: Box::new(test),
                    fingerprint: m.fingerprint.clone(),
                    incoming: Enablement::Enabled,
                    outgoing: Enablement::Enabled,
                },
                MailboxUpdate::SyncStarted { at: now },
                MailboxUpdate::SyncSucceeded {
                    at: now,
                    duration_ms: 900 + i as u64 % 500,
                },
            ];
            for u in updates {
                writer.mailbox(a, u).await.expect("state");
            }
            if i % 10 == 3 {
                failing += 1;
                let code = if i % 50 == 3 {
                    "authentication_rejected"
                } else {
                    "timeout"
                };
                let text =
                    format!("{code}: the server at 127.0.0.1 did not answer in time (mailbox {a})");
                writer
                    .mailbox(
                        a,
                        MailboxUpdate::SyncFailed {
                            at: now,
                            text: text.clone(),
                            code: code.into(),
                            transient: code == "timeout",
                            retry_at: None,
                        },
                    )
                    .await
                    .expect("failure");
                if code != "timeout" {
                    writer
                        .mailbox(
                            a,
                            MailboxUpdate::Disabled {
                                incoming: true,
                                code: code.into(),
                                reason: text.clone(),
                                at: now,
                                fingerprint: m.fingerprint.clone(),
                            },
                        )
                        .await
                        .expect("disabled");
                }
                for n in 0..3 {
                    let alert = Alert {
                        at: now - chrono::Duration::minutes(n),
                        level: AlertLevel::Warning,
                        scope: AlertScope::Mailbox,
                        mailbox: Some(a.to_string()),
                        profile: Some("corp".into()),
                        code: code.into(),
                        message: format!(
                            "Synchronization of mailbox {a} failed ({n} of 11 attempts). {text}"
                        ),
                        email: None,
                    };
                    writer
                        .alert(alert, now - chrono::Duration::days(30))
                        .await
                        .expect("alert");
                }
            }
        }
        writer.flush().await.expect("flush");
    });
    writer.shutdown();
    failing
}
