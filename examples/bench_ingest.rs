//! Initial-ingest benchmark: sidesync against mbsync (and a bare client that stores nothing) on the
//! same dovecot mailbox over TLS, in the same run. Run it through `bench/ingest.sh`.
//!
//! Each tool runs under `/usr/bin/time`, which gives wall time, client CPU and peak RSS.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use support::dovecot::{Dovecot, PASSWORD};
use support::mail;

const USER: &str = "bench@example.com";

struct Measure {
    tool: String,
    seconds: f64,
    cpu: f64,
    rss_kb: u64,
}

/// Runs `cmd` under /usr/bin/time and returns its wall time, user+sys CPU and max RSS.
fn timed(tool: &str, cmd: &mut Command, out_dir: &Path) -> Measure {
    let time_file = out_dir.join(format!("{tool}.time"));
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&time_file)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    let out = wrapped
        .output()
        .expect("run under /usr/bin/time (package time)");
    assert!(
        out.status.success(),
        "{tool} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(&time_file).expect("time output");
    let f: Vec<f64> = t
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "unexpected /usr/bin/time output {t:?}");
    Measure {
        tool: tool.to_string(),
        seconds: f[0],
        cpu: f[1] + f[2],
        rss_kb: f[3] as u64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let root = PathBuf::from(
        std::env::var("SIDESYNC_BENCH_DIR").unwrap_or_else(|_| "/tmp/sidesync-bench".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench folder");
    let sidesync = support::sidesync::binary();

    let d = Dovecot::start_in(&root.join("dovecot"));
    let mut raw_bytes = 0u64;
    for n in 0..count {
        // Sizes from 15 KB to 145 KB of body: about 77 KB on average once encoded, like office mail.
        let size = 15_000 + (n * 7_919) % 130_000;
        let raw = mail::sample(USER, n, size);
        raw_bytes += raw.len() as u64;
        d.deliver(USER, &raw, "", SystemTime::now());
    }
    let mb = raw_bytes as f64 / 1e6;
    println!(
        "mailbox: {count} emails, {mb:.0} MB, {:.1} KB average, dovecot IMAPS 127.0.0.1:{}",
        raw_bytes as f64 / count as f64 / 1e3,
        d.imaps_port
    );
    // Build dovecot's index once so that no tool pays for the first scan.
    let _ = Command::new("doveadm")
        .arg("-c")
        .arg(d.dir.join("dovecot.conf"))
        .args(["index", "-u", USER, "INBOX"])
        .status();

    let mut results: Vec<Measure> = Vec::new();
    for round in 0..rounds {
        // mbsync, default settings (FSync yes), into a fresh maildir.
        let mdir = root.join(format!("mbsync-{round}"));
        std::fs::create_dir_all(mdir.join("INBOX")).expect("mbsync dir");
        let rc = root.join(format!("mbsyncrc-{round}"));
        std::fs::write(
            &rc,
            format!(
                "IMAPAccount bench\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass {PASSWORD}\nSSLType IMAPS\nCertificateFile {ca}\n\n\
                 IMAPStore remote\nAccount bench\n\nMaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\n\n\
                 Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nSync Pull\nCreate Near\nSyncState *\n",
                port = d.imaps_port,
                ca = d.ca_file.display(),
                dir = mdir.display()
            ),
        )
        .expect("mbsyncrc");
        results.push(timed(
            "mbsync",
            Command::new("mbsync")
                .arg("-q")
                .arg("-c")
                .arg(&rc)
                .arg("bench"),
            &root,
        ));

        // sidesync, durable batch commits, into a fresh store.
        let data = root.join(format!("sidesync-data-{round}"));
        let cfg = root.join(format!("sidesync-{round}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[appliance]\ndata_dir = \"{data}\"\n\n[[profile]]\nname = \"bench\"\nis_default = true\n\
                 incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\nca_file = \"{ca}\"\n\n\
                 [[mailbox]]\nemail_address = \"{USER}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
                data = data.display(),
                port = d.imaps_port,
                ca = d.ca_file.display()
            ),
        )
        .expect("config");
        // BENCH_WRAP="perf record -g -o /tmp/p.data --" (or strace -c …) runs sidesync under a
        // profiler: profile before you tune.
        let wrap: Vec<String> = std::env::var("BENCH_WRAP")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let mut cmd = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&sidesync);
                c
            }
            None => Command::new(&sidesync),
        };
        cmd.args(["run", "--once", "--config"])
            .arg(&cfg)
            .env("SIDESYNC_LOG", "warn");
        results.push(timed("sidesync", &mut cmd, &root));
        let store = sidesync::store::Store::open(&data).expect("store");
        let stored = store.activity_count().expect("count") as usize;
        assert_eq!(stored, count, "sidesync stored {stored} of {count}");
        if round == 0 {
            let compressed = store.compressed_raw_bytes().expect("bytes");
            println!(
                "sidesync store: raw MIME compressed to {:.0}% of the raw bytes",
                compressed as f64 * 100.0 / raw_bytes as f64
            );
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&mdir);

        // The bare client: fetches and discards.
        results.push(timed(
            "bare-python",
            Command::new("python3")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/bare_imap.py"))
                .args([
                    "127.0.0.1",
                    &d.imaps_port.to_string(),
                    &d.ca_file.display().to_string(),
                    USER,
                    PASSWORD,
                ]),
            &root,
        ));
    }

    println!(
        "\n{:<12} {:>5} {:>8} {:>9} {:>7} {:>8} {:>11} {:>9}",
        "tool", "round", "seconds", "msgs/s", "MB/s", "CPU s", "CPU ms/msg", "RSS MB"
    );
    for (i, m) in results.iter().enumerate() {
        println!(
            "{:<12} {:>5} {:>8.2} {:>9.0} {:>7.1} {:>8.2} {:>11.3} {:>9.1}",
            m.tool,
            i / 3 + 1,
            m.seconds,
            count as f64 / m.seconds,
            mb / m.seconds,
            m.cpu,
            m.cpu * 1000.0 / count as f64,
            m.rss_kb as f64 / 1024.0
        );
    }
    // Each round runs the tools back to back: ratios within a round are the fair comparison on a
    // noisy machine. Report every round's ratios and their median.
    let by_round =
        |tool: &str| -> Vec<&Measure> { results.iter().filter(|m| m.tool == tool).collect() };
    let (s, m, b) = (
        by_round("sidesync"),
        by_round("mbsync"),
        by_round("bare-python"),
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let speed: Vec<f64> = (0..rounds).map(|r| m[r].seconds / s[r].seconds).collect();
    let cpu: Vec<f64> = (0..rounds).map(|r| s[r].cpu / m[r].cpu).collect();
    let bare: Vec<f64> = (0..rounds).map(|r| b[r].seconds / s[r].seconds).collect();
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "\nper round: sidesync/mbsync msgs/s {}; sidesync/mbsync CPU per message {}; sidesync/bare msgs/s {}",
        show(&speed),
        show(&cpu),
        show(&bare)
    );
    println!(
        "median of {rounds} rounds:\n  sidesync/mbsync throughput: {:.2}x (target >= 1.5)\n  \
         sidesync/mbsync client CPU per message: {:.2} (target <= 0.5)\n  sidesync/bare throughput: {:.2} (target >= 0.8)",
        median(speed.clone()),
        median(cpu.clone()),
        median(bare.clone())
    );
}
