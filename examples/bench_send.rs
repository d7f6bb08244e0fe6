//! Outgoing benchmark: sidesync sending 10,000 emails of about 10 KB into postfix's smtp-sink,
//! against postfix's own smtp-source with the same size and concurrency, in the same run.
//! Run it through `bench/send.sh`.
//!
//! sidesync's emails are queued through its API first (with the mailbox not yet approved, so
//! nothing goes out); the clock starts at the approval and stops when the last email is Sent.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::sidesync::{Sidesync, http};
use support::{free_port, wait_for};

const TOKEN: &str = "bench-token-0123456789abcdef";
const FROM: &str = "bench-sender@example.com";

fn sink(port: u16) -> Child {
    let user =
        if String::from_utf8_lossy(&Command::new("id").arg("-u").output().expect("id").stdout)
            .trim()
            == "0"
        {
            "nobody"
        } else {
            "root"
        };
    let mut c = Command::new("smtp-sink");
    if user == "nobody" {
        c.args(["-u", "nobody"]);
    }
    // -a: no AUTH offered (smtp-source does not authenticate either).
    let child = c
        .args(["-a", &format!("127.0.0.1:{port}"), "256"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (package postfix)");
    wait_for("smtp-sink", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    child
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of each thread of a process: tid → (name, seconds).
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<u32, (String, f64)> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let name = stat
            .split('(')
            .nth(1)
            .and_then(|x| x.split(')').next())
            .unwrap_or("")
            .to_string();
        let tid: u32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        out.insert(tid, (name, (ticks(11) + ticks(12)) / 100.0));
    }
    out
}

fn smtp_source(port: u16, sessions: usize, count: usize, size: usize) -> (f64, f64) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%U %S",
            "smtp-source",
            "-d",
            "-s",
            &sessions.to_string(),
            "-m",
            &count.to_string(),
        ])
        .args([
            "-l",
            &size.to_string(),
            "-f",
            FROM,
            "-t",
            "rcpt@example.net",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("smtp-source (package postfix) under /usr/bin/time");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8_lossy(&out.stderr);
    let cpu: f64 = t
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse::<f64>().ok())
        .sum();
    (secs, cpu)
}

/// sidesync's figures of one round: the drain (from approval to the last Sent), the enqueue
/// phase (the POSTs: MIME build, compression, durable enqueue) and end to end (from the first
/// POST to the last Sent).
struct SendFigures {
    drain_s: f64,
    drain_cpu: f64,
    enqueue_s: f64,
    enqueue_cpu: f64,
    end_to_end_s: f64,
}

