//! Failures against real servers: a wrong password, a refused connection, an untrusted certificate
//! and a server without STARTTLS each give a clear error in `/status` and the log, while the other
//! mailboxes keep syncing. TLS modes and login methods each work against dovecot.

mod support;

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use support::dovecot::{Dovecot, PASSWORD};
use support::proxy::{Mode, Proxy};
use support::sidesync::{Sidesync, run_once};
use support::{free_port, mail, wait_for};

fn profile(name: &str, port: u16, ca: &std::path::Path, extra: &str) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"{name}\"\nincoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\n\
         ca_file = \"{}\"\nmin_polling_interval = \"1s\"\ntimeout_mailbox_connection_after = \"10s\"\n{extra}\n",
        ca.display()
    )
}

fn mailbox(address: &str, profile: &str, password: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\nprofile = \"{profile}\"\npassword = \"{password}\"\napproval = \"approved\"\n"
    )
}

fn config(dir: &std::path::Path, port: u16, body: &str) -> std::path::PathBuf {
    let path = dir.join("sidesync.toml");
    std::fs::write(
        &path,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\nretry_interval = \"1s\"\n{body}",
            dir.join("data").display()
        ),
    )
    .expect("config");
    path
}

#[test]
fn each_failure_is_reported_and_other_mailboxes_keep_syncing() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    for u in [
        "good@example.com",
        "wrongpw@example.com",
        "refused@example.com",
        "untrusted@example.com",
    ] {
        for n in 0..5 {
            d.deliver(u, &mail::sample(u, n, 2_000), "", SystemTime::now());
        }
    }
    // A port nobody listens on: bind, note it, close.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let wrong_password = "not-the-password-0xA1";
    let body = [
        profile("good", d.imaps_port, &d.ca_file, ""),
        profile("closed", closed, &d.ca_file, ""),
        profile("untrusted", d.imaps_port, &d.other_ca_file, ""),
        mailbox("good@example.com", "good", PASSWORD),
        mailbox("wrongpw@example.com", "good", wrong_password),
        mailbox("refused@example.com", "closed", PASSWORD),
        mailbox("untrusted@example.com", "untrusted", PASSWORD),
    ]
    .concat();
    let port = free_port();
    let cfg = config(tmp.path(), port, &body);
    let log = tmp.path().join("sidesync.log");
    let s = Sidesync::start(&cfg, &log, port);
    let error_of = |address: &str| {
        let m = s.mailbox(address);
        let e = &m["last_error"];
        e["code"].as_str().map(|c| {
            (
                c.to_string(),
                e["text"].as_str().unwrap_or("").to_string(),
                m["incoming_status"].clone(),
            )
        })
    };
    let (code, text, st) = wait_for(
        "the wrong password to be reported",
        Duration::from_secs(60),
        || error_of("wrongpw@example.com"),
    );
    assert_eq!(code, "authentication_rejected");
    assert!(
        text.starts_with(&format!(
            "authentication rejected by 127.0.0.1:{}",
            d.imaps_port
        )),
        "{text}"
    );
    assert_eq!(st, "failure");
    let (code, text, _) = wait_for(
        "the refused connection to be reported",
        Duration::from_secs(60),
        || error_of("refused@example.com"),
    );
    assert_eq!(code, "connect_failed");
    assert!(
        text.contains(&format!("cannot connect to 127.0.0.1:{closed}")) && text.contains("refused"),
        "{text}"
    );
    let (code, text, _) = wait_for(
        "the untrusted certificate to be reported",
        Duration::from_secs(60),
        || error_of("untrusted@example.com"),
    );
    assert_eq!(code, "certificate_not_trusted");
    assert!(
        text.contains("not trusted") && text.contains("ca_file"),
        "{text}"
    );
    // The good mailbox synced regardless, and keeps being polled.
    wait_for("the good mailbox to sync", Duration::from_secs(60), || {
        (s.mailbox("good@example.com")["activities_stored"].as_u64()? == 5).then_some(())
    });
    d.deliver(
        "good@example.com",
        &mail::sample("good@example.com", 77, 1_000),
        "",
        SystemTime::now(),
    );
    wait_for(
        "the good mailbox to keep syncing",
        Duration::from_secs(60),
        || (s.mailbox("good@example.com")["activities_stored"].as_u64()? == 6).then_some(()),
    );
    let profiles = s.status()["profiles"].clone();
    let closed_profile = profiles
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "closed").cloned())
        .expect("profile");
    assert!(closed_profile["connection_failures"].as_u64().unwrap_or(0) >= 1);
    assert!(s.terminate().success());
    let logs = std::fs::read_to_string(&log).expect("log");
    for needle in [
        "authentication_rejected",
        "connect_failed",
        "certificate_not_trusted",
    ] {
        assert!(logs.contains(needle), "log lacks {needle}:\n{logs}");
    }
    assert!(
        !logs.contains(wrong_password) && !logs.contains(PASSWORD),
        "a password reached the log"
    );
}

