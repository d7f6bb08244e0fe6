//! Downstream systems against the running binary: the change feed read by a consumer that
//! restarts (and an appliance that is SIGKILLed) while thousands of activities arrive; webhooks
//! to a receiver that fails, hangs, drops connections and recovers; the dead-letter list and
//! redelivery.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::webhook_receiver::{Mode, Receiver, SECRET};
use support::{mail, wait_for};

/// A GET with the token that tolerates an appliance that is down: None then.
fn try_get(port: u16, path: &str) -> Option<(u16, Value)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(90))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn profile_and_mailboxes(d: &Dovecot, users: &[String]) -> String {
    let mut body = format!(
        "[[profile]]\nname = \"imap\"\ntrack = \"all\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {}\n\
         outgoing_tls = \"starttls\"\n",
        d.imaps_port,
        d.ca_file.display(),
        d.submission_port
    );
    for u in users {
        body.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{u}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\n\
             approval = \"approved\"\n"
        ));
    }
    body
}

fn deliver(d: &Dovecot, users: &[String], from: usize, count: usize) {
    for n in from..from + count {
        let user = &users[n % users.len()];
        d.deliver(user, &mail::sample(user, n, 1_500), "", SystemTime::now());
    }
}

fn webhook_config(r: &Receiver, d: &Dovecot, extra: &str) -> String {
    let secret = d.dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).expect("secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!(
        "[[webhook]]\nname = \"crm\"\nurl = \"{}\"\nsecret_file = \"{}\"\nca_file = \"{}\"\n\
         retry_interval = \"100ms\"\nmax_retry_interval = \"500ms\"\ntimeout = \"2s\"\n{extra}\n",
        r.url(),
        secret.display(),
        d.ca_file.display()
    )
}

