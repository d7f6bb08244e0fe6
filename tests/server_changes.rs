//! Issue 26, point 5, against a real dovecot: after ingest, an email deleted on the server, one
//! moved from INBOX into a tracking folder and one flagged each update their activity (never
//! removing it) and the feed says `activity.updated` with `changed: ["server_state"]`; the
//! moved one takes the tracking folder's regarding. Once with CONDSTORE/QRESYNC (dovecot offers
//! both), once with the UID comparison (`follow_server_changes = "compare"`), which is what a
//! server without them gets. With `"off"` nothing changes.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde_json::Value;
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::http;
use support::wait_for;

const ALICE: &str = "alice@example.com";
const ACME: &str = "Acme";
const IDS: [&str; 4] = ["del@x", "moved@x", "flag@x", "keep@x"];

fn config(setup: &Setup, d: &Dovecot, follow: &str) -> std::path::PathBuf {
    let profile = format!(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
         outgoing_port_number = {}\noutgoing_tls = \"starttls\"\nallow_plaintext_login = true\n\
         follow_server_changes = \"{follow}\"\nflags_compare_every = \"1s\"\n",
        d.imaps_port,
        d.ca_file.display(),
        d.submission_port,
    );
    let mailbox = format!(
        "[[mailbox]]\nemail_address = \"{ALICE}\"\npassword = \"{PASSWORD}\"\n\
         approval = \"approved\"\ntrack = \"all\"\n\
         [[mailbox.tracking_folder]]\nfolder = \"{ACME}\"\nregarding = \"opportunity:1\"\n"
    );
    setup.write("", &[profile, mailbox].concat())
}

fn email(id: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\nFrom: bob@contoso.com\r\n\
         To: {ALICE}\r\nSubject: about {id}\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

fn get(setup: &Setup, path: &str) -> Value {
    let (code, answer) = http(setup.port, "GET", path, Some(TOKEN), "");
    assert!((200..300).contains(&code), "GET {path}: {code} {answer}");
    serde_json::from_str(&answer).expect("json")
}

/// The activities by Message-ID (without the angle brackets).
fn activities(setup: &Setup) -> Vec<(String, Value)> {
    get(setup, "/api/v1/activities?limit=1000")["activities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let mid = a["message_id"]
                .as_str()
                .unwrap_or_default()
                .trim_matches(['<', '>'])
                .to_string();
            (mid, a)
        })
        .collect()
}

fn activity(setup: &Setup, mid: &str) -> Value {
    activities(setup)
        .into_iter()
        .find(|(m, _)| m == mid)
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("no activity for {mid}"))
}

/// The server copy of an activity in ALICE's mailbox.
fn copy(a: &Value) -> Option<&Value> {
    a["server_state"]
        .as_array()?
        .iter()
        .find(|c| c["mailbox"] == ALICE)
}

/// A mail client's session: logs in on the plaintext port and runs `commands` in INBOX, each
/// after the one before is done. `{uid:ID}` in a command is the UID of the email with that
/// Message-ID (found with UID SEARCH).
fn client(d: &Dovecot, commands: &[&str]) {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", d.imap_port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut w = tcp.try_clone().expect("clone");
    let mut r = BufReader::new(tcp);
    let mut greeting = String::new();
    r.read_line(&mut greeting).expect("greeting");
    let mut run = |tag: &str, command: &str| -> Vec<String> {
        write!(w, "{tag} {command}\r\n").expect("write");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).expect("read") > 0, "dovecot hung up");
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.starts_with(&format!("{tag} OK")), "{command}: {line}");
                return lines;
            }
            lines.push(line);
        }
    };
    run("a", &format!("LOGIN \"{ALICE}\" \"{PASSWORD}\""));
    run("b", "SELECT INBOX");
    for (i, command) in commands.iter().enumerate() {
        let mut command = command.to_string();
        if let Some(start) = command.find("{uid:") {
            let end = start + command[start..].find('}').expect("}");
            let mid = &command[start + 5..end];
            let found = run("s", &format!("UID SEARCH HEADER Message-ID \"<{mid}>\""));
            let uid = found
                .iter()
                .find_map(|l| l.strip_prefix("* SEARCH "))
                .map(|n| n.trim().to_string())
                .unwrap_or_else(|| panic!("{mid} is not in INBOX"));
            command.replace_range(start..=end, &uid);
        }
        run(&format!("c{i}"), &command);
    }
    run("z", "LOGOUT");
}