/// Each TLS mode and login method against dovecot, checked on the wire and in dovecot's log, not
/// only by the stored count: a proxy in front of dovecot keeps what the client sent in the clear,
/// and dovecot's login line says whether the session was encrypted.
#[test]
fn starttls_implicit_tls_plaintext_plain_and_login_each_do_what_they_say() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    // (user, port behind the proxy, profile extra)
    let cases = [
        (
            "starttls@example.com",
            d.imap_port,
            "incoming_tls = \"starttls\"\nincoming_authentication_protocol = \"plain\"",
        ),
        ("implicit@example.com", d.imaps_port, ""),
        (
            "plain@example.com",
            d.imap_port,
            "incoming_tls = \"none\"\nallow_plaintext_login = true\nincoming_authentication_protocol = \"plain\"",
        ),
        (
            "login@example.com",
            d.imap_port,
            "incoming_tls = \"none\"\nallow_plaintext_login = true\nincoming_authentication_protocol = \"login\"",
        ),
    ];
    let proxies: Vec<Proxy> = cases
        .iter()
        .map(|(_, port, _)| Proxy::start(*port, Mode::Forward))
        .collect();
    let mut body = Vec::new();
    for (i, ((user, _, extra), proxy)) in cases.iter().zip(&proxies).enumerate() {
        for n in 0..3 {
            d.deliver(user, &mail::sample(user, n, 1_500), "", SystemTime::now());
        }
        body.push(profile(&format!("p{i}"), proxy.port, &d.ca_file, extra));
        body.push(mailbox(user, &format!("p{i}"), PASSWORD));
    }
    let cfg = config(tmp.path(), free_port(), &body.concat());
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    let store = sidesync::store::Store::open(&tmp.path().join("data")).expect("store");
    let states = store.mailbox_states().expect("states");
    let log = d.log();
    let login_line = |user: &str| {
        log.lines()
            .rev()
            .find(|l| l.contains("Login: ") && l.contains(&format!("user=<{user}>")))
            .unwrap_or_else(|| panic!("no login of {user} in dovecot's log:\n{log}"))
            .to_string()
    };
    for ((user, _, _), proxy) in cases.iter().zip(&proxies) {
        assert_eq!(states[*user].activities_stored, 3, "{user}: {out}");
        let wire = String::from_utf8_lossy(&proxy.client_bytes()).to_string();
        let line = login_line(user);
        let encrypted = line.contains(", TLS");
        match *user {
            "starttls@example.com" => {
                // STARTTLS in the clear, then nothing readable: the login went inside TLS.
                assert!(wire.contains(" STARTTLS\r\n"), "{wire:?}");
                assert!(
                    !wire.contains("AUTHENTICATE") && !wire.contains(" LOGIN "),
                    "{wire:?}"
                );
                assert!(encrypted, "{line}");
            }
            "implicit@example.com" => {
                // A TLS ClientHello first; no command in the clear.
                assert_eq!(proxy.client_bytes().first(), Some(&0x16), "{wire:?}");
                assert!(!wire.contains("CAPABILITY"), "{wire:?}");
                assert!(encrypted, "{line}");
            }
            "plain@example.com" => {
                assert!(wire.contains(" AUTHENTICATE PLAIN"), "{wire:?}");
                assert!(!wire.contains(" LOGIN "), "{wire:?}");
                assert!(!encrypted, "{line}");
            }
            _ => {
                assert!(wire.contains(" LOGIN "), "{wire:?}");
                assert!(!wire.contains("AUTHENTICATE"), "{wire:?}");
                assert!(!encrypted, "{line}");
            }
        }
        // The password crossed in the clear only where the config said plaintext.
        assert_eq!(
            wire.contains(PASSWORD) || wire.contains(&base64_plain(user)),
            !encrypted,
            "{user}"
        );
    }
}

