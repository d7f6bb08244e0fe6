//! The few HTTP workers cannot be held or killed by a client: request bodies are bounded in size
//! and time at the front, before tiny_http sees them. Against the real binary on a free port.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::appliance::{Setup, TOKEN};
use support::sidesync::{Sidesync, http_get};

/// More than the four workers behind the front.
const MORE_THAN_WORKERS: usize = 8;

fn start(extra: &str) -> (Setup, Sidesync) {
    let setup = Setup::new();
    let config = setup.write(extra, "");
    let running = setup.start(&config);
    (setup, running)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s
}

/// Everything the appliance sends until it closes, as text.
fn answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_string()
}

/// `n` requests for `/healthz` at once, each on its own connection: all of them 200.
fn all_answer_healthz(port: u16, n: usize) {
    let answers: Vec<_> = std::thread::scope(|scope| {
        let asked: Vec<_> = (0..n)
            .map(|_| scope.spawn(move || http_get(port, "/healthz")))
            .collect();
        asked.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    for a in &answers {
        assert!(
            matches!(a, Some((200, body)) if body == "ok\n"),
            "{answers:?}"
        );
    }
}

/// Fails on the old front: tiny_http handed each request to a worker at its head, and the
/// worker waited for the body (or drained it) for up to the connection's five minutes, so
/// /healthz found no worker.
#[test]
fn silent_bodies_hold_no_worker_and_get_408() {
    let (setup, running) = start("status_body_timeout = \"2s\"");
    let port = setup.port;
    let mut silent: Vec<TcpStream> = (0..MORE_THAN_WORKERS)
        .map(|_| {
            let mut s = connect(port);
            write!(
                s,
                "POST /api/v1/outbox HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 40000000\r\n\r\n"
            )
            .expect("send the head");
            s
        })
        .collect();
    // Bodies announced, none sent: the workers are free for everyone else.
    all_answer_healthz(port, MORE_THAN_WORKERS);
    for s in &mut silent {
        let a = answer(s);
        assert!(a.starts_with("HTTP/1.1 408 "), "{a}");
        assert!(a.contains("status_body_timeout"), "{a}");
    }
    all_answer_healthz(port, MORE_THAN_WORKERS);
    assert!(!running.log_text().contains("panicked"));
}

/// Fails on the old front: tiny_http answered /healthz, then panicked dropping the request
/// (draining a body of 2^64-1 bytes allocates that much), and each such request killed one of
/// the four workers for good.
#[test]
fn the_largest_content_length_is_refused_and_every_worker_lives() {
    let (setup, running) = start("");
    let port = setup.port;
    for _ in 0..MORE_THAN_WORKERS {
        let mut s = connect(port);
        s.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        )
        .expect("send");
        let a = answer(&mut s);
        assert!(a.starts_with("HTTP/1.1 413 "), "{a}");
    }
    all_answer_healthz(port, MORE_THAN_WORKERS);
    let (code, metrics) = support::sidesync::http(port, "GET", "/metrics", None, "");
    assert_eq!(code, 200, "{metrics}");
    for family in [
        "sidesync_http_worker_restarts_total 0",
        "sidesync_http_handler_panics_total 0",
    ] {
        assert!(metrics.contains(family), "{family} in:\n{metrics}");
    }
    assert!(!running.log_text().contains("panicked"));
}

/// Fails on the old front: the request went to the API, which read the body up to its 48 MB
/// limit before refusing it; with only a little of it sent, no answer came.
#[test]
fn bodies_over_the_limit_get_413_before_they_are_sent_whole() {
    let (setup, _running) = start("");
    let port = setup.port;
    let head = |framing: &str| {
        format!(
            "POST /api/v1/outbox HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\n{framing}\r\n\r\n"
        )
    };
    // 100 MB announced, 1 MB sent.
    let mut s = connect(port);
    s.write_all(head("Content-Length: 104857600").as_bytes())
        .expect("head");
    let _ = s.write_all(&vec![b' '; 1 << 20]);
    let a = answer(&mut s);
    assert!(a.starts_with("HTTP/1.1 413 "), "{a}");
    assert!(a.contains("over 50331648 bytes"), "{a}");
    // Chunked: a chunk of 64 MB is refused at its size line.
    let mut s = connect(port);
    s.write_all(head("Transfer-Encoding: chunked").as_bytes())
        .expect("head");
    let _ = s.write_all(b"4000000\r\n");
    let _ = s.write_all(&vec![b' '; 1 << 16]);
    let a = answer(&mut s);
    assert!(a.starts_with("HTTP/1.1 413 "), "{a}");
    // Framing that can be read two ways is refused by the front, not guessed at.
    let mut s = connect(port);
    s.write_all(head("Content-Length: 2\r\nTransfer-Encoding: chunked").as_bytes())
        .expect("head");
    let a = answer(&mut s);
    assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
    assert!(
        a.contains("both Content-Length and Transfer-Encoding"),
        "{a}"
    );
    // A chunked body within the limit reaches the API whole: its own refusal of `{}`.
    let mut s = connect(port);
    s.write_all(head("Transfer-Encoding: chunked").as_bytes())
        .expect("head");
    s.write_all(b"1\r\n{\r\n1\r\n}\r\n0\r\n\r\n").expect("body");
    let a = answer(&mut s);
    assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
    assert!(a.contains("urn:sidesync:problem:"), "the API's answer: {a}");
}

/// Under systemd's watchdog the pings depend on the HTTP side answering: with tiny_http's socket
/// gone (nothing behind the front answers), WATCHDOG=1 stops and the status line says why. Fails
/// on the old code, whose pings followed the engine alone.
#[test]
fn the_watchdog_stops_when_the_http_side_does_not_answer() {
    use std::os::unix::net::UnixDatagram;
    let setup = Setup::new();
    let config = setup.write("", "");
    let sock_path = setup.dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&sock_path).expect("bind");
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let _running = Sidesync::start_with_env(
        &config,
        &setup.dir.path().join("sidesync.log"),
        setup.port,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().expect("utf-8")),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = systemd.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    while !next().contains("WATCHDOG=1") {}
    // The HTTP side goes dark: the front finds nothing to hand requests to.
    std::fs::remove_file(setup.dir.path().join("data").join("status.sock")).expect("remove");
    let said = loop {
        let m = next();
        if m.contains("watchdog withheld") {
            break m;
        }
    };
    assert!(said.contains("HTTP side has not answered"), "{said}");
    // From then on, never a ping.
    for _ in 0..3 {
        let m = next();
        assert!(!m.contains("WATCHDOG=1"), "{m}");
        assert!(m.contains("watchdog withheld"), "{m}");
    }
}

/// Over HTTPS the self-probe speaks TLS to the listener, trusting its own certificate: the
/// pings go on well past the start's grace.
#[test]
fn the_watchdog_probe_speaks_https_when_the_listener_does() {
    use std::os::unix::net::UnixDatagram;
    let setup = Setup::new();
    let dir = setup.dir.path();
    let made = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-nodes",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-keyout", "status.key", "-out", "status.pem"])
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("status.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
    }
    let config = setup.write(
        &format!(
            "status_tls_cert = \"{}\"\nstatus_tls_key = \"{}\"\n",
            dir.join("status.pem").display(),
            dir.join("status.key").display()
        ),
        "",
    );
    let sock_path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&sock_path).expect("bind");
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut child = std::process::Command::new(support::sidesync::binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sidesync");
    let mut buf = [0u8; 4096];
    let mut said = Vec::new();
    while said.len() < 12 {
        let n = systemd.recv(&mut buf).expect("a notification within 30 s");
        said.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    // Twelve notifications take about six intervals of 1 s: three times the 2 s a probe may
    // be missing before the pings stop.
    assert!(!said.iter().any(|m| m.contains("withheld")), "{said:?}");
    let pings = said.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 4, "{said:?}");
}
