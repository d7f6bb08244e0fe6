//! The demo: brings up a private dovecot on loopback with sample mailboxes, writes a config for
//! them, runs sidesync, and shows what `/status` says. Run it through `scripts/demo.sh`.
//!
//! With a terminal it keeps serving until Enter is pressed; without one (CI, scripts) it stops sidesync and
//! exits once every mailbox has synced, with exit code 0 only if the status is as expected.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::{Sidesync, http_get};
use support::{free_port, mail, wait_for};

/// (address, sample emails, owner type, profile): three IMAP mailboxes and one POP3 mailbox.
const GOOD: &[(&str, usize, &str, &str)] = &[
    ("alice@demo.example", 120, "user", "demo-imap"),
    ("bob@demo.example", 80, "user", "demo-imap"),
    ("support@demo.example", 60, "queue", "demo-imap"),
    ("erin@demo.example", 40, "user", "demo-pop3"),
];

fn main() {
    let root = PathBuf::from(
        std::env::var("SIDESYNC_DEMO_DIR").unwrap_or_else(|_| "/tmp/sidesync-demo".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("demo folder");
    println!("demo folder: {}", root.display());

    let dovecot = Dovecot::start_in(&root.join("dovecot"));
    println!(
        "dovecot: IMAPS on 127.0.0.1:{}, IMAP/STARTTLS on 127.0.0.1:{}, POP3S on 127.0.0.1:{}",
        dovecot.imaps_port, dovecot.imap_port, dovecot.pop3s_port
    );
    let mut expected = 0;
    for (address, count, _, _) in GOOD {
        for n in 0..*count {
            let size = if n % 25 == 0 {
                400_000
            } else {
                3_000 + (n * 733) % 40_000
            };
            dovecot.deliver(
                address,
                &mail::sample(address, n, size),
                if n % 3 == 0 { "S" } else { "" },
                SystemTime::now(),
            );
        }
        expected += count;
    }
    dovecot.deliver(
        "carol@demo.example",
        &mail::sample("carol@demo.example", 1, 2_000),
        "",
        SystemTime::now(),
    );

    let status_port = if std::net::TcpListener::bind("127.0.0.1:8025").is_ok() {
        8025
    } else {
        free_port()
    };
    // The mailbox pages show mail, so they want a token even on loopback: the demo makes one
    // (random, in a file only its owner reads) and says where it is, never what it is.
    let token_path = root.join("api.token");
    {
        use ring::rand::SecureRandom;
        use std::os::unix::fs::PermissionsExt;
        let mut bytes = [0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("random bytes");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&token_path, format!("{token}\n")).expect("token file");
        std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the token file");
    }
    let mut config = format!(
        "# Written by the sidesync demo.\n[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{data}\"\nstatus_listen = \"127.0.0.1:{status_port}\"\n\
         api_token_file = \"{token}\"\nretry_interval = \"30s\"\n\n\
         [[profile]]\nname = \"demo-imap\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {port}\nincoming_tls = \"implicit\"\nca_file = \"{ca}\"\nmin_polling_interval = \"10s\"\n\n\
         [[profile]]\nname = \"demo-pop3\"\nserver_type = \"pop3_smtp\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {pop3s}\nca_file = \"{ca}\"\nmin_polling_interval = \"10s\"\n\n",
        data = root.join("data").display(),
        token = token_path.display(),
        port = dovecot.imaps_port,
        pop3s = dovecot.pop3s_port,
        ca = dovecot.ca_file.display(),
    );
    for (address, _, owner, profile) in GOOD {
        // Bob tracks all his email; the other users keep a user's default (responses).
        let track = if *address == "bob@demo.example" {
            "track = \"all\"\n"
        } else {
            ""
        };
        config.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{address}\"\nowner = \"{owner}\"\nprofile = \"{profile}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n{track}\n"
        ));
    }
    // One mailbox whose password is wrong and one awaiting approval: what failures look like.
    config.push_str("[[mailbox]]\nemail_address = \"carol@demo.example\"\npassword = \"wrong-password\"\napproval = \"approved\"\n\n");
    config.push_str(&format!(
        "[[mailbox]]\nemail_address = \"dave@demo.example\"\npassword = \"{PASSWORD}\"\napproval = \"pending_approval\"\n"
    ));
    let config_path = root.join("sidesync.toml");
    std::fs::write(&config_path, config).expect("write config");
    println!("config: {}", config_path.display());

    let log = root.join("sidesync.log");
    let sidesync = Sidesync::start(&config_path, &log, status_port);
    println!("sidesync: running, log in {}", log.display());
    wait_for(
        "the sample mailboxes to sync",
        Duration::from_secs(300),
        || {
            let st = sidesync.status();
            // Every sample email decided: tracked, a duplicate, or skipped with its reason.
            let stored: u64 = st["mailboxes"]
                .as_array()?
                .iter()
                .filter_map(|m| m["decisions"].as_object())
                .flat_map(|d| d.values())
                .map(|n| n.as_u64().unwrap_or(0))
                .sum();
            let carol_failed = st["mailboxes"]
                .as_array()?
                .iter()
                .any(|m| m["email_address"] == "carol@demo.example" && m["last_error"].is_object());
            let good_synced = st["mailboxes"].as_array()?.iter().all(|m| {
                !GOOD.iter().any(|(a, _, _, _)| m["email_address"] == *a)
                    || m["last_successful_sync_completed_on"].is_string()
            });
            (stored as usize == expected && carol_failed && good_synced).then_some(())
        },
    );

    // Then customers answer five of the support queue's emails to alice: responses to tracked
    // email, so her filter ("responses", a user's default) tracks them, in the queue's
    // conversations.
    for k in 0..5 {
        let reply = format!(
            "Message-ID: <reply{k}@customer.example>\r\nDate: Mon, 1 Sep 2025 12:00:00 +0200\r\n\
             From: Customer {k} <c{k}@customer.example>\r\nTo: alice@demo.example\r\n\
             In-Reply-To: {id}\r\nReferences: {id}\r\nSubject: Re: your ticket\r\n\r\nThanks!\r\n",
            id = mail::message_id("support@demo.example", k)
        );
        dovecot.deliver(
            "alice@demo.example",
            reply.as_bytes(),
            "",
            SystemTime::now(),
        );
    }
    wait_for(
        "alice to track the customers' answers",
        Duration::from_secs(120),
        || {
            let m = sidesync.mailbox("alice@demo.example");
            (m["decisions"]["tracked_correlated"].as_u64() == Some(5)).then_some(())
        },
    );
    expected += 5;
    println!(
        "\n{:<24} {:<8} {:<10} {:<15} {:>10} {:>8}  note",
        "mailbox", "enabled", "incoming", "track", "activities", "skipped"
    );
    for m in sidesync.status()["mailboxes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let note = m["last_error"]["text"]
            .as_str()
            .or(m["not_processed_reason"].as_str())
            .unwrap_or("")
            .to_string();
        println!(
            "{:<24} {:<8} {:<10} {:<15} {:>10} {:>8}  {note}",
            m["email_address"].as_str().unwrap_or(""),
            m["enabled"].to_string(),
            m["incoming_status"].as_str().unwrap_or(""),
            m["track"].as_str().unwrap_or(""),
            m["activities_stored"].to_string(),
            m["emails_skipped"].to_string(),
        );
    }
    let health = http_get(status_port, "/healthz").map(|(c, _)| c);
    println!(
        "\npage:    http://127.0.0.1:{status_port}/\nstatus:  http://127.0.0.1:{status_port}/status\nmetrics: http://127.0.0.1:{status_port}/metrics\nhealth:  http://127.0.0.1:{status_port}/healthz ({health:?})"
    );
    println!(
        "mailbox: http://127.0.0.1:{status_port}/mailbox/alice@demo.example (linked from the page)\n         \
         it shows mail, so it wants the API token: the browser asks — any user name, and as password\n         \
         the token in {token} — or: curl -u :\"$(cat {token})\" http://127.0.0.1:{status_port}/mailbox/alice@demo.example",
        token = token_path.display()
    );

    if std::io::stdin().is_terminal() {
        println!(
            "\nsidesync keeps polling every 10 s; drop more mail into {}/home/<user>/Maildir/cur. Press Enter to stop (Ctrl-C stops everything at once).",
            dovecot.dir.display()
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    println!(
        "\nalice and erin track only responses to tracked email (a user's default), bob and the support \
         queue everything;\nskipped emails keep their reason (GET /status: mailboxes[].decisions) and no body."
    );
    let status = sidesync.terminate();
    println!(
        "sidesync stopped ({status}); {expected} sample emails are in {}",
        root.join("data").display()
    );
    if !status.success() || health != Some(200) {
        std::process::exit(1);
    }
}
