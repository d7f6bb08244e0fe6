//! What the ingest tests share: sample mailboxes filled into dovecot, and the exactly-once check
//! against the store.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use sidesync::store::Store;

use super::dovecot::Dovecot;
use super::mail;
use super::sidesync::Sidesync;
use super::wait_for;

pub fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Delivers `count` sample emails to `user`; returns their bytes by hash.
pub fn fill(
    d: &Dovecot,
    user: &str,
    count: usize,
    size: impl Fn(usize) -> usize,
    seen: impl Fn(usize) -> bool,
) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for n in 0..count {
        let raw = mail::sample(user, n, size(n));
        d.deliver(
            user,
            &raw,
            if seen(n) { "S" } else { "" },
            SystemTime::now(),
        );
        out.insert(sha(&raw), raw);
    }
    out
}

/// Checks the store holds exactly one incoming activity per email of `expected`, with identical
/// bytes (the mailbox's sent email is outgoing activities and not counted).
pub fn assert_exactly_once(store: &Store, user: &str, expected: &HashMap<String, Vec<u8>>) {
    let acts: Vec<_> = store
        .activities()
        .expect("activities")
        .into_iter()
        .filter(|a| a.mailbox == user && a.direction == sidesync::store::Direction::Incoming)
        .collect();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for a in &acts {
        let raw = store.activity_raw(a.id).expect("raw").expect("raw stored");
        assert_eq!(raw.len() as u64, a.size);
        *seen.entry(sha(&raw)).or_default() += 1;
    }
    for (hash, raw) in expected {
        assert_eq!(
            seen.get(hash),
            Some(&1),
            "{user}: email {:?} stored {:?} times",
            &raw[..60.min(raw.len())],
            seen.get(hash)
        );
    }
    assert_eq!(
        acts.len(),
        expected.len(),
        "{user}: activities beyond the server's emails"
    );
}

/// Waits until the mailboxes hold `total` activities and each one's sync completed (Test &
/// Enable sets "success" too: the syncs themselves must have finished).
pub fn wait_all_synced(s: &Sidesync, total: usize) {
    wait_for(
        "every email to be ingested and every sync to succeed",
        std::time::Duration::from_secs(120),
        || {
            let st = s.status();
            let boxes = st["mailboxes"].as_array()?;
            let stored: u64 = boxes
                .iter()
                .map(|m| m["activities_stored"].as_u64().unwrap_or(0))
                .sum();
            let all_ok = boxes.iter().all(|m| {
                m["incoming_status"] == "success"
                    && m["last_successful_sync_completed_on"].is_string()
            });
            (stored as usize == total && all_ok).then_some(())
        },
    );
}

/// Once `user` has some activities committed, SIGKILLs sidesync, starts it again on the same
/// config and waits until `count` activities are stored: the crash-and-restart half of the
/// exactly-once tests.
pub fn kill_mid_ingest_and_restart(
    s: Sidesync,
    config: &std::path::Path,
    log: &std::path::Path,
    port: u16,
    user: &str,
    count: usize,
) -> Sidesync {
    let at_kill = wait_for(
        "some emails to be committed",
        std::time::Duration::from_secs(120),
        || {
            let n = s.mailbox(user)["activities_stored"].as_u64()?;
            (n > 0).then_some(n)
        },
    );
    s.kill9();
    // The kill must land mid-ingest, or the restart proves nothing: count what the store holds
    // now that the process is gone.
    let text = std::fs::read_to_string(config).expect("config");
    let data_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("data_dir = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("data_dir in the config");
    let committed = Store::open(std::path::Path::new(data_dir))
        .expect("store")
        .activities()
        .expect("activities")
        .iter()
        .filter(|a| a.mailbox == user)
        .count();
    eprintln!("killed with {committed} of {count} committed ({at_kill} seen before the kill)");
    assert!(
        committed < count,
        "the ingest had finished before the kill ({committed} of {count})"
    );
    let s = Sidesync::start(config, log, port);
    wait_for(
        "the rest to be ingested",
        std::time::Duration::from_secs(180),
        || (s.mailbox(user)["activities_stored"].as_u64()? as usize >= count).then_some(()),
    );
    s
}