/// The SASL PLAIN blob sidesync sends for `user` with the test password.
fn base64_plain(user: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"))
}

#[test]
fn a_server_without_starttls_is_refused_not_used_in_plaintext() {
    // A tiny IMAP server that greets without STARTTLS and answers CAPABILITY without it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (stream, _) = listener.accept().expect("accept");
        let mut w = stream.try_clone().expect("clone");
        let mut r = BufReader::new(stream);
        w.write_all(b"* OK IMAP4rev1 ready\r\n").expect("greet");
        let mut line = String::new();
        let mut got = Vec::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            got.push(line.clone());
            let tag = line.split_whitespace().next().unwrap_or("*").to_string();
            if line.to_ascii_uppercase().contains("CAPABILITY") {
                w.write_all(
                    format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n").as_bytes(),
                )
                .expect("caps");
            } else {
                w.write_all(format!("{tag} BAD unexpected\r\n").as_bytes())
                    .expect("bad");
            }
            line.clear();
        }
        got
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = [
        format!(
            "[[profile]]\ntrack = \"all\"\nname = \"p\"\nincoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\n\
             incoming_tls = \"starttls\"\ntimeout_mailbox_connection_after = \"10s\"\n"
        ),
        mailbox("a@example.com", "p", "secret-never-sent"),
    ]
    .concat();
    let cfg = config(tmp.path(), free_port(), &body);
    let (status, out) = run_once(&cfg);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("tls_not_offered") && out.contains("refusing to continue in plaintext"),
        "{out}"
    );
    let got = server.join().expect("server");
    assert!(
        got.iter()
            .all(|l| !l.contains("secret-never-sent") && !l.to_ascii_uppercase().contains("LOGIN")),
        "{got:?}"
    );
}

#[test]
fn a_stalled_server_is_given_up_after_the_connection_timeout() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(1) {
            held.push(stream);
        }
        // Keep the connection open until the client gives up and closes it.
        for s in held.into_iter().flatten() {
            use std::io::Read;
            let mut s = s;
            let mut buf = [0u8; 64];
            while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        }
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = [
        format!(
            "[[profile]]\ntrack = \"all\"\nname = \"p\"\nincoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\n\
             incoming_tls = \"none\"\nallow_plaintext_login = true\ntimeout_mailbox_connection_after = \"1s\"\n"
        ),
        mailbox("stalled@example.com", "p", "pw"),
    ]
    .concat();
    let cfg = config(tmp.path(), free_port(), &body);
    let (status, out) = run_once(&cfg);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("code=\"timeout\"") || out.contains("code=timeout"),
        "{out}"
    );
    assert!(out.contains("transient=true"), "{out}");
    assert!(
        out.contains(&format!(
            "no answer from 127.0.0.1:{port} within 1 s while waiting for the greeting"
        )),
        "{out}"
    );
    holder.join().expect("holder");
}

