//! Webhooks at the ingest rate, same run as mbsync: a mailbox of COUNT emails is ingested by
//! mbsync and by the running appliance with a webhook for `activity.created` to an HTTPS
//! receiver (the tests' receiver: keep-alive, every signature checked). Reports, per round, the
//! time to store every email (against mbsync: the ingest ratio with webhooks on), the time until
//! the last delivery arrived, the delivery rate, and the latency from each event's commit (its
//! `at`) to its receipt, p50 and p99. Run it through `bench/webhooks.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/bench.rs"]
mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bench::{USER, mbsync_round};
use support::dovecot::{Dovecot, PASSWORD};
use support::webhook_receiver::{Receiver, SECRET};

struct Round {
    store_seconds: f64,
    delivered_seconds: f64,
    cpu_seconds: f64,
    latencies_ms: Vec<f64>,
    mbsync_seconds: f64,
}

/// user+sys CPU seconds of a running process (its /proc stat; 100 ticks per second).
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn stored(port: u16) -> u64 {
    support::sidesync::http_get(port, "/status")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["mailboxes"][0]["activities_stored"].as_u64())
        .unwrap_or(0)
}

fn sidesync_round(
    d: &Dovecot,
    receiver: &Receiver,
    root: &Path,
    round: usize,
    count: usize,
) -> (f64, f64, f64, Vec<f64>) {
    let data = root.join(format!("data-{round}"));
    let cfg = root.join(format!("sidesync-{round}.toml"));
    let secret = root.join("webhook.secret");
    std::fs::write(&secret, SECRET).expect("secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let port = support::free_port();
    std::fs::write(
        &cfg,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{data}\"\n\
             status_listen = \"127.0.0.1:{port}\"\n\n\
             [[profile]]\ntrack = \"all\"\nfirst_sync_days = 0\nname = \"bench\"\nis_default = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {imaps}\nca_file = \"{ca}\"\n\n\
             [[mailbox]]\nemail_address = \"{USER}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\n\
             [[webhook]]\nname = \"bench\"\nurl = \"{url}\"\nsecret_file = \"{secret}\"\nca_file = \"{ca}\"\n\
             events = [\"activity.created\"]\n",
            data = data.display(),
            imaps = d.imaps_port,
            ca = d.ca_file.display(),
            url = receiver.url(),
            secret = secret.display(),
        ),
    )
    .expect("config");
    receiver.received.lock().expect("received").clear();
    let start = Instant::now();
    let mut child = Command::new(support::sidesync::binary())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("SIDESYNC_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sidesync");
    let deadline = start + Duration::from_secs(1800);
    let mut store_seconds = None;
    loop {
        assert!(Instant::now() < deadline, "round {round} did not finish");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "sidesync exited early ({status}); its config is {}",
                cfg.display()
            );
        }
        if store_seconds.is_none() && stored(port) as usize >= count {
            store_seconds = Some(start.elapsed().as_secs_f64());
        }
        let got = receiver.received.lock().expect("received").len();
        if store_seconds.is_some() && got >= count {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let received = receiver.received();
    let last = received.iter().map(|r| r.at).max().unwrap_or(start);
    let delivered_seconds = (last - start).as_secs_f64();
    let cpu = cpu_of(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(
        receiver
            .bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let mut latencies: Vec<f64> = received
        .iter()
        .filter_map(|r| {
            let at = chrono::DateTime::parse_from_rfc3339(r.body["at"].as_str()?).ok()?;
            Some((r.at_utc - at.with_timezone(&chrono::Utc)).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let _ = std::fs::remove_dir_all(&data);
    (
        store_seconds.unwrap_or(0.0),
        delivered_seconds,
        cpu,
        latencies,
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let root = PathBuf::from(
        std::env::var("SIDESYNC_BENCH_DIR")
            .unwrap_or_else(|_| "/tmp/sidesync-bench-webhooks".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench folder");
    let d = Dovecot::start_in(&root.join("dovecot"));
    let corpus = support::realmail::Corpus::load();
    let mut lf_bytes = 0u64;
    for n in 0..count {
        let raw = corpus.email(USER, n, 15_000 + (n * 7_919) % 130_000);
        lf_bytes += (raw.len() - raw.windows(2).filter(|w| w == b"\r\n").count()) as u64;
        d.deliver(USER, &raw, "", SystemTime::now());
    }
    let _ = Command::new("doveadm")
        .arg("-c")
        .arg(d.dir.join("dovecot.conf"))
        .args(["index", "-u", USER, "INBOX"])
        .status();
    let receiver = Receiver::start(&d.dir.join("server.pem"), &d.dir.join("server.key"));
    let mut results = Vec::new();
    for round in 0..rounds {
        let (mb, ours) = if round % 2 == 0 {
            let mb = mbsync_round(&d, &root, round, count, lf_bytes);
            (mb, sidesync_round(&d, &receiver, &root, round, count))
        } else {
            let ours = sidesync_round(&d, &receiver, &root, round, count);
            (mbsync_round(&d, &root, round, count, lf_bytes), ours)
        };
        results.push(Round {
            mbsync_seconds: mb.seconds,
            store_seconds: ours.0,
            delivered_seconds: ours.1,
            cpu_seconds: ours.2,
            latencies_ms: ours.3,
        });
    }
    println!(
        "\n{count} emails, webhook for activity.created over HTTPS (keep-alive), same run as mbsync\n\
         {:>5} {:>9} {:>11} {:>13} {:>10} {:>10} {:>9} {:>9} {:>13}",
        "round",
        "mbsync s",
        "stored s",
        "delivered s",
        "events/s",
        "CPU s",
        "p50 ms",
        "p99 ms",
        "ingest ratio"
    );
    let mut ratios = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let ratio = r.mbsync_seconds / r.store_seconds;
        ratios.push(ratio);
        println!(
            "{:>5} {:>9.2} {:>11.2} {:>13.2} {:>10.0} {:>10.2} {:>9.1} {:>9.1} {:>13.2}",
            i + 1,
            r.mbsync_seconds,
            r.store_seconds,
            r.delivered_seconds,
            count as f64 / r.delivered_seconds,
            r.cpu_seconds,
            percentile(&r.latencies_ms, 0.5),
            percentile(&r.latencies_ms, 0.99),
            ratio
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ingest ratio against mbsync with webhooks on: {:.2}x",
        ratios[ratios.len() / 2]
    );
}
