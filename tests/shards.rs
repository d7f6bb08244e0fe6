//! Shards: three appliances reading one config (each with its own data folder, told its shard by
//! `SIDESYNC_SHARD`) against one dovecot: every mailbox is synced by exactly one of them. A
//! fourth shard takes over only the mailboxes it wins, and going back to three ingests nothing
//! twice: a shard that sees a mailbox again still has its sync id map.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use sidesync::config::shard::owner;
use support::appliance::Setup;
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::Sidesync;
use support::{mail, wait_for};

const MAILBOXES: usize = 12;
const EMAILS: usize = 3;

fn users() -> Vec<String> {
    (0..MAILBOXES)
        .map(|i| format!("shard-user{i}@example.com"))
        .collect()
}

fn config_body(d: &Dovecot) -> String {
    let mut body = format!(
        "[[profile]]\nname = \"imap\"\ntrack = \"all\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n",
        d.imaps_port,
        d.ca_file.display()
    );
    for u in users() {
        body.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{u}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\n\
             approval = \"approved\"\n"
        ));
    }
    body
}

/// Starts shard `index` of `count` on `setup` and waits until it stored its mailboxes' emails.
fn start(setup: &Setup, index: u32, count: u32) -> Sidesync {
    let cfg = setup.dir.path().join("sidesync.toml");
    let shard = format!("{index}/{count}");
    let started = chrono::Utc::now();
    let s = Sidesync::start_with_env(
        &cfg,
        &setup.dir.path().join("sidesync.log"),
        setup.port,
        &[("SIDESYNC_SHARD", &shard)],
    );
    let mine: Vec<String> = users()
        .into_iter()
        .filter(|u| owner(u, count) == index)
        .collect();
    wait_for(
        &format!("shard {shard} synced"),
        Duration::from_secs(90),
        || {
            let st = s.status();
            let listed: BTreeSet<String> = st["mailboxes"]
                .as_array()?
                .iter()
                .map(|m| m["email_address"].as_str().unwrap_or("").to_string())
                .collect();
            assert_eq!(
                listed,
                mine.iter().cloned().collect(),
                "shard {shard} lists its own mailboxes only"
            );
            st["mailboxes"]
                .as_array()?
                .iter()
                .all(|m| {
                    // A sync of this run, not one a store remembers.
                    let synced = m["last_successful_sync_completed_on"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t >= started);
                    m["activities_stored"] == EMAILS as u64 && synced
                })
                .then_some(())
        },
    );
    let st = s.status();
    assert_eq!(st["appliance"]["shard"]["index"], index);
    assert_eq!(st["appliance"]["shard"]["count"], count);
    let skipped = st["appliance"]["shard"]["skipped"]
        .as_array()
        .expect("skipped")
        .clone();
    assert_eq!(skipped.len(), MAILBOXES - mine.len());
    for m in &skipped {
        let address = m["email_address"].as_str().expect("address");
        assert_eq!(m["shard"], owner(address, count), "{m}");
    }
    s
}

/// Activities per mailbox in a stopped shard's store.
fn per_mailbox(setup: &Setup) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in setup.store().activities().expect("activities") {
        *out.entry(a.mailbox).or_default() += 1;
    }
    out
}

#[test]
fn every_mailbox_is_synced_by_exactly_one_shard_and_a_new_shard_moves_only_its_own() {
    let d = Dovecot::start();
    for (i, u) in users().iter().enumerate() {
        for n in 0..EMAILS {
            d.deliver(
                u,
                &mail::sample(u, i * 100 + n, 1_000),
                "",
                SystemTime::now(),
            );
        }
    }
    let shards: Vec<Setup> = (0..4).map(|_| Setup::new()).collect();
    for s in &shards {
        s.write("", &config_body(&d));
    }
    // Three shards: disjoint, and together every mailbox.
    let running: Vec<Sidesync> = (0..3).map(|i| start(&shards[i], i as u32, 3)).collect();
    // Another shard's mailbox is named as such by the API.
    let theirs = users()
        .into_iter()
        .find(|u| owner(u, 3) != 0)
        .expect("a mailbox of another shard");
    let (code, answer) = support::sidesync::http(
        shards[0].port,
        "POST",
        &format!("/api/v1/mailboxes/{theirs}/approve"),
        Some(support::appliance::TOKEN),
        "",
    );
    assert_eq!(code, 404, "{answer}");
    assert!(
        answer.contains(&format!("shard {}/3", owner(&theirs, 3))),
        "{answer}"
    );
    for s in running {
        assert!(s.terminate().success());
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, setup) in shards.iter().take(3).enumerate() {
        for (mailbox, n) in per_mailbox(setup) {
            assert_eq!(
                owner(&mailbox, 3),
                i as u32,
                "{mailbox} synced by shard {i}"
            );
            assert_eq!(n, EMAILS, "{mailbox}: each email once");
            *seen.entry(mailbox).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), MAILBOXES, "every mailbox synced");
    assert!(
        seen.values().all(|&n| n == 1),
        "by exactly one shard: {seen:?}"
    );

    // A fourth shard: it takes the mailboxes it wins, the others keep theirs.
    let moved: BTreeSet<String> = users()
        .into_iter()
        .filter(|u| owner(u, 3) != owner(u, 4))
        .collect();
    assert!(
        !moved.is_empty() && moved.len() < MAILBOXES / 2,
        "{moved:?}"
    );
    let running: Vec<Sidesync> = (0..4).map(|i| start(&shards[i], i as u32, 4)).collect();
    for s in running {
        assert!(s.terminate().success());
    }
    assert_eq!(
        per_mailbox(&shards[3])
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        moved,
        "the new shard synced exactly the moved mailboxes"
    );
    // Back to three: the moved mailboxes return to shards that still have their sync id maps.
    let before: Vec<BTreeMap<String, usize>> = shards.iter().take(3).map(per_mailbox).collect();
    let running: Vec<Sidesync> = (0..3).map(|i| start(&shards[i], i as u32, 3)).collect();
    for s in running {
        assert!(s.terminate().success());
    }
    for (i, setup) in shards.iter().take(3).enumerate() {
        assert_eq!(
            per_mailbox(setup),
            before[i],
            "shard {i} ingested nothing twice"
        );
    }
}