/// Non-negotiable: no credential and no email body in any log line, at any level, third-party
/// crates' included; nor a credential in the store file, `/status`, `/metrics`, the page or any API
/// answer (Test & Enable transcripts included). With `SIDESYNC_LOG=trace`, async-imap used to log its encoded commands (the
/// SASL PLAIN blob, LOGIN's password) and every decoded response (whole emails).
#[test]
fn trace_logs_carry_no_credential_and_no_email_body() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let users = ["trace-plain@example.com", "trace-login@example.com"];
    let body_marker = "BODY-TEXT-NEVER-LOGGED-41c7";
    for u in users {
        let raw = format!(
            "Message-ID: <{u}.trace@sample.test>\r\nFrom: a@example.com\r\nTo: {u}\r\nSubject: trace\r\n\r\n{body_marker}\r\n"
        );
        d.deliver(u, raw.as_bytes(), "", SystemTime::now());
    }
    let body = [
        profile(
            "plain",
            d.imaps_port,
            &d.ca_file,
            "incoming_authentication_protocol = \"plain\"",
        ),
        profile(
            "login",
            d.imaps_port,
            &d.ca_file,
            "incoming_authentication_protocol = \"login\"",
        ),
        mailbox(users[0], "plain", PASSWORD),
        mailbox(users[1], "login", PASSWORD),
    ]
    .concat();
    let token = tmp.path().join("api.token");
    std::fs::write(&token, "trace-test-token-0123456789").expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let port = free_port();
    let cfg = config(
        tmp.path(),
        port,
        &format!("api_token_file = \"{}\"\n{body}", token.display()),
    );
    let out = std::process::Command::new(support::sidesync::binary())
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .env("SIDESYNC_LOG", "trace")
        .output()
        .expect("run");
    let mut log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    // The running appliance at trace too: what its status endpoints and API answer (a Test &
    // Enable's transcripts included) and what it logs meanwhile.
    let log_file = tmp.path().join("sidesync.log");
    let s = Sidesync::start_with_env(&cfg, &log_file, port, &[("SIDESYNC_LOG", "trace")]);
    let api = |method: &str, path: &str| {
        support::sidesync::http(port, method, path, Some("trace-test-token-0123456789"), "").1
    };
    let mut answers = String::new();
    for u in users {
        let tested =
            support::sidesync::test_through_api(port, u, "trace-test-token-0123456789").to_string();
        assert!(tested.contains("transcript"), "{tested}");
        answers.push_str(&tested);
    }
    answers.push_str(&api("GET", "/status"));
    answers.push_str(&api("GET", "/metrics"));
    answers.push_str(&api("GET", "/api/v1/mailboxes"));
    answers.push_str(&api("GET", "/api/v1/alerts"));
    answers.push_str(&api("GET", "/api/v1/activities?limit=1000"));
    answers.push_str(&api("GET", "/"));
    assert!(s.terminate().success());
    let appliance_log = std::fs::read_to_string(&log_file).expect("log");
    // Each API call that changes something leaves an audit line: who, what, from where.
    let audit = appliance_log
        .lines()
        .find(|l| l.contains("audit: api call") && l.contains("/test"))
        .unwrap_or_else(|| panic!("no audit line:\n{appliance_log}"));
    assert!(
        audit.contains("peer=127.0.0.1")
            && audit.contains("method=\"POST\"")
            && audit.contains("status=202"),
        "{audit}"
    );
    log.push_str(&appliance_log);
    let store = std::fs::read(tmp.path().join("data").join("sidesync.redb")).expect("store file");
    let store = String::from_utf8_lossy(&store);
    for (what, text) in [
        ("the store file", store.as_ref()),
        ("the HTTP answers", answers.as_str()),
    ] {
        assert!(!text.contains(PASSWORD), "a password is in {what}");
        for u in users {
            assert!(
                !text.contains(&base64_plain(u)),
                "the SASL PLAIN blob of {u} is in {what}"
            );
        }
    }
    assert!(
        !answers.contains(body_marker),
        "an email body is in the HTTP answers"
    );
    // The run did log below info (sidesync's own debug lines), or this test proves nothing.
    assert!(log.contains("DEBUG"), "no debug lines at all:\n{log}");
    for u in users {
        assert!(
            !log.contains(&base64_plain(u)),
            "the SASL PLAIN blob of {u} was logged"
        );
    }
    assert!(!log.contains(PASSWORD), "a password was logged");
    assert!(!log.contains(body_marker), "an email body was logged");
}

