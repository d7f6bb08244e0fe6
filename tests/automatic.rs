//! `track = "all"` means all, against a real dovecot: a queue's inbox of 2,000 realistic emails,
//! one in seven written by machines (lists, newsletters, out-of-office replies, bounces,
//! notifications), becomes 2,000 activities, each automatic one flagged with its kind in the
//! API, its filter, the change feed and the mailbox page; a mailbox with `skip_automatic =
//! ["list"]` skips exactly the list emails, counted as `automatic:list`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::appliance::{Setup, TOKEN};
use support::automatic_mail::{Kind, email, kind, message_id};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::http;
use support::wait_for;

const QUEUE: &str = "queue@example.com";
const PICKY: &str = "picky@example.com";
/// The queue's inbox, as the issue asks.
const QUEUE_EMAILS: usize = 2_000;
/// Enough for 20 list emails and every other kind beside them.
const PICKY_EMAILS: usize = 700;

fn get(port: u16, path: &str) -> Value {
    let (code, body) = http(port, "GET", path, Some(TOKEN), "");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// Every activity the list returns for `query`, following `next` page by page.
fn all_activities(port: u16, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/api/v1/activities?{query}&limit=1000");
    loop {
        let page = get(port, &path);
        out.extend(page["activities"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => return out,
        }
    }
}

/// How many emails of the first `count` are of each kind, by their `automatic` value.
fn expected(count: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in 0..count {
        *m.entry(kind(n).flag().to_string()).or_default() += 1;
    }
    m
}

fn by_flag(activities: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in activities {
        *m.entry(a["automatic"].to_string()).or_default() += 1;
    }
    m
}

#[test]
fn all_tracks_every_email_and_flags_the_automatic_ones() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let now = SystemTime::now();
    for n in 0..QUEUE_EMAILS {
        d.deliver(QUEUE, &email(QUEUE, n), "", now);
    }
    for n in 0..PICKY_EMAILS {
        d.deliver(PICKY, &email(PICKY, n), "", now);
    }
    let cfg = setup.write(
        "",
        &format!(
            "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
             incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
             timeout_mailbox_connection_after = \"10s\"\n\
             [[mailbox]]\nemail_address = \"{QUEUE}\"\nowner = \"queue\"\npassword = \"{PASSWORD}\"\n\
             approval = \"approved\"\n\
             [[mailbox]]\nemail_address = \"{PICKY}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\
             track = \"all\"\nskip_automatic = [\"list\"]\n",
            d.imaps_port,
            d.ca_file.display()
        ),
    );
    let started = Instant::now();
    let s = setup.start(&cfg);
    let port = setup.port;
    let lists = expected(PICKY_EMAILS)["\"list\""];
    wait_for("both inboxes synced", Duration::from_secs(120), || {
        let q = s.mailbox(QUEUE);
        let p = s.mailbox(PICKY);
        (q["activities_stored"] == QUEUE_EMAILS
            && p["activities_stored"] == PICKY_EMAILS - lists
            && p["decisions"]["automatic:list"] == lists)
            .then_some(())
    });
    eprintln!(
        "{QUEUE_EMAILS} + {PICKY_EMAILS} emails synced in {:?}",
        started.elapsed()
    );

    // Every email of the queue is an activity, each flagged as what it is.
    let queue = all_activities(port, &format!("mailbox={QUEUE}"));
    assert_eq!(queue.len(), QUEUE_EMAILS);
    let want = expected(QUEUE_EMAILS);
    assert_eq!(by_flag(&queue), want);
    assert_eq!(want.len(), 6, "a person's email and every kind: {want:?}");
    let flags: BTreeMap<String, Value> = queue
        .iter()
        .filter_map(|a| {
            Some((
                a["message_id"].as_str()?.to_string(),
                a["automatic"].clone(),
            ))
        })
        .collect();
    for n in 0..QUEUE_EMAILS {
        if let Some(id) = message_id(QUEUE, n) {
            let id = id.trim_matches(|c| c == '<' || c == '>');
            assert_eq!(flags.get(id), Some(&kind(n).flag()), "email {n} ({id})");
        }
    }
    // Automatic email under "all" starts a conversation of its own.
    assert!(
        queue
            .iter()
            .filter(|a| !a["automatic"].is_null())
            .all(|a| a["conversation"] == a["id"])
    );
    let q = s.mailbox(QUEUE);
    assert_eq!(
        q["decisions"]["tracked_new"].as_u64().unwrap_or(0)
            + q["decisions"]["tracked_correlated"].as_u64().unwrap_or(0),
        QUEUE_EMAILS as u64,
        "{q}"
    );
    assert_eq!(q["emails_skipped"], 0, "{q}");

    // The list filter reads the kinds back.
    for k in Kind::AUTOMATIC {
        let word = k.flag();
        let word = word.as_str().expect("a kind");
        let found = all_activities(port, &format!("mailbox={QUEUE}&automatic={word}"));
        assert_eq!(found.len(), want[&k.flag().to_string()], "{word}");
        assert!(found.iter().all(|a| a["automatic"] == word));
    }
    let people = all_activities(port, &format!("mailbox={QUEUE}&automatic=none"));
    assert_eq!(people.len(), want["null"]);

    // skip_automatic = ["list"] skips the list emails and nothing else.
    let picky = all_activities(port, &format!("mailbox={PICKY}"));
    let mut picky_want = expected(PICKY_EMAILS);
    picky_want.remove("\"list\"");
    assert_eq!(by_flag(&picky), picky_want);
    assert!(lists >= 20, "{lists} list emails");
    let p = s.mailbox(PICKY);
    assert_eq!(p["emails_skipped"], lists, "{p}");
    assert_eq!(p["skip_automatic"], serde_json::json!(["list"]), "{p}");
    assert_eq!(q["skip_automatic"], serde_json::json!([]), "{q}");

    // The change feed carries the kind in each activity.created event.
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut after = 0u64;
    loop {
        let page = get(
            port,
            &format!("/api/v1/events?after={after}&limit=1000&types=activity.created"),
        );
        let list = page["events"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            break;
        }
        for e in &list {
            if e["mailbox"] == QUEUE {
                *events
                    .entry(e["data"]["automatic"].to_string())
                    .or_default() += 1;
            }
        }
        after = page["last_seq"].as_u64().expect("last_seq");
    }
    assert_eq!(events, want, "activity.created events by kind");

    // The mailbox page lists each recent activity's kind.
    let recent = get(
        port,
        &format!("/api/v1/activities?mailbox={QUEUE}&limit=20"),
    );
    let recent_kinds: Vec<String> = recent["activities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["automatic"].as_str().map(str::to_string))
        .collect();
    assert!(!recent_kinds.is_empty(), "{recent}");
    let (code, page) = http(port, "GET", &format!("/mailbox/{QUEUE}"), Some(TOKEN), "");
    assert_eq!(code, 200);
    assert!(page.contains("<th>automatic</th>"), "{page}");
    let (_, picky_page) = http(port, "GET", &format!("/mailbox/{PICKY}"), Some(TOKEN), "");
    assert!(
        picky_page.contains("<th>automatic kinds skipped</th><td>list</td>"),
        "{picky_page}"
    );
    for k in &recent_kinds {
        assert!(
            page.contains(&format!("<td class=\"automatic\">{k}</td>")),
            "{k}: {page}"
        );
    }
    assert!(s.terminate().success());
}
