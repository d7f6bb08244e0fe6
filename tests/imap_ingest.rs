//! Incoming email over IMAP against a real dovecot: exactly-once ingest, byte-exact raw MIME,
//! untouched \Seen flags, new mail while running, restart, UIDVALIDITY change, SIGKILL mid-ingest.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sidesync::store::Store;
use support::dovecot::{Dovecot, PASSWORD};
use support::ingest::{
    assert_exactly_once, fill, kill_mid_ingest_and_restart, sha, wait_all_synced,
};
use support::sidesync::{Sidesync, run_once};
use support::{free_port, mail, wait_for};

fn profile(d: &Dovecot, extra: &str) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"local\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"20s\"\n{extra}\n",
        d.imaps_port,
        d.ca_file.display()
    )
}

fn mailbox(address: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n"
    )
}

fn write_config(
    dir: &Path,
    status_port: u16,
    appliance_extra: &str,
    rest: &str,
) -> std::path::PathBuf {
    let path = dir.join("sidesync.toml");
    std::fs::write(
        &path,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{status_port}\"\nretry_interval = \"1s\"\n\
             {appliance_extra}\n{rest}",
            dir.join("data").display()
        ),
    )
    .expect("write config");
    path
}

#[test]
fn five_mailboxes_ingest_exactly_once_and_keep_flags() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let users: Vec<String> = (1..=5).map(|i| format!("user{i}@example.com")).collect();
    let mut expected: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        // A few hundred emails of all shapes; one mailbox also holds a 4 MB one.
        let big = i == 0;
        let e = fill(
            &d,
            u,
            150 + 30 * i,
            |n| {
                if big && n == 7 {
                    4 << 20
                } else {
                    2_000 + (n * 997) % 60_000
                }
            },
            |n| n % 4 == 0,
        );
        expected.insert(u.clone(), e);
    }
    let files_before: HashMap<String, Vec<String>> = users
        .iter()
        .map(|u| (u.clone(), d.inbox_files(u)))
        .collect();
    let port = free_port();
    let boxes: String = users.iter().map(|u| mailbox(u)).collect();
    let config = write_config(
        tmp.path(),
        port,
        "fetch_batch_size = 40",
        &format!("{}{boxes}", profile(&d, "")),
    );
    let log = tmp.path().join("sidesync.log");
    let s = Sidesync::start(&config, &log, port);
    let total: usize = expected.values().map(|e| e.len()).sum();
    wait_all_synced(&s, total);
    let m = s.mailbox(&users[0]);
    assert_eq!(m["incoming_status"], "success");
    assert_eq!(m["enabled"], true);
    assert!(m["last_successful_sync_completed_on"].is_string());

    // A message appended while running is picked up within the polling interval.
    let late = mail::sample(&users[2], 9_999, 3_000);
    d.deliver(&users[2], &late, "", SystemTime::now());
    expected
        .get_mut(&users[2])
        .expect("user")
        .insert(sha(&late), late);
    wait_for("the new email", Duration::from_secs(30), || {
        (s.mailbox(&users[2])["activities_stored"].as_u64()? as usize == expected[&users[2]].len())
            .then_some(())
    });
    let status = s.terminate();
    assert!(status.success(), "sidesync exit: {status}");

    // The server's flags are untouched (EXAMINE + BODY.PEEK): maildir names keep their flags.
    for u in &users {
        let before: Vec<String> = files_before[u]
            .iter()
            .map(|f| {
                f.rsplit_once(":2,")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default()
            })
            .collect();
        let after_files: Vec<String> = d
            .inbox_files(u)
            .into_iter()
            .filter(|f| {
                files_before[u]
                    .iter()
                    .any(|b| b.split(':').next() == f.split(':').next())
            })
            .collect();
        let after: Vec<String> = after_files
            .iter()
            .map(|f| {
                f.rsplit_once(":2,")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(before, after, "{u}: flags changed on the server");
    }

    let store = Store::open(&tmp.path().join("data")).expect("open store");
    for u in &users {
        assert_exactly_once(&store, u, &expected[u]);
    }
    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(!logs.contains(PASSWORD), "a password reached the log");
    drop(store);

    // A restart ingests nothing new, and fetches no body: dovecot's own logout line of each
    // restart session counts the bodies it sent (the writer's duplicate check would hide a full
    // re-fetch from the store's count alone).
    let logouts_before = |u: &str| imap_logouts(&d, u).len();
    let seen_before: HashMap<&String, usize> =
        users.iter().map(|u| (u, logouts_before(u))).collect();
    for u in &users {
        assert!(
            imap_logouts(&d, u)
                .iter()
                .any(|l| !l.contains("body_count=0 ")),
            "{u}: the first sync's sessions fetched bodies"
        );
    }
    let (status, out) = run_once(&config);
    assert!(status.success(), "{out}");
    for u in &users {
        let after = imap_logouts(&d, u);
        let restart = &after[seen_before[u]..];
        assert!(!restart.is_empty(), "{u}: the restart logged in");
        for l in restart {
            assert!(
                l.contains("body_count=0 "),
                "{u}: the restart fetched bodies: {l}"
            );
        }
    }
    let store = Store::open(&tmp.path().join("data")).expect("open store");
    assert_eq!(
        store.activity_count().expect("count") as usize,
        total + 1,
        "{out}"
    );
}

/// Dovecot's "Logged out" lines of the user's IMAP sessions, oldest first.
fn imap_logouts(d: &Dovecot, user: &str) -> Vec<String> {
    d.log()
        .lines()
        .filter(|l| l.contains(&format!("imap({user})")) && l.contains("Logged out"))
        .map(str::to_string)
        .collect()
}

#[test]
fn uidvalidity_change_rescans_without_duplicates() {
    let mut d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let user = "renumbered@example.com";
    let mut expected = fill(&d, user, 60, |n| 1_000 + n * 50, |_| false);
    let config = write_config(
        tmp.path(),
        free_port(),
        "uidvalidity_alert_after_changes = 1",
        &format!("{}{}", profile(&d, ""), mailbox(user)),
    );
    let (status, out) = run_once(&config);
    assert!(status.success(), "{out}");
    let before = {
        let store = Store::open(&tmp.path().join("data")).expect("store");
        store
            .folder_cursor(user, "INBOX")
            .expect("cursor")
            .expect("some")
    };
    d.reset_uidvalidity(user);
    let extra = mail::sample(user, 500, 1_500);
    d.deliver(user, &extra, "", SystemTime::now());
    expected.insert(sha(&extra), extra);
    let (status, out) = run_once(&config);
    assert!(status.success(), "{out}");
    let store = Store::open(&tmp.path().join("data")).expect("store");
    let after = store
        .folder_cursor(user, "INBOX")
        .expect("cursor")
        .expect("some");
    assert_ne!(
        before.uidvalidity, after.uidvalidity,
        "dovecot did not renumber the folder"
    );
    assert_eq!(after.uidvalidity_changes, 1);
    assert!(
        after.highest_modseq.is_some(),
        "HIGHESTMODSEQ is kept when the server offers it"
    );
    assert_exactly_once(&store, user, &expected);
    // Both numberings map to the same activities.
    assert_eq!(store.sync_id_map(user).expect("map").len(), 60 + 61);
    let alerts = store.alerts(10).expect("alerts");
    assert!(
        alerts
            .iter()
            .any(|a| a.code == "uidvalidity_changed" && a.mailbox.as_deref() == Some(user)),
        "{alerts:?}"
    );
}

#[test]
fn sigkill_mid_ingest_then_restart_gives_one_activity_per_email() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let user = "bulk@example.com";
    let expected = fill(&d, user, 2_500, |n| 8_000 + (n * 131) % 30_000, |_| false);
    let port = free_port();
    let config = write_config(
        tmp.path(),
        port,
        "fetch_batch_size = 20",
        &format!("{}{}", profile(&d, ""), mailbox(user)),
    );
    let log = tmp.path().join("sidesync.log");
    let s = Sidesync::start(&config, &log, port);
    let s = kill_mid_ingest_and_restart(s, &config, &log, port, user, expected.len());
    assert!(s.interrupt().success(), "SIGINT stops sidesync cleanly");
    let store = Store::open(&tmp.path().join("data")).expect("store");
    assert_exactly_once(&store, user, &expected);
    assert_eq!(store.sync_id_map(user).expect("map").len(), expected.len());
}

