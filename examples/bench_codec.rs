//! The raw-MIME codec on the real-text corpus (tests/support/realmail.rs) beside the generated
//! one: stored bytes as a share of raw bytes, encode and decode time per email, for each zstd
//! level, so the level is chosen on mail that compresses like real mail. Run it through
//! `bench/codec.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use sidesync::store::rawcodec;
use support::mail;
use support::realmail::Corpus;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let corpus = Corpus::load();
    // The ingest benchmark's size mix: 15 KB to 145 KB of body.
    let size = |n: usize| 15_000 + (n * 7_919) % 130_000;
    let real: Vec<Vec<u8>> = (0..count)
        .map(|n| corpus.email("bench@example.com", n, size(n)))
        .collect();
    let generated: Vec<Vec<u8>> = (0..count)
        .map(|n| mail::sample("bench@example.com", n, size(n)))
        .collect();
    println!(
        "{count} emails per corpus; current level {}\n",
        rawcodec::DEFAULT_LEVEL
    );
    println!(
        "{:<10} {:>6} {:>10} {:>9} {:>14} {:>14}",
        "corpus", "level", "raw MB", "stored %", "encode ms/msg", "decode ms/msg"
    );
    for (name, emails) in [("real", &real), ("generated", &generated)] {
        let raw: usize = emails.iter().map(Vec::len).sum();
        for level in [-100, -50, -30, -10, -5, -1, 1, 3] {
            let mut c = zstd::bulk::Compressor::new(level).expect("zstd");
            let started = Instant::now();
            let stored: Vec<Vec<u8>> = emails
                .iter()
                .map(|e| rawcodec::encode(e, &mut c).expect("encode"))
                .collect();
            let encode = started.elapsed().as_secs_f64();
            let started = Instant::now();
            for (s, e) in stored.iter().zip(emails.iter()) {
                assert_eq!(&rawcodec::decode(s).expect("decode"), e, "round trip");
            }
            let decode = started.elapsed().as_secs_f64();
            let bytes: usize = stored.iter().map(Vec::len).sum();
            println!(
                "{name:<10} {level:>6} {:>10.1} {:>9.1} {:>14.3} {:>14.3}",
                raw as f64 / 1e6,
                bytes as f64 * 100.0 / raw as f64,
                encode * 1e3 / emails.len() as f64,
                decode * 1e3 / emails.len() as f64
            );
        }
    }
}
