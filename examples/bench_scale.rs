//! Scale: N mailboxes against dovecot on loopback (IMAPS, a passwd-file of N users), 1,000 of them
//! (all, when fewer) holding 3 emails, polling at the given interval. It reports the first sync of
//! all N (Test & Enable included) beside a bare Python client logging in to every mailbox once
//! (the floor, in the same run, before and after sidesync), then a steady-state window: CPU and
//! RSS of sidesync and of dovecot, polls completed per minute, errors. Run it through
//! `bench/scale.sh`.

#[path = "common/bench.rs"]
mod bench;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use support::dovecot::{Dovecot, PASSWORD};

/// The sum of a metric family's samples whose labels contain `labels` ("" for all).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (utime + stime, cutime + cstime) of a process, in ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    // After ")": state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    (get(11) + get(12), get(13) + get(14))
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Dovecot's processes: (pid, ppid, command line) of every process whose command line names
/// dovecot.
fn dovecot_processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains("dovecot") {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid, cmd));
    }
    out
}

/// Dovecot's CPU so far in ticks (its master, what it reaped of exited children, and the live
/// ones) and its resident memory in KB.
fn dovecot_usage(master: u32) -> (u64, u64) {
    let (own, reaped) = cpu_ticks(master);
    let mut cpu = own + reaped;
    let mut rss = status_kb(master, "VmRSS:");
    for (pid, ppid, _) in dovecot_processes() {
        if ppid == master {
            cpu += cpu_ticks(pid).0;
            rss += status_kb(pid, "VmRSS:");
        }
    }
    (cpu, rss)
}