#[test]
fn emails_received_before_the_profile_date_are_skipped() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let user = "dated@example.com";
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020-01-01
    let mut recent = HashMap::new();
    for n in 0..20 {
        let raw = mail::sample(user, n, 1_000);
        if n % 2 == 0 {
            d.deliver(user, &raw, "", old);
        } else {
            d.deliver(user, &raw, "", SystemTime::now());
            recent.insert(sha(&raw), raw);
        }
    }
    let config = write_config(
        tmp.path(),
        free_port(),
        "",
        &format!(
            "{}{}",
            profile(&d, "process_emails_received_after = 2024-01-01"),
            mailbox(user)
        ),
    );
    let (status, out) = run_once(&config);
    assert!(status.success(), "{out}");
    let store = Store::open(&tmp.path().join("data")).expect("store");
    assert_exactly_once(&store, user, &recent);
    // Skipped emails still advance the cursor: they are never listed again.
    assert_eq!(
        store
            .folder_cursor(user, "INBOX")
            .expect("cursor")
            .expect("some")
            .last_uid,
        20
    );
}

#[test]
fn tracking_folders_are_synced_beside_inbox() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (user, broken) = ("tracked@example.com", "missing-folder@example.com");
    let inbox = fill(&d, user, 5, |_| 1_500, |_| false);
    let mut in_folder = HashMap::new();
    for n in 100..103 {
        let raw = mail::sample(user, n, 1_500);
        d.deliver_to_folder(user, "Projects", &raw);
        in_folder.insert(sha(&raw), raw);
    }
    // The same email in INBOX and in the folder is one activity.
    let both = mail::sample(user, 2, 1_500);
    d.deliver_to_folder(user, "Projects", &both);
    fill(&d, broken, 2, |_| 1_000, |_| false);
    let mut expected = inbox.clone();
    expected.extend(in_folder.clone());
    let config = write_config(
        tmp.path(),
        free_port(),
        "",
        &format!(
            "{}{}tracking_folders = [\"Projects\"]\n{}tracking_folders = [\"Missing\"]\n",
            profile(&d, ""),
            mailbox(user),
            mailbox(broken)
        ),
    );
    let (status, out) = run_once(&config);
    assert!(
        !status.success(),
        "the missing folder fails its mailbox: {out}"
    );
    let store = Store::open(&tmp.path().join("data")).expect("store");
    assert_exactly_once(&store, user, &expected);
    let folders: Vec<String> = store
        .activities()
        .expect("activities")
        .into_iter()
        .filter(|a| a.mailbox == user && a.folder == "Projects")
        .map(|a| a.folder)
        .collect();
    assert_eq!(
        folders.len(),
        3,
        "three activities come from the tracking folder"
    );
    assert_eq!(
        store.sync_id_map(user).expect("map").len(),
        9,
        "5 INBOX + 4 Projects UIDs, the shared email linked"
    );
    let states = store.mailbox_states().expect("states");
    let e = states[broken].last_error.as_ref().expect("an error");
    assert_eq!(e.code, "folder_missing");
    assert!(e.text.contains("\"Missing\""), "{}", e.text);
    assert_eq!(
        states[broken].activities_stored, 2,
        "INBOX synced before the missing folder"
    );
}

#[test]
fn the_configured_compression_level_is_the_one_emails_are_stored_at() {
    let d = Dovecot::start();
    let user = "levels@example.com";
    let mut emails = HashMap::new();
    for n in 0..20 {
        let raw = mail::sample(user, n, 8_000);
        d.deliver(user, &raw, "", SystemTime::now());
        emails.insert(sha(&raw), raw);
    }
    // The same mailbox synced into two stores, one at the fastest level and one at the default.
    let stored_at = |appliance_extra: &str| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = write_config(
            tmp.path(),
            free_port(),
            appliance_extra,
            &format!("{}{}", profile(&d, ""), mailbox(user)),
        );
        let (status, out) = run_once(&config);
        assert!(status.success(), "{out}");
        let store = Store::open(&tmp.path().join("data")).expect("store");
        assert_exactly_once(&store, user, &emails);
        store.compressed_raw_bytes().expect("bytes")
    };
    let fastest = stored_at("store_compression_level = -100");
    let default = stored_at("");
    assert!(
        fastest > default * 3 / 2,
        "fastest {fastest}, default {default}"
    );
}