fn sidesync_send(
    root: &Path,
    port: u16,
    sessions: usize,
    count: usize,
    size: usize,
) -> SendFigures {
    let dir = root.join(format!("sidesync-{sessions}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("api.token"), TOKEN).expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("api.token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
    }
    let status_port = free_port();
    let config = dir.join("sidesync.toml");
    std::fs::write(
        &config,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{data}\"\nstatus_listen = \"127.0.0.1:{status_port}\"\napi_token_file = \"{token}\"\n\n\
             [[profile]]\nname = \"relay\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
             outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {port}\noutgoing_tls = \"none\"\nallow_plaintext_login = true\n\
             max_concurrent_connections = {sessions}\n\n\
             [[mailbox]]\nemail_address = \"{FROM}\"\npassword = \"unused\"\nincoming_delivery = \"none\"\n\
             approval = \"pending_approval\"\n",
            data = dir.join("data").display(),
            token = dir.join("api.token").display(),
        ),
    )
    .expect("config");
    let s = Sidesync::start(&config, &dir.join("sidesync.log"), status_port);
    // Queue everything while the mailbox is not approved: nothing goes out yet.
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(size / 57 + 1);
    let body = &body[..size.min(body.len())];
    let threads = 4;
    let pid = s.child.id();
    let enqueue_cpu_before = cpu_seconds(pid);
    let enqueue_started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for n in (t..count).step_by(threads) {
                    let email = serde_json::json!({"from": FROM, "to": ["rcpt@example.net"], "subject": format!("bench {n}"), "text": body});
                    let (code, answer) = http(status_port, "POST", "/api/v1/outbox", Some(TOKEN), &email.to_string());
                    assert_eq!(code, 202, "{answer}");
                }
            });
        }
    });
    let enqueue_s = enqueue_started.elapsed().as_secs_f64();
    let cpu_before = cpu_seconds(pid);
    let enqueue_cpu = cpu_before - enqueue_cpu_before;
    let threads_before = thread_cpu(pid);
    // BENCH_PERF=FILE records the sending phase with `perf record -g` (for profiling).
    let perf = std::env::var("BENCH_PERF").ok().map(|out| {
        Command::new("perf")
            .args(["record", "-g", "-o", &out, "-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf")
    });
    let started = Instant::now();
    let (code, answer) = http(
        status_port,
        "POST",
        &format!("/api/v1/mailboxes/{FROM}/approve"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{answer}");
    let sent = |s: &Sidesync| s.mailbox(FROM)["outbox"]["sent"].as_u64().unwrap_or(0) as usize;
    let mut first: Option<f64> = None;
    loop {
        let n = sent(&s);
        if n > 0 && first.is_none() {
            first = Some(started.elapsed().as_secs_f64());
        }
        if n >= count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "sending took too long: {} sent",
            sent(&s)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = started.elapsed().as_secs_f64();
    let end_to_end_s = enqueue_started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    if let Some(mut perf) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
    if std::env::var_os("BENCH_THREADS").is_some() {
        eprintln!("  first email sent after {:.3} s", first.unwrap_or(secs));
    }
    if std::env::var_os("BENCH_THREADS").is_some() {
        // Where the CPU of the sending phase went, thread by thread.
        for (tid, (name, after)) in thread_cpu(pid) {
            let before = threads_before.get(&tid).map_or(0.0, |b| b.1);
            eprintln!("  thread {name}: {:.2} s", after - before);
        }
    }
    let failed = s.mailbox(FROM)["outbox"]["failed"].as_u64().unwrap_or(0);
    assert_eq!(failed, 0, "no email may fail");
    assert!(s.terminate().success());
    SendFigures {
        drain_s: secs,
        drain_cpu: cpu,
        enqueue_s,
        enqueue_cpu,
        end_to_end_s,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_240);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let root = PathBuf::from(
        std::env::var("SIDESYNC_BENCH_DIR").unwrap_or_else(|_| "/tmp/sidesync-bench-send".into()),
    );
    std::fs::create_dir_all(&root).expect("bench dir");
    println!(
        "{count} emails of {size} bytes into smtp-sink on loopback (no TLS, no AUTH), {rounds} rounds, same run\n"
    );
    println!(
        "{:<12} {:>11} {:>5} {:>9} {:>9} {:>8} {:>11}",
        "tool", "concurrency", "round", "seconds", "msgs/s", "CPU s", "CPU ms/msg"
    );
    let mut summary = Vec::new();
    // BENCH_SESSIONS=10 runs one concurrency only (for profiling).
    let all_sessions: Vec<usize> = std::env::var("BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(vec![1, 10], |n| vec![n]);
    for sessions in all_sessions {
        let mut ratios = Vec::new();
        let mut e2e_ratios = Vec::new();
        for round in 1..=rounds {
            let port = free_port();
            let mut child = sink(port);
            // Each round runs the two back to back: the ratio within a round is the fair one.
            let sink_cpu0 = cpu_seconds(child.id());
            let (src_s, src_cpu) = smtp_source(port, sessions, count, size);
            let sink_cpu1 = cpu_seconds(child.id());
            let figures = sidesync_send(&root, port, sessions, count, size);
            let (ss_s, ss_cpu) = (figures.drain_s, figures.drain_cpu);
            let sink_cpu2 = cpu_seconds(child.id());
            if std::env::var_os("BENCH_THREADS").is_some() {
                // smtp-sink shares the two cores: what it used while each client ran.
                eprintln!(
                    "  smtp-sink CPU: {:.2} s under smtp-source, {:.2} s under sidesync",
                    sink_cpu1 - sink_cpu0,
                    sink_cpu2 - sink_cpu1
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            for (tool, s, cpu) in [("smtp-source", src_s, src_cpu), ("sidesync", ss_s, ss_cpu)] {
                println!(
                    "{tool:<12} {sessions:>11} {round:>5} {s:>9.2} {:>9.0} {cpu:>8.2} {:>11.3}",
                    count as f64 / s,
                    cpu * 1000.0 / count as f64
                );
            }
            println!(
                "{:<12} {sessions:>11} {round:>5} {:>9.2} {:>9.0} {:>8.2} {:>11.3}   (enqueue: the POSTs)",
                "  enqueue",
                figures.enqueue_s,
                count as f64 / figures.enqueue_s,
                figures.enqueue_cpu,
                figures.enqueue_cpu * 1000.0 / count as f64
            );
            println!(
                "{:<12} {sessions:>11} {round:>5} {:>9.2} {:>9.0} {:>8.2} {:>11.3}   (end to end: first POST to last Sent)",
                "  end-to-end",
                figures.end_to_end_s,
                count as f64 / figures.end_to_end_s,
                figures.enqueue_cpu + ss_cpu,
                (figures.enqueue_cpu + ss_cpu) * 1000.0 / count as f64
            );
            ratios.push(src_s / ss_s);
            e2e_ratios.push(src_s / figures.end_to_end_s);
        }
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        let e2e_shown: Vec<String> = e2e_ratios.iter().map(|r| format!("{r:.2}")).collect();
        e2e_ratios.sort_by(f64::total_cmp);
        summary.push((
            sessions,
            shown.join(" "),
            ratios[ratios.len() / 2],
            e2e_shown.join(" "),
            e2e_ratios[e2e_ratios.len() / 2],
        ));
    }
    println!();
    for (sessions, all, median, e2e_all, e2e_median) in summary {
        println!(
            "concurrency {sessions}: sidesync / smtp-source throughput per round {all}; median {median:.2} (target >= 1.0)"
        );
        println!(
            "  end to end (queueing included; smtp-source's figure includes making its messages): {e2e_all}; median {e2e_median:.2}"
        );
    }
}
