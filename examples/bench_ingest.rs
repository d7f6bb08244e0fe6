//! Initial-ingest benchmark on one dovecot mailbox, every tool in the same run. IMAPS: sidesync
//! against mbsync (and a bare client that stores nothing). POP3S: sidesync against fetchmail and
//! getmail6. Run it through `bench/ingest.sh`.
//!
//! Each tool runs under `/usr/bin/time`, which gives wall time, client CPU and peak RSS.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use support::dovecot::{Dovecot, PASSWORD};
use support::mail;

#[path = "common/bench.rs"]
mod bench;
use bench::{Measure, USER, mbsync_round, timed};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let which = args.get(3).map(String::as_str).unwrap_or("all");
    // "sent": sidesync alone, INBOX under `responses` with and without a Sent folder of a
    // quarter of its size (`track_sent`, issue 26): the cost of reading it.
    let sent_only = which == "sent";
    let (imap, pop3) = match which {
        "imap" => (true, false),
        "pop3" => (false, true),
        "all" => (true, true),
        "sent" => (false, false),
        other => panic!("protocol must be imap, pop3, all or sent, not {other:?}"),
    };
    let root = PathBuf::from(
        std::env::var("SIDESYNC_BENCH_DIR").unwrap_or_else(|_| "/tmp/sidesync-bench".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench folder");
    let sidesync = support::sidesync::binary();

    // Real text and real files by default (tests/support/realmail.rs); BENCH_CORPUS=generated
    // takes the word-list corpus the earlier runs used.
    let corpus = match std::env::var("BENCH_CORPUS").as_deref() {
        Ok("generated") => None,
        _ => Some(support::realmail::Corpus::load()),
    };
    println!(
        "corpus: {}",
        if corpus.is_some() {
            "real text and files"
        } else {
            "generated"
        }
    );
    let d = Dovecot::start_in(&root.join("dovecot"));
    let mut raw_bytes = 0u64;
    // The same emails with LF line ends, as a maildir holds them (mbsync converts).
    let mut lf_bytes = 0u64;
    for n in 0..count {
        // Sizes from 15 KB to 145 KB of body: about 77 KB on average once encoded, like office mail.
        let size = 15_000 + (n * 7_919) % 130_000;
        let raw = match &corpus {
            Some(c) => c.email(USER, n, size),
            None => mail::sample(USER, n, size),
        };
        raw_bytes += raw.len() as u64;
        lf_bytes += (raw.len() - raw.windows(2).filter(|w| w == b"\r\n").count()) as u64;
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

    if sent_only {
        sent_folder_rounds(&d, &root, rounds, count, raw_bytes, &sidesync);
        return;
    }
    let mut results: Vec<Measure> = Vec::new();
    for round in 0..rounds {
        if pop3 {
            pop3_round(&d, &root, round, count, &sidesync, &mut results);
        }
        if !imap {
            continue;
        }
        // The tools take turns going first: a later run may find more of the mailbox in the
        // page cache.
        for turn in 0..3 {
            match (turn + round) % 3 {
                0 => results.push(mbsync_round(&d, &root, round, count, lf_bytes)),
                1 => results.push(
                    sidesync_round(
                        &d, &root, round, count, raw_bytes, &sidesync, "all", "", count,
                    )
                    .0,
                ),
                _ => results.push(bare_round(&d, &root, count, raw_bytes)),
            }
        }
    }

    // Relevance: the same mailbox under a user's default filter (responses), none of it answering
    // tracked email. Bytes the server sent, from dovecot's own logout lines.
    let mut relevance = None;
    if imap {
        let (all, all_out) = sidesync_round(
            &d, &root, rounds, count, raw_bytes, &sidesync, "all", "", count,
        );
        let (resp, resp_out) = sidesync_round(
            &d,
            &root,
            rounds + 1,
            count,
            raw_bytes,
            &sidesync,
            "responses",
            "",
            count,
        );
        relevance = Some((all, all_out, resp, resp_out));
    }
    println!(
        "\n{:<14} {:>5} {:>8} {:>9} {:>7} {:>8} {:>11} {:>9}",
        "tool", "round", "seconds", "msgs/s", "MB/s", "CPU s", "CPU ms/msg", "RSS MB"
    );
    let mut round_of: std::collections::HashMap<&str, usize> = Default::default();
    for m in &results {
        let r = round_of.entry(m.tool.as_str()).or_default();
        *r += 1;
        println!(
            "{:<14} {:>5} {:>8.2} {:>9.0} {:>7.1} {:>8.2} {:>11.3} {:>9.1}",
            m.tool,
            r,
            m.seconds,
            count as f64 / m.seconds,
            mb / m.seconds,
            m.cpu,
            m.cpu * 1000.0 / count as f64,
            m.rss_kb as f64 / 1024.0
        );
    }
    if let Some((all, all_out, resp, resp_out)) = &relevance {
        println!(
            "\nrelevance (one more pass each, same mailbox):\n  track = \"all\":       {:.2} s, {:.2} CPU s, server sent {} bytes ({:.0} per email)\n  track = \"responses\": {:.2} s, {:.2} CPU s, server sent {} bytes ({:.0} per skipped email; {:.1}% of all)",
            all.seconds,
            all.cpu,
            all_out,
            *all_out as f64 / count as f64,
            resp.seconds,
            resp.cpu,
            resp_out,
            *resp_out as f64 / count as f64,
            *resp_out as f64 * 100.0 / (*all_out).max(1) as f64
        );
    }
    // Each round runs the tools back to back: ratios within a round are the fair comparison on a
    // noisy machine. Report every round's ratios and their median.
    if imap {
        compare(&results, "sidesync", "mbsync", "IMAPS", rounds, 1.5, 0.5);
        compare(
            &results,
            "sidesync",
            "bare-python",
            "IMAPS",
            rounds,
            0.8,
            f64::NAN,
        );
    }
    if pop3 {
        compare(
            &results,
            "sidesync-pop3",
            "fetchmail",
            "POP3S",
            rounds,
            f64::NAN,
            f64::NAN,
        );
        compare(
            &results,
            "sidesync-pop3",
            "getmail6",
            "POP3S",
            rounds,
            f64::NAN,
            f64::NAN,
        );
    }
}

/// Bytes dovecot sent to `USER`'s IMAP sessions that logged out after log offset `from`.
fn imap_out_bytes(d: &Dovecot, from: usize) -> u64 {
    let log = d.log();
    log.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains(&format!("imap({USER})")) && l.contains("Logged out"))
        .filter_map(|l| l.split("out=").nth(1))
        .filter_map(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// The Sent folder's cost: a Sent folder of `count / 4` emails of 2–22 KB the user sent, none
/// answering tracked email (as in INBOX, so under `responses` both are read headers first and
/// skipped: the cost of a user's Sent folder that is mostly not CRM mail). Each round syncs
/// INBOX alone and INBOX + Sent into fresh stores, and prints what Sent added.
fn sent_folder_rounds(
    d: &Dovecot,
    root: &Path,
    rounds: usize,
    count: usize,
    raw_bytes: u64,
    sidesync: &Path,
) {
    let sent = count / 4;
    for n in 0..sent {
        let size = 2_000 + (n * 7_919) % 20_000;
        let raw = mail::sample(USER, 1_000_000 + n, size);
        d.deliver_to_folder(USER, "Sent", &raw);
    }
    println!("Sent folder: {sent} emails, none answering tracked email (as INBOX)");
    println!(
        "\n{:<22} {:>5} {:>8} {:>8} {:>14}",
        "sidesync, responses", "round", "seconds", "CPU s", "server bytes"
    );
    for round in 0..rounds {
        let (inbox, inbox_out) = sidesync_round(
            d,
            root,
            2 * round,
            count,
            raw_bytes,
            sidesync,
            "responses",
            "",
            count,
        );
        let (both, both_out) = sidesync_round(
            d,
            root,
            2 * round + 1,
            count,
            raw_bytes,
            sidesync,
            "responses",
            "track_sent = true\n",
            count + sent,
        );
        for (what, m, out) in [
            ("INBOX", &inbox, inbox_out),
            ("INBOX + Sent", &both, both_out),
        ] {
            println!(
                "{what:<22} {:>5} {:>8.2} {:>8.2} {:>14}",
                round + 1,
                m.seconds,
                m.cpu,
                out
            );
        }
        println!(
            "{:<22} {:>5} {:>8.2} {:>8.2} {:>14}  ({:.0} bytes, {:.3} CPU ms per Sent email)",
            "Sent adds",
            round + 1,
            both.seconds - inbox.seconds,
            both.cpu - inbox.cpu,
            both_out.saturating_sub(inbox_out),
            both_out.saturating_sub(inbox_out) as f64 / sent.max(1) as f64,
            (both.cpu - inbox.cpu) * 1000.0 / sent.max(1) as f64
        );
    }
}

/// sidesync, durable batch commits, into a fresh store, with the mailbox's filter `track`
/// and `mailbox_extra` keys (and no first-sync window); `decisions` emails are expected to be
/// decided. Returns the measure and the bytes the server sent.
#[allow(clippy::too_many_arguments)]
fn sidesync_round(
    d: &Dovecot,
    root: &Path,
    round: usize,
    count: usize,
    raw_bytes: u64,
    sidesync: &Path,
    track: &str,
    mailbox_extra: &str,
    decisions: usize,
) -> (Measure, u64) {
    let data = root.join(format!("sidesync-data-{round}"));
    let cfg = root.join(format!("sidesync-{round}.toml"));
    let log_from = d.log().len();
    std::fs::write(
        &cfg,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{data}\"\n{extra}\n\n[[profile]]\ntrack = \"{track}\"\nfirst_sync_days = 0\nname = \"bench\"\nis_default = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\nca_file = \"{ca}\"\n\n\
             [[mailbox]]\nemail_address = \"{USER}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n{mailbox_extra}",
            data = data.display(),
            extra = appliance_extra(),
            port = d.imaps_port,
            ca = d.ca_file.display()
        ),
    )
    .expect("config");
    let m = run_sidesync("sidesync", sidesync, &cfg, root);
    let store = sidesync::store::Store::open(&data).expect("store");
    let stored = store.activity_count().expect("count") as usize;
    let decided: u64 = store
        .mailbox_state(USER)
        .expect("state")
        .decisions
        .values()
        .sum();
    assert_eq!(
        decided as usize, decisions,
        "sidesync decided {decided} of {decisions}"
    );
    if track == "all" {
        assert_eq!(stored, count, "sidesync stored {stored} of {count}");
    }
    if round == 0 {
        let compressed = store.compressed_raw_bytes().expect("bytes");
        println!(
            "sidesync store: raw MIME compressed to {:.0}% of the raw bytes",
            compressed as f64 * 100.0 / raw_bytes as f64
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&data);
    (m, imap_out_bytes(d, log_from))
}

/// The bare client: fetches and discards, and says how many emails and bytes it got.
fn bare_round(d: &Dovecot, root: &Path, count: usize, raw_bytes: u64) -> Measure {
    let m = timed(
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
        root,
    );
    let got: Vec<u64> = m
        .stdout
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(
        got,
        vec![count as u64, raw_bytes],
        "the bare client must fetch every email, byte for byte"
    );
    m
}

/// Per-round and median ratios of `ours` against `anchor`: throughput (higher is better) and client
/// CPU per message (lower is better), with the targets they are held to.
fn compare(
    results: &[Measure],
    ours: &str,
    anchor: &str,
    what: &str,
    rounds: usize,
    speed_target: f64,
    cpu_target: f64,
) {
    let by = |tool: &str| -> Vec<&Measure> { results.iter().filter(|m| m.tool == tool).collect() };
    let (s, a) = (by(ours), by(anchor));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let speed: Vec<f64> = (0..rounds).map(|r| a[r].seconds / s[r].seconds).collect();
    let cpu: Vec<f64> = (0..rounds).map(|r| s[r].cpu / a[r].cpu).collect();
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let target = |t: f64, op: &str| {
        if t.is_nan() {
            String::new()
        } else {
            format!(" (target {op} {t})")
        }
    };
    println!(
        "\n{what} {ours}/{anchor}, per round: throughput {}; client CPU per message {}",
        show(&speed),
        show(&cpu)
    );
    println!(
        "  median of {rounds}: throughput {:.2}x{}, client CPU per message {:.2}{}",
        median(speed),
        target(speed_target, ">="),
        median(cpu),
        target(cpu_target, "<=")
    );
}

/// Runs `sidesync run --once` on `cfg` under /usr/bin/time. BENCH_WRAP="perf record -g -o
/// /tmp/p.data --" (or strace -c …) runs it under a profiler: profile before you tune.
fn run_sidesync(tool: &str, sidesync: &Path, cfg: &Path, root: &Path) -> Measure {
    let wrap: Vec<String> = std::env::var("BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(sidesync);
            c
        }
        None => Command::new(sidesync),
    };
    cmd.args(["run", "--once", "--config"])
        .arg(cfg)
        .env("SIDESYNC_LOG", "warn");
    timed(tool, &mut cmd, root)
}

/// One POP3S round: fetchmail (into a BSMTP file), getmail6 (into a maildir, as an unprivileged
/// user: it refuses to deliver as root) and sidesync, each retrieving the whole mailbox, messages
/// left on the server.
fn pop3_round(
    d: &Dovecot,
    root: &Path,
    round: usize,
    count: usize,
    sidesync: &Path,
    results: &mut Vec<Measure>,
) {
    let port = d.pop3s_port;
    let ca = d.ca_file.display().to_string();
    // fetchmail: keep, fetch all, certificate checked against the test CA.
    let rc = root.join(format!("fetchmailrc-{round}"));
    std::fs::write(
        &rc,
        format!(
            "set no syslog
poll 127.0.0.1 protocol POP3 port {port} user \"{USER}\" password \"{PASSWORD}\" \
             ssl sslcertck sslcertfile \"{ca}\" keep fetchall\n"
        ),
    )
    .expect("fetchmailrc");
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let bsmtp = root.join(format!("fetchmail-{round}.bsmtp"));
    results.push(timed(
        "fetchmail",
        Command::new("fetchmail")
            .args(["--silent", "--nodetach", "-f"])
            .arg(&rc)
            .arg("--bsmtp")
            .arg(&bsmtp)
            .env("FETCHMAILHOME", root),
        root,
    ));
    let fetched = std::fs::read_to_string(&bsmtp)
        .map(|t| t.matches("\nDATA\r\n").count() + t.matches("\nDATA\n").count())
        .unwrap_or(0);
    assert_eq!(
        fetched, count,
        "fetchmail wrote {fetched} of {count} messages"
    );
    let _ = std::fs::remove_file(&bsmtp);

    // getmail6: SimplePOP3SSLRetriever into a maildir, messages left on the server.
    let gdir = root.join(format!("getmail-{round}"));
    for sub in ["Maildir/cur", "Maildir/new", "Maildir/tmp"] {
        std::fs::create_dir_all(gdir.join(sub)).expect("getmail dir");
    }
    std::fs::write(
        gdir.join("getmailrc"),
        format!(
            "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = {port}\n\
             username = {USER}\npassword = {PASSWORD}\nca_certs = {ca}\n\n\
             [destination]\ntype = Maildir\npath = {}/Maildir/\n\n\
             [options]\nread_all = true\ndelete = false\nverbose = 0\n",
            gdir.display()
        ),
    )
    .expect("getmailrc");
    let _ = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&gdir)
        .status();
    let mut getmail = Command::new("setpriv");
    getmail
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "getmail",
        ])
        .arg(format!("--getmaildir={}", gdir.display()))
        .arg("--rcfile=getmailrc");
    results.push(timed("getmail6", &mut getmail, root));
    let got = std::fs::read_dir(gdir.join("Maildir/new"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(got, count, "getmail6 delivered {got} of {count} messages");
    let _ = std::fs::remove_dir_all(&gdir);

    // sidesync over POP3S, durable batch commits, into a fresh store.
    let data = root.join(format!("sidesync-pop3-data-{round}"));
    let cfg = root.join(format!("sidesync-pop3-{round}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{data}\"\n{extra}\n\n[[profile]]\ntrack = \"all\"\nname = \"bench\"\nis_default = true\n\
             server_type = \"pop3_smtp\"\nincoming_server_location = \"127.0.0.1\"\n\
             incoming_port_number = {port}\nca_file = \"{ca}\"\n\n\
             [[mailbox]]\nemail_address = \"{USER}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
            data = data.display(),
            extra = appliance_extra(),
        ),
    )
    .expect("config");
    results.push(run_sidesync("sidesync-pop3", sidesync, &cfg, root));
    let store = sidesync::store::Store::open(&data).expect("store");
    let stored = store.activity_count().expect("count") as usize;
    assert_eq!(
        stored, count,
        "sidesync stored {stored} of {count} over POP3"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&data);
}

/// Config lines for `[appliance]` from `BENCH_APPLIANCE_EXTRA` (e.g. `store_compression_level = -30`).
fn appliance_extra() -> String {
    std::env::var("BENCH_APPLIANCE_EXTRA").unwrap_or_default()
}
