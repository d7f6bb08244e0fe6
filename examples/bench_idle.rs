//! IDLE latency: N mailboxes (default 1,000) on IDLE against dovecot on loopback (IMAPS), polling
//! once a day, and emails delivered into random mailboxes at a steady rate; the latency of each
//! from its delivery to its `activity.created` event in the API (a consumer long-polls
//! `/api/v1/events`), p50 and p99, with the RSS of sidesync and of dovecot's processes. Run it
//! through `bench/idle.sh`; `BENCH_HIBERNATE=1` puts idle sessions in dovecot's imap-hibernate.

#[path = "common/bench.rs"]
mod bench;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use support::dovecot::Dovecot;

/// Resident memory (KB) of the processes whose command line contains `needle`.
fn rss_kb(needle: &str) -> u64 {
    let out = Command::new("ps")
        .args(["-eo", "rss=,args="])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mailboxes: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let rate: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20.0);
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let hibernate = std::env::var("BENCH_HIBERNATE").is_ok_and(|v| v == "1");
    let root = PathBuf::from("/tmp/sidesync-bench-idle");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench folder");
    // A thousand IDLE sessions are a thousand imap processes (each behind the TLS proxy of an
    // imap-login process), unless imap-hibernate takes the idle ones.
    let mut extra = format!(
        "default_client_limit = {clients}\nservice imap {{\n  process_limit = {procs}\n}}\n",
        clients = mailboxes * 4 + 100,
        procs = mailboxes * 2 + 100
    );
    if hibernate {
        extra.push_str(
            "imap_hibernate_timeout = 5s\nservice imap {\n  unix_listener imap-master {\n    user = $default_internal_user\n  }\n  extra_groups = $default_internal_group\n}\n\
             service imap-hibernate {\n  unix_listener imap-hibernate {\n    mode = 0660\n    group = $default_internal_group\n  }\n}\n",
        );
    }
    std::fs::create_dir_all(root.join("dovecot")).expect("dovecot folder");
    std::fs::write(root.join("dovecot/extra.conf"), &extra).expect("extra.conf");
    let d = Dovecot::start_in(&root.join("dovecot"));
    let users: Vec<String> = (0..mailboxes)
        .map(|i| format!("idle{i}@example.com"))
        .collect();
    for u in &users {
        d.add_user(u);
    }
    let token = bench::write_token(&root);
    let port = support::free_port();
    let cfg_path = bench::appliance_config(
        &root,
        port,
        &token,
        &d,
        "",
        "idle",
        "idle = true\nmin_polling_interval = \"1440m\"\nmax_concurrent_connections = 2",
        &users,
    );
    let started = Instant::now();
    let mut child = bench::spawn_appliance(&root, &cfg_path, "info");
    // Every mailbox on IDLE.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        assert!(Instant::now() < deadline, "not every mailbox reached IDLE");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sidesync exited ({status})");
        }
        let text = std::fs::read_to_string(root.join("sidesync.log")).unwrap_or_default();
        assert!(
            !text.contains("mailbox is not processed"),
            "a mailbox is not processed: see {}",
            root.join("sidesync.log").display()
        );
        if text.matches("IDLE on INBOX").count() >= mailboxes {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ready = started.elapsed();
    // Let dovecot hibernate the idle sessions (when asked) before measuring memory.
    std::thread::sleep(Duration::from_secs(if hibernate { 8 } else { 2 }));
    let quiet_sidesync = rss_kb(&cfg_path.display().to_string());
    let quiet_dovecot = rss_kb("dovecot");
    // The consumer: long-polls the feed and notes when each activity appears.
    let seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let consumer = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            // The mailboxes were empty: every activity.created from the start is a delivery's.
            let mut last = 0u64;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(600) {
                let path = format!(
                    "/api/v1/events?after={last}&limit=1000&wait=5s&types=activity.created"
                );
                let Some(page) = bench::api_get(port, &path)
                    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                else {
                    continue;
                };
                let now = Instant::now();
                for e in page["events"].as_array().into_iter().flatten() {
                    if let Some(mid) = e["data"]["message_id"].as_str() {
                        seen.lock().expect("seen").insert(mid.to_string(), now);
                    }
                }
                last = page["last_seq"].as_u64().unwrap_or(last);
                if seen.lock().expect("seen").contains_key("stop@bench") {
                    return;
                }
            }
        })
    };
    // Deliveries at a steady rate into random mailboxes.
    let total = (rate * seconds) as usize;
    let mut delivered: Vec<(String, Instant)> = Vec::with_capacity(total);
    let mut rng = support::mail::Rng::new(7);
    let t0 = Instant::now();
    for n in 0..total {
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let user = &users[rng.below(mailboxes as u64) as usize];
        let mid = format!("idle-{n}@bench");
        let raw = format!(
            "Message-ID: <{mid}>\r\nFrom: a@example.net\r\nTo: {user}\r\nSubject: idle {n}\r\n\r\nbody {n}\r\n"
        );
        // Through dovecot's LDA, as a mail server delivers (a file dropped into the maildir
        // is seen only by a scan, which IDLE can miss).
        d.deliver_lda(user, raw.as_bytes());
        delivered.push((mid, Instant::now()));
    }
    // Wait until every delivery is seen (or give up after a minute).
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let s = seen.lock().expect("seen");
        if delivered.iter().all(|(m, _)| s.contains_key(m)) {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    let busy_sidesync = rss_kb(&cfg_path.display().to_string());
    let s = seen.lock().expect("seen").clone();
    let mut latencies: Vec<f64> = delivered
        .iter()
        .filter_map(|(m, at)| s.get(m).map(|seen| (*seen - *at).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let missing = delivered.len() - latencies.len();
    // Stop the consumer with a last email into the first mailbox.
    let raw = "Message-ID: <stop@bench>\r\nFrom: a@example.net\r\nSubject: stop\r\n\r\nx\r\n";
    d.deliver(&users[0], raw.as_bytes(), "", SystemTime::now());
    let _ = consumer.join();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    println!(
        "\n{mailboxes} mailboxes on IDLE (polling once a day), imap-hibernate {}\n\
         all on IDLE after {:.1} s (first syncs and Test & Enable included)\n\
         {total} emails at {rate}/s into random mailboxes: latency delivery → activity in the API \
         p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {missing} not seen within a minute\n\
         RSS quiet: sidesync {:.0} MB, dovecot (all processes) {:.0} MB; sidesync after the run {:.0} MB",
        if hibernate { "on" } else { "off" },
        ready.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        quiet_sidesync as f64 / 1024.0,
        quiet_dovecot as f64 / 1024.0,
        busy_sidesync as f64 / 1024.0,
    );
}