fn server_state_events(setup: &Setup) -> Vec<u64> {
    get(
        setup,
        "/api/v1/events?after=0&limit=1000&types=activity.updated",
    )["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e["data"]["changed"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x == "server_state"))
        })
        .filter_map(|e| e["data"]["id"].as_u64())
        .collect()
}

/// `how`: the way the sync found the gone emails, as its log says.
fn follows(follow: &str, how: &str) {
    let d = Dovecot::start();
    let setup = Setup::new();
    d.add_user(ALICE);
    d.create_folder(ALICE, ACME);
    for id in IDS {
        d.append_over_imap(ALICE, "INBOX", &email(id));
    }
    let cfg = config(&setup, &d, follow);
    let s = setup.start(&cfg);
    wait_for("four activities", Duration::from_secs(60), || {
        (activities(&setup).len() == 4).then_some(())
    });
    let ingested = activity(&setup, "flag@x");
    let c = copy(&ingested).expect("a copy recorded at ingest");
    assert_eq!(c["state"], "present");
    assert_eq!(c["folder"], "INBOX");
    assert_eq!(c["flags"], serde_json::json!([]), "{c}");
    client(
        &d,
        &[
            "UID STORE {uid:flag@x} +FLAGS (\\Flagged)",
            "UID STORE {uid:del@x} +FLAGS.SILENT (\\Deleted)",
            "UID EXPUNGE {uid:del@x}",
            "UID MOVE {uid:moved@x} Acme",
        ],
    );
    let settled = wait_for("the server's changes", Duration::from_secs(60), || {
        let del = activity(&setup, "del@x");
        let moved = activity(&setup, "moved@x");
        let flag = activity(&setup, "flag@x");
        let deleted = copy(&del)?["state"] == "deleted";
        let m = copy(&moved)?;
        let moved_ok = m["state"] == "moved" && m["folder"] == ACME;
        let flagged = copy(&flag)?["flags"]
            .as_array()?
            .iter()
            .any(|f| f == "\\Flagged");
        (deleted && moved_ok && flagged).then_some((del, moved, flag))
    });
    let (del, moved, flag) = settled;
    assert_eq!(moved["regarding"], "opportunity:1", "{moved}");
    let keep = activity(&setup, "keep@x");
    assert_eq!(copy(&keep).expect("copy")["state"], "present");
    assert_eq!(activities(&setup).len(), 4, "no activity is ever removed");
    let events = server_state_events(&setup);
    for a in [&del, &moved, &flag] {
        let id = a["id"].as_u64().expect("id");
        assert!(
            events.contains(&id),
            "activity.updated for {id}: {events:?}"
        );
    }
    let keep_id = keep["id"].as_u64().expect("id");
    assert!(!events.contains(&keep_id), "nothing happened to keep@x");
    let log = s.log_text();
    assert!(
        log.contains(&format!("how=\"{how}\"")),
        "found by {how}:\n{log}"
    );
}

#[test]
fn deletions_moves_and_flags_are_followed_with_condstore_and_qresync() {
    follows("auto", "vanished");
}

#[test]
fn deletions_moves_and_flags_are_followed_by_comparing_uids() {
    follows("compare", "uid comparison");
}

#[test]
fn off_leaves_activities_as_ingested() {
    let d = Dovecot::start();
    let setup = Setup::new();
    d.add_user(ALICE);
    d.create_folder(ALICE, ACME);
    for id in IDS {
        d.append_over_imap(ALICE, "INBOX", &email(id));
    }
    let cfg = config(&setup, &d, "off");
    let s = setup.start(&cfg);
    wait_for("four activities", Duration::from_secs(60), || {
        (activities(&setup).len() == 4).then_some(())
    });
    client(
        &d,
        &[
            "UID STORE {uid:del@x} +FLAGS.SILENT (\\Deleted)",
            "UID EXPUNGE {uid:del@x}",
        ],
    );
    // A later email proves later syncs ran.
    d.append_over_imap(ALICE, "INBOX", &email("later@x"));
    wait_for("the later email", Duration::from_secs(60), || {
        (activities(&setup).len() == 5).then_some(())
    });
    let del = activity(&setup, "del@x");
    assert_eq!(copy(&del).expect("copy")["state"], "present", "{del}");
    assert!(server_state_events(&setup).is_empty());
    drop(s);
}