/// `tls_pin_sha256`: a server whose certificate no configured authority vouches for is trusted
/// when its certificate's SHA-256 is pinned; another pin is refused in words that say so.
#[test]
fn a_pinned_certificate_is_trusted_and_another_pin_refused() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use sha2::{Digest, Sha256};
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let users = ["pinned@example.com", "wrong-pin@example.com"];
    for u in users {
        d.deliver(u, &mail::sample(u, 1, 1_000), "", SystemTime::now());
    }
    let cert = CertificateDer::pem_file_iter(d.dir.join("server.pem"))
        .expect("pem")
        .next()
        .expect("a certificate")
        .expect("parses");
    let pin: String = Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let body = [
        // The other CA does not vouch for dovecot's certificate: only the pin can.
        profile(
            "pinned",
            d.imaps_port,
            &d.other_ca_file,
            &format!("tls_pin_sha256 = \"{pin}\""),
        ),
        profile(
            "wrong",
            d.imaps_port,
            &d.other_ca_file,
            &format!("tls_pin_sha256 = \"{}\"", "00".repeat(32)),
        ),
        mailbox(users[0], "pinned", PASSWORD),
        mailbox(users[1], "wrong", PASSWORD),
    ]
    .concat();
    let cfg = config(tmp.path(), free_port(), &body);
    let (status, out) = run_once(&cfg);
    assert!(!status.success(), "the wrong pin fails: {out}");
    let store = sidesync::store::Store::open(&tmp.path().join("data")).expect("store");
    let states = store.mailbox_states().expect("states");
    assert_eq!(states[users[0]].activities_stored, 1, "{out}");
    let e = states[users[1]].last_error.clone().expect("error");
    assert_eq!(e.code, "certificate_not_trusted", "{e:?}");
    assert!(e.text.contains("not the pinned certificate"), "{}", e.text);
}

/// ALPN: the TLS handshake offers `imap` to an IMAP server and `pop3` to a POP3 one, so a server
/// of another protocol behind the same certificate can refuse instead of being spoken to
/// (cross-protocol attacks). A TLS server of the test's own records what each client offered.
#[test]
fn the_handshake_offers_imap_or_pop3_by_alpn() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(d.dir.join("server.pem"))
            .expect("pem")
            .map(|c| c.expect("certificate"))
            .collect();
    let key = PrivateKeyDer::from_pem_file(d.dir.join("server.key")).expect("key");
    let mut server = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    server.alpn_protocols = vec![b"imap".to_vec(), b"pop3".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let offered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = offered.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let alpn = tls
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|a| String::from_utf8_lossy(a).to_string())
                        .unwrap_or_else(|| "none".into());
                    if let Ok(mut s) = seen.lock() {
                        s.push(alpn);
                    }
                }
            }
        });
    });
    let body = format!(
        "{}{}\
         [[profile]]\nname = \"pop\"\nserver_type = \"pop3_smtp\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {port}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"3s\"\n{}",
        profile("imap", port, &d.ca_file, ""),
        mailbox("alpn-imap@example.com", "imap", PASSWORD),
        d.ca_file.display(),
        mailbox("alpn-pop@example.com", "pop", PASSWORD),
    );
    let cfg = config(tmp.path(), free_port(), &body);
    let _ = run_once(&cfg);
    let got = wait_for("both handshakes", Duration::from_secs(30), || {
        let s = offered.lock().ok()?.clone();
        (s.contains(&"imap".to_string()) && s.contains(&"pop3".to_string())).then_some(s)
    });
    assert!(
        !got.contains(&"none".to_string()),
        "every handshake offered its protocol: {got:?}"
    );
}

#[test]
fn a_later_connection_to_the_server_resumes_the_tls_session() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let user = "resumed@example.com";
    d.deliver(user, &mail::sample(user, 0, 1_500), "", SystemTime::now());
    let body = [
        profile("tls", d.imaps_port, &d.ca_file, ""),
        mailbox(user, "tls", PASSWORD),
    ]
    .concat();
    let port = free_port();
    let cfg = config(tmp.path(), port, &body);
    let s = Sidesync::start(&cfg, &tmp.path().join("sidesync.log"), port);
    let handshakes = |kind: &str| -> Option<u64> {
        let (_, text) = support::sidesync::http_get(port, "/metrics")?;
        let line = format!("sidesync_tls_handshakes_total{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))?
            .parse()
            .ok()
    };
    // Polled every second, each poll on a new connection: after the first, each resumes the
    // session from a ticket dovecot gave on an earlier one.
    let (full, resumed) = wait_for("resumed TLS sessions", Duration::from_secs(60), || {
        let (full, resumed) = (handshakes("full")?, handshakes("resumed")?);
        (resumed >= 3).then_some((full, resumed))
    });
    assert!(full >= 1, "the first connection had nothing to resume");
    assert!(
        resumed >= full,
        "most connections resume ({full} full, {resumed} resumed)"
    );
    assert_eq!(s.mailbox(user)["activities_stored"], 1);
    assert!(s.terminate().success());
}