fn floor(d: &Dovecot, users_file: &Path, threads: usize) -> (u64, u64, f64) {
    let out = Command::new("python3")
        .arg("bench/bare_login.py")
        .arg("127.0.0.1")
        .arg(d.imaps_port.to_string())
        .arg(&d.ca_file)
        .arg(users_file)
        .arg(PASSWORD)
        .arg(threads.to_string())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 3, "bare_login.py said {text:?} {:?}", out.stderr);
    (f[0] as u64, f[1] as u64, f[2])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let steady: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(180);
    let interval = args.get(3).cloned().unwrap_or_else(|| "1m".into());
    let floor_threads: usize = std::env::var("BENCH_FLOOR_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let extra_profile = std::env::var("BENCH_PROFILE_EXTRA").unwrap_or_default();
    let extra_appliance = std::env::var("BENCH_APPLIANCE_EXTRA").unwrap_or_default();
    let tck = ticks_per_second();
    let root = PathBuf::from("/tmp/sidesync-bench-scale");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("dovecot")).expect("bench folder");
    // Enough dovecot processes and clients for sidesync's concurrent syncs and the sessions it
    // keeps open between polls (one imap process each).
    std::fs::write(
        root.join("dovecot/extra.conf"),
        "default_client_limit = 8000\ndefault_process_limit = 3000\n\
         service imap {\n  process_limit = 3000\n}\nservice auth {\n  client_limit = 9000\n}\n",
    )
    .expect("extra.conf");
    let d = Dovecot::start_in(&root.join("dovecot"));
    let users: Vec<String> = (0..n).map(|i| format!("scale{i}@example.com")).collect();
    // The passwd-file at once (adding users one by one rewrites it each time).
    let passwd: String = users
        .iter()
        .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}\n"))
        .collect();
    std::fs::write(d.dir.join("users"), passwd).expect("users");
    let users_file = root.join("addresses");
    std::fs::write(&users_file, users.join("\n") + "\n").expect("addresses");
    let with_mail = n.min(1_000);
    for (i, u) in users.iter().take(with_mail).enumerate() {
        for k in 0..3 {
            let raw = format!(
                "Message-ID: <scale-{i}-{k}@bench>\r\nFrom: a@example.net\r\nTo: {u}\r\n\
                 Subject: scale {i} {k}\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nbody {i} {k}\r\n"
            );
            d.deliver(u, raw.as_bytes(), "", SystemTime::now());
        }
    }
    eprintln!("{n} mailboxes, {with_mail} with 3 emails; the floor (cold) …");
    let cold = floor(&d, &users_file, floor_threads);

    let token = bench::write_token(&root);
    let port = support::free_port();
    // The config, with `more` profile lines (written again for the second window's reload).
    let write_config = |more: &str| {
        bench::appliance_config(
            &root,
            port,
            &token,
            &d,
            &extra_appliance,
            "scale",
            &format!("min_polling_interval = \"{interval}\"\n{more}{extra_profile}"),
            &users,
        )
    };
    let cfg_path = write_config("");
    let master = dovecot_processes()
        .into_iter()
        .find(|(_, ppid, cmd)| *ppid == std::process::id() && cmd.contains("dovecot.conf"))
        .map(|(pid, _, _)| pid)
        .expect("dovecot's master process");
    let (dovecot_cpu0, _) = dovecot_usage(master);
    let started = Instant::now();
    let mut child = bench::spawn_appliance(&root, &cfg_path, "warn");
    let pid = child.id();
    eprintln!("sidesync started; waiting for the first sync of every mailbox …");
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut last_print = Instant::now();
    let first = loop {
        assert!(Instant::now() < deadline, "the first syncs did not finish");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sidesync exited ({status})");
        }
        std::thread::sleep(Duration::from_secs(2));
        let Some(m) = bench::api_get(port, "/metrics") else {
            continue;
        };
        let ok = metric(&m, "sidesync_mailboxes", "state=\"ok\"");
        let failing = metric(&m, "sidesync_mailboxes", "state=\"failing\"");
        let off = metric(&m, "sidesync_mailboxes", "state=\"not_processed\"");
        if last_print.elapsed() > Duration::from_secs(20) {
            eprintln!("  {ok} ok, {failing} failing, {off} not processed");
            last_print = Instant::now();
        }
        if ok + failing + off >= n as f64 {
            break (started.elapsed(), m);
        }
    };
    let (first_time, first_metrics) = first;
    let first_cpu = cpu_ticks(pid).0 as f64 / tck;
    let ingested = metric(&first_metrics, "sidesync_emails_ingested_total", "");
    eprintln!(
        "first sync of all {n} in {:.1} s; steady state for {steady} s …",
        first_time.as_secs_f64()
    );
    // Steady state: from one minute after the first syncs (the first polls spread out), for
    // `steady` seconds.
    std::thread::sleep(Duration::from_secs(60));
    let m0 = bench::api_get(port, "/metrics").unwrap_or_default();
    let cpu0 = cpu_ticks(pid).0;
    let (dcpu0, _) = dovecot_usage(master);
    // Flag changes on the server while the windows run (BENCH_FOLLOW_BESIDE): every 5 s, one
    // email in each of 20 of the mailboxes with mail gets \\Seen set or cleared, as a mail client
    // reading it would (a renamed maildir file; dovecot raises the folder's HIGHESTMODSEQ).
    let flips = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop_flips = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if std::env::var_os("BENCH_FOLLOW_BESIDE").is_some() {
        let (flips, stop) = (flips.clone(), stop_flips.clone());
        let dirs: Vec<PathBuf> = users
            .iter()
            .take(with_mail)
            .map(|u| d.maildir(u).join("cur"))
            .collect();
        std::thread::spawn(move || {
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for j in 0..20 {
                    let dir = &dirs[(round * 20 + j) % dirs.len()];
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    let Some(file) = entries.flatten().map(|e| e.path()).min() else {
                        continue;
                    };
                    let name = file.to_string_lossy().to_string();
                    let renamed = match name.strip_suffix(":2,S") {
                        Some(base) => format!("{base}:2,"),
                        None => match name.strip_suffix(":2,") {
                            Some(base) => format!("{base}:2,S"),
                            None => continue,
                        },
                    };
                    if std::fs::rename(&file, &renamed).is_ok() {
                        flips.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                round += 1;
                std::thread::sleep(Duration::from_secs(5));
            }
        });
    }
    let t0 = Instant::now();
    let mut peak_dovecot_rss = 0;
    let mut rss_samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(steady) {
        std::thread::sleep(Duration::from_secs(5));
        rss_samples.push(status_kb(pid, "VmRSS:"));
        peak_dovecot_rss = peak_dovecot_rss.max(dovecot_usage(master).1);
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid).0;
    let (dcpu1, dovecot_rss) = dovecot_usage(master);
    let m1 = bench::api_get(port, "/metrics").unwrap_or_default();
    let peak_rss = status_kb(pid, "VmHWM:");
    let polls = metric(&m1, "sidesync_syncs_total", "") - metric(&m0, "sidesync_syncs_total", "");
    let failures = metric(&m1, "sidesync_sync_failures_total", "");
    let connect_failures = metric(&m1, "sidesync_connection_failures_total", "");
    let handshakes = |m: &str, kind: &str| {
        metric(
            m,
            "sidesync_tls_handshakes_total",
            &format!("kind=\"{kind}\""),
        )
    };
    let full = handshakes(&m1, "full") - handshakes(&m0, "full");
    let resumed = handshakes(&m1, "resumed") - handshakes(&m0, "resumed");
    // BENCH_FOLLOW_BESIDE=1: the same steady window again with `follow_server_changes = "off"`
    // (after a reload and the re-tests it causes), while the same flag changes go on: the cost
    // of following server changes, side by side in one run.
    let beside = std::env::var_os("BENCH_FOLLOW_BESIDE").map(|_| {
        let flips_a = flips.load(std::sync::atomic::Ordering::Relaxed);
        let changes_a = metric(&m1, "sidesync_server_changes_total", "")
            - metric(&m0, "sidesync_server_changes_total", "");
        write_config("follow_server_changes = \"off\"\n");
        let _ = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status();
        eprintln!("reloaded with follow_server_changes = \"off\"; settling …");
        std::thread::sleep(Duration::from_secs(90));
        let settle = Instant::now() + Duration::from_secs(600);
        while Instant::now() < settle {
            let m = bench::api_get(port, "/metrics").unwrap_or_default();
            if metric(&m, "sidesync_mailboxes", "state=\"ok\"") >= n as f64 {
                break;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        std::thread::sleep(Duration::from_secs(60));
        flips.store(0, std::sync::atomic::Ordering::Relaxed);
        let mb0 = bench::api_get(port, "/metrics").unwrap_or_default();
        let c0 = cpu_ticks(pid).0;
        let tb = Instant::now();
        while tb.elapsed() < Duration::from_secs(steady) {
            std::thread::sleep(Duration::from_secs(5));
        }
        let wb = tb.elapsed().as_secs_f64();
        let c1 = cpu_ticks(pid).0;
        let mb1 = bench::api_get(port, "/metrics").unwrap_or_default();
        let polls_b =
            metric(&mb1, "sidesync_syncs_total", "") - metric(&mb0, "sidesync_syncs_total", "");
        let changes_b = metric(&mb1, "sidesync_server_changes_total", "")
            - metric(&mb0, "sidesync_server_changes_total", "");
        (
            flips_a,
            changes_a,
            (c1 - c0) as f64 / tck / wb * 100.0,
            polls_b / wb * 60.0,
            flips.load(std::sync::atomic::Ordering::Relaxed),
            changes_b,
        )
    });
    stop_flips.store(true, std::sync::atomic::Ordering::Relaxed);
    let warnings = std::fs::read_to_string(root.join("sidesync.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    eprintln!("the floor (warm) …");
    let warm = floor(&d, &users_file, floor_threads);
    rss_samples.sort_unstable();
    let median_rss = rss_samples.get(rss_samples.len() / 2).copied().unwrap_or(0);
    let _ = dovecot_cpu0;
    println!(
        "\n{n} mailboxes ({with_mail} with 3 emails), polling every {interval}, dovecot IMAPS on loopback\n\
         first sync of all (Test & Enable included): {:.1} s, {ingested} emails, sidesync CPU {first_cpu:.1} s\n\
         floor, a bare client ({floor_threads} thread) logging in to every mailbox once: cold {:.1} s ({} ok, {} failed), warm {:.1} s ({} ok, {} failed)\n\
         ratio first sync / floor: {:.2} (cold), {:.2} (warm)\n\
         steady state over {window:.0} s: sidesync CPU {:.1}% of one core, RSS median {:.0} MB (peak {:.0} MB); \
         dovecot CPU {:.1}% of one core, RSS {:.0} MB (peak {:.0} MB)\n\
         polls completed per minute: {:.0} of {n} mailboxes ({:.0}%)\n\
         TLS handshakes in the steady state: {full} full, {resumed} resumed ({:.0}% resumed)\n\
         errors: {failures} failed syncs, {connect_failures} failed connections, {warnings} warnings in the log",
        first_time.as_secs_f64(),
        cold.2,
        cold.0,
        cold.1,
        warm.2,
        warm.0,
        warm.1,
        first_time.as_secs_f64() / cold.2,
        first_time.as_secs_f64() / warm.2,
        (cpu1 - cpu0) as f64 / tck / window * 100.0,
        median_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        (dcpu1 - dcpu0) as f64 / tck / window * 100.0,
        dovecot_rss as f64 / 1024.0,
        peak_dovecot_rss as f64 / 1024.0,
        polls / window * 60.0,
        polls / window * 60.0 / n as f64 * 100.0,
        resumed / (full + resumed).max(1.0) * 100.0,
    );
    if let Some((flips_a, changes_a, cpu_b, polls_b, flips_b, changes_b)) = beside {
        let cpu_a = (cpu1 - cpu0) as f64 / tck / window * 100.0;
        println!(
            "following server changes (auto, the window above): CPU {cpu_a:.1}%, {flips_a} flag changes made, {changes_a} found\n\
             the same window with follow_server_changes = \"off\": CPU {cpu_b:.1}%, polls per minute {polls_b:.0}, {flips_b} flag changes made, {changes_b} found\n\
             ratio CPU auto / off: {:.2}",
            cpu_a / cpu_b.max(0.01)
        );
    }
}