#[test]
fn a_restarting_consumer_sees_every_event_once_in_order() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let users: Vec<String> = (0..5).map(|i| format!("feed{i}@example.com")).collect();
    deliver(&d, &users, 0, 2_500);
    let cfg = setup.write("fetch_batch_size = 100", &profile_and_mailboxes(&d, &users));
    let mut sidesync = Some(setup.start(&cfg));
    let mut rng = mail::Rng::new(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
            | 1,
    );
    // The consumer: it commits (here: keeps) the last number with what it processed, and
    // "restarts" from it at random points, with a random page size.
    let mut last = 0u64;
    let mut seen: Vec<Value> = Vec::new();
    let mut delivered = 2_500;
    let mut killed = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the feed did not deliver 5,000 activities"
        );
        let created = seen
            .iter()
            .filter(|e| e["type"] == "activity.created")
            .count();
        if created >= 5_000 {
            break;
        }
        // More email arrives while the consumer reads; the appliance dies once, mid-way.
        if delivered < 5_000 && created > 1_000 {
            deliver(&d, &users, delivered, 2_500);
            delivered = 5_000;
        }
        if !killed && created > 3_000 {
            killed = true;
            if let Some(s) = sidesync.take() {
                s.kill9();
            }
            sidesync = Some(setup.start(&cfg));
        }
        let limit = 1 + rng.below(400);
        let Some((code, page)) = try_get(
            setup.port,
            &format!("/api/v1/events?after={last}&limit={limit}&wait=5s"),
        ) else {
            continue;
        };
        assert_eq!(code, 200, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        assert!(events.len() as u64 <= limit);
        // A consumer restart between a page and its commit: the page is read again.
        if rng.below(10) == 0 {
            continue;
        }
        for e in events {
            let seq = e["seq"].as_u64().expect("seq");
            assert_eq!(seq, last + 1, "events come in order without gaps: {e}");
            last = seq;
            seen.push(e);
        }
        if let Some(n) = page["last_seq"].as_u64() {
            assert!(n >= last);
            last = n;
        }
    }
    // Exactly once: every activity created once, every number once.
    let ids: Vec<u64> = seen
        .iter()
        .filter(|e| e["type"] == "activity.created")
        .map(|e| e["data"]["id"].as_u64().expect("id"))
        .collect();
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "an activity was announced twice");
    assert_eq!(distinct.len(), 5_000);
    let store_count = {
        let (code, status) = try_get(setup.port, "/status").expect("status");
        assert_eq!(code, 200);
        status["mailboxes"]
            .as_array()
            .expect("mailboxes")
            .iter()
            .map(|m| m["activities_stored"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(store_count, 5_000);
    // Every event carries a UTC time with Z and a mailbox.
    assert!(
        seen.iter()
            .all(|e| e["at"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    // A reader far behind a feed that kept everything is not refused; a bogus cursor is.
    let (code, _) = try_get(setup.port, "/api/v1/events?after=0&limit=1").expect("up");
    assert_eq!(code, 200);
    let (code, problem) = try_get(setup.port, "/api/v1/events?after=x").expect("up");
    assert_eq!(code, 400);
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(":bad-request")),
        "{problem}"
    );
    if let Some(s) = sidesync {
        s.terminate();
    }
}

#[test]
fn webhooks_reach_a_failing_hanging_recovering_receiver_signed_across_a_sigkill() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let receiver = Receiver::start(&d.dir.join("server.pem"), &d.dir.join("server.key"));
    let users: Vec<String> = (0..4).map(|i| format!("hook{i}@example.com")).collect();
    deliver(&d, &users, 0, 400);
    // Down from the start: the first deliveries fail and back off.
    receiver.set(Mode::Fail);
    let cfg = setup.write(
        "fetch_batch_size = 50",
        &format!(
            "{}{}",
            profile_and_mailboxes(&d, &users),
            webhook_config(&receiver, &d, "max_attempts = 1000\nmax_in_flight = 4")
        ),
    );
    let s = setup.start(&cfg);
    wait_for("failed deliveries", Duration::from_secs(60), || {
        (receiver.refused.load(std::sync::atomic::Ordering::SeqCst) > 5).then_some(())
    });
    // Hanging (timeouts), then dropping connections, then up.
    receiver.set(Mode::Hang);
    wait_for("timed-out deliveries", Duration::from_secs(60), || {
        (receiver.refused.load(std::sync::atomic::Ordering::SeqCst) > 8).then_some(())
    });
    receiver.set(Mode::Drop);
    wait_for("dropped deliveries", Duration::from_secs(60), || {
        (receiver.refused.load(std::sync::atomic::Ordering::SeqCst) > 12).then_some(())
    });
    receiver.set(Mode::Ok);
    receiver.wait_until("some deliveries", Duration::from_secs(60), |r| r.len() > 50);
    // SIGKILL in the middle of delivering; more email; a restart.
    s.kill9();
    deliver(&d, &users, 400, 400);
    let s = setup.start(&cfg);
    let created = |r: &[support::webhook_receiver::Received]| {
        r.iter()
            .filter(|e| e.kind == "activity.created")
            .map(|e| e.body["data"]["id"].as_u64().unwrap_or(0))
            .collect::<BTreeSet<u64>>()
    };
    receiver.wait_until("every activity announced", Duration::from_secs(300), |r| {
        created(r).len() >= 800
    });
    // Everything the feed holds for the webhook arrived, signed, ordered per mailbox.
    let (code, feed) = try_get(setup.port, "/api/v1/events?after=0&limit=1000").expect("up");
    assert_eq!(code, 200);
    let mut want: BTreeSet<u64> = BTreeSet::new();
    let mut after = 0;
    loop {
        let (_, page) = try_get(
            setup.port,
            &format!("/api/v1/events?after={after}&limit=1000"),
        )
        .expect("up");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            break;
        }
        for e in &events {
            want.insert(e["seq"].as_u64().expect("seq"));
        }
        after = page["last_seq"].as_u64().expect("last");
    }
    drop(feed);
    receiver.wait_until("every event delivered", Duration::from_secs(120), |r| {
        let got: BTreeSet<u64> = r.iter().map(|e| e.seq).collect();
        want.is_subset(&got)
    });
    let got = receiver.received();
    assert_eq!(
        receiver
            .bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every signature verifies"
    );
    assert_eq!(created(&got).len(), 800);
    // Redelivered after the SIGKILL: at most the deliveries in flight (4).
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &got {
        *counts.entry(e.seq).or_default() += 1;
    }
    let repeats: usize = counts.values().map(|c| c - 1).sum();
    assert!(repeats <= 4, "{repeats} events delivered twice");
    // In order per mailbox: each mailbox's first deliveries come in increasing numbers.
    let mut per_mailbox: BTreeMap<String, u64> = BTreeMap::new();
    let mut firsts = BTreeSet::new();
    for e in &got {
        if !firsts.insert(e.seq) {
            continue;
        }
        let lane = e.mailbox.clone().unwrap_or_default();
        let before = per_mailbox.insert(lane.clone(), e.seq).unwrap_or(0);
        assert!(before < e.seq, "{lane}: {} after {before}", e.seq);
    }
    // The receiver's URL query is a key: it appears in no log line.
    assert!(
        !s.log_text().contains("not-logged"),
        "the webhook URL's query was logged"
    );
    s.terminate();
}

#[test]
fn dead_letters_are_listed_and_redelivered() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let receiver = Receiver::start(&d.dir.join("server.pem"), &d.dir.join("server.key"));
    let users = vec!["dead@example.com".to_string()];
    deliver(&d, &users, 0, 3);
    receiver.set(Mode::Fail);
    let cfg = setup.write(
        "",
        &format!(
            "{}{}",
            profile_and_mailboxes(&d, &users),
            webhook_config(
                &receiver,
                &d,
                "max_attempts = 2\nevents = [\"activity.created\"]"
            )
        ),
    );
    let s = setup.start(&cfg);
    let dead = wait_for("three dead letters", Duration::from_secs(60), || {
        let (code, v) = try_get(setup.port, "/api/v1/webhooks/crm/dead")?;
        assert_eq!(code, 200, "{v}");
        let list = v["dead_letters"].as_array()?.clone();
        (list.len() == 3).then_some(list)
    });
    assert!(
        dead.iter()
            .all(|l| l["attempts"] == 2 && l["event"]["type"] == "activity.created")
    );
    assert!(
        dead[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{}",
        dead[0]
    );
    let (code, hooks) = try_get(setup.port, "/api/v1/webhooks").expect("up");
    assert_eq!(code, 200);
    assert_eq!(hooks["webhooks"][0]["dead_letters"], 3);
    assert!(
        !hooks.to_string().contains("not-logged"),
        "the URL's query is not shown: {hooks}"
    );
    // Redeliver one, once the receiver is back.
    receiver.set(Mode::Ok);
    let seq = dead[1]["event"]["seq"].as_u64().expect("seq");
    let (code, answer) = support::sidesync::http(
        setup.port,
        "POST",
        &format!("/api/v1/webhooks/crm/dead/{seq}/redeliver"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 202, "{answer}");
    receiver.wait_until("the redelivery", Duration::from_secs(30), |r| {
        r.iter().any(|e| e.seq == seq)
    });
    wait_for(
        "the letter leaves the list",
        Duration::from_secs(30),
        || {
            let (_, v) = try_get(setup.port, "/api/v1/webhooks/crm/dead")?;
            (v["dead_letters"].as_array()?.len() == 2).then_some(())
        },
    );
    assert_eq!(
        receiver.received().len(),
        1,
        "only the redelivered event arrived"
    );
    // Unknown letters and webhooks are named.
    let (code, answer) = support::sidesync::http(
        setup.port,
        "POST",
        "/api/v1/webhooks/crm/dead/999999/redeliver",
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 404, "{answer}");
    assert!(answer.contains("999999"));
    let (code, _) = try_get(setup.port, "/api/v1/webhooks/nope/dead").expect("up");
    assert_eq!(code, 404);
    s.terminate();
}

#[test]
fn export_of_a_mailbox_equals_the_servers_bytes() {
    use support::ingest::sha;
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "export@example.com".to_string();
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    for n in 0..40 {
        let raw = mail::sample(&user, n, 2_000 + n * 97);
        delivered.insert(sha(&raw));
        d.deliver(&user, &raw, "", SystemTime::now());
    }
    // Lines an mbox must quote, and a reply in the same conversation.
    let tricky = b"Message-ID: <tricky@example.net>\r\nFrom: Ann <ann@example.net>\r\n\
                   To: export@example.com\r\nSubject: quoting\r\n\r\nFrom the start\r\n\
                   >From quoted once\r\n>>From twice\r\n"
        .to_vec();
    let reply = b"Message-ID: <reply@example.net>\r\nIn-Reply-To: <tricky@example.net>\r\n\
                  From: Bob <bob@example.net>\r\nTo: export@example.com\r\nSubject: Re: quoting\r\n\r\nok\r\n"
        .to_vec();
    for raw in [&tricky, &reply] {
        delivered.insert(sha(raw));
        d.deliver(&user, raw, "", SystemTime::now());
    }
    let cfg = setup.write("", &profile_and_mailboxes(&d, std::slice::from_ref(&user)));
    let s = setup.start(&cfg);
    wait_for("every email stored", Duration::from_secs(120), || {
        (s.mailbox(&user)["activities_stored"] == 42).then_some(())
    });
    let cfg_arg = cfg.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["export", "--config", &cfg_arg];
        all.extend_from_slice(args);
        let (status, out) = support::sidesync::cli(&all);
        assert!(status.success(), "{out}");
        out
    };
    let shas_of_maildir = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir.join("cur"))
            .expect("cur")
            .map(|e| sha(&std::fs::read(e.expect("entry").path()).expect("read")))
            .collect()
    };
    // Through the running appliance: a maildir holds the server's bytes, file for file.
    let out_dir = setup.dir.path().join("export-maildir");
    let said = run(&[
        "--mailbox",
        &user,
        "--format",
        "maildir",
        "--output",
        &out_dir.display().to_string(),
    ]);
    assert!(
        said.contains("42 emails") && said.contains("running appliance"),
        "{said}"
    );
    let got: Vec<String> = shas_of_maildir(&out_dir);
    assert_eq!(got.len(), 42);
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), delivered);
    // An mbox read back gives the same bytes (From lines quoted and unquoted).
    let mbox = setup.dir.path().join("export.mbox");
    run(&["--mailbox", &user, "--output", &mbox.display().to_string()]);
    let data = std::fs::read(&mbox).expect("mbox");
    assert!(
        data.windows(19).any(|w| w == b"\r\n>From the start\r\n"),
        "the From line is quoted"
    );
    let back: BTreeSet<String> = sidesync::export::read_mbox(&data)
        .iter()
        .map(|r| sha(r))
        .collect();
    assert_eq!(back, delivered);
    // A conversation: the email and its reply.
    let (code, list) = try_get(
        setup.port,
        &format!("/api/v1/activities?mailbox={user}&limit=1"),
    )
    .expect("up");
    assert_eq!(code, 200);
    let conversation = list["activities"][0]["conversation"]
        .as_u64()
        .expect("conversation");
    let conv_dir = setup.dir.path().join("conversation");
    let said = run(&[
        "--conversation",
        &conversation.to_string(),
        "--format",
        "maildir",
        "--output",
        &conv_dir.display().to_string(),
    ]);
    assert!(said.contains("2 emails"), "{said}");
    let conv: BTreeSet<String> = shas_of_maildir(&conv_dir).into_iter().collect();
    assert_eq!(conv, [sha(&tricky), sha(&reply)].into_iter().collect());
    // With the appliance stopped, from the store itself.
    assert!(s.terminate().success());
    let stopped = setup.dir.path().join("stopped.mbox");
    let said = run(&[
        "--mailbox",
        &user,
        "--output",
        &stopped.display().to_string(),
    ]);
    assert!(said.contains("from the store"), "{said}");
    assert_eq!(
        std::fs::read(&stopped).expect("mbox"),
        data,
        "the same mbox either way"
    );
    // Bad requests are named.
    let (status, out) = support::sidesync::cli(&[
        "export",
        "--config",
        &cfg_arg,
        "--mailbox",
        &user,
        "--format",
        "pst",
        "--output",
        "/tmp/x",
    ]);
    // A format that is not one is the command line's mistake (2), naming the ones there are.
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("'pst'") && out.contains("mbox, maildir"),
        "{out}"
    );
}
