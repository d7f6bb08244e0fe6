//! The status listener under a 1024 file limit (systemd's default): thousands of idle
//! connections, slow header senders and a 1 MB header from one address, while `/healthz` answers
//! from another and from the same one; the limits answer in words; a DNS-rebinding Host is refused; status endpoints need the
//! token off loopback. No panic, and everything answers again afterwards.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, wait_for};

/// A request from `from` (a loopback address of our choice) with `host` as Host: (code, body).
fn request(
    from: &str,
    port: u16,
    path: &str,
    host: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let socket = tokio_free_socket(from)?;
    let mut s = socket;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// A blocking socket bound to `from`, connected to the appliance (std cannot bind before
/// connecting; tokio's TcpSocket can).
fn tokio_free_socket(from: &str) -> Option<TcpStream> {
    PORT.with(|p| {
        let port = p.get();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let sock = tokio::net::TcpSocket::new_v4().ok()?;
            sock.bind(format!("{from}:0").parse().ok()?).ok()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
            let s = tokio::time::timeout(Duration::from_secs(10), sock.connect(addr))
                .await
                .ok()?
                .ok()?;
            let s = s.into_std().ok()?;
            s.set_nonblocking(false).ok()?;
            Some(s)
        })
    })
}

thread_local! {
    static PORT: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

fn healthz(port: u16) -> bool {
    request("127.0.0.1", port, "/healthz", "127.0.0.1", None).is_some_and(|(c, _)| c == 200)
}

#[test]
fn the_listener_holds_under_a_flood_with_1024_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    PORT.with(|p| p.set(port));
    let token = dir.path().join("api.token");
    std::fs::write(&token, "front-test-token-0123456789").expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let cfg = dir.path().join("sidesync.toml");
    // Listening on all addresses, so that other loopback addresses are "other hosts".
    std::fs::write(
        &cfg,
        format!(
            "[appliance]\ndata_dir = \"{}\"\nstatus_listen = \"0.0.0.0:{port}\"\napi_token_file = \"{}\"\n\
             status_allowed_hosts = [\"127.0.0.1\", \"localhost\"]\n",
            dir.path().join("data").display(),
            token.display()
        ),
    )
    .expect("config");
    let log = dir.path().join("sidesync.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let mut child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg("--")
        .arg(support::sidesync::binary())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("prlimit sidesync");
    wait_for("the listener", Duration::from_secs(30), || {
        healthz(port).then_some(())
    });

    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    let (code, body) = request("127.0.0.1", port, "/status", "evil.example", None).expect("answer");
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("status_allowed_hosts"), "{body}");
    // From loopback the status endpoints need no token (every 127/8 address is loopback, so
    // the rule for other hosts is unit-tested: `token_may_travel`, `guard::needs_token`).
    let (code, _) = request("127.0.0.1", port, "/status", "127.0.0.1", None).expect("answer");
    assert_eq!(code, 200);
    // A client cannot pass itself off as another address: its own peer header is dropped.
    let (code, _) = request("127.0.0.1", port, "/status", "localhost", None).expect("answer");
    assert_eq!(code, 200, "localhost is allowed");

    // A 1 MB header is refused in words.
    let mut big = tokio_free_socket("127.0.0.3").expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let _ = write!(
        big,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "x".repeat(1 << 20)
    );
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    // Three waves of 800 idle connections and slow header senders from one address: the
    // appliance holds 32 of them and closes the rest at once; /healthz answers meanwhile.
    for wave in 0..3 {
        let mut held = Vec::new();
        for i in 0..800 {
            if let Some(mut s) = tokio_free_socket("127.0.0.2") {
                if i % 2 == 0 {
                    // A slow sender: the request line, then nothing.
                    let _ = s.write_all(b"GET /status HTTP/1.1\r\n");
                }
                held.push(s);
            }
        }
        assert!(
            held.len() > 100,
            "wave {wave}: only {} connections opened",
            held.len()
        );
        assert!(
            healthz(port),
            "wave {wave}: /healthz did not answer during the flood"
        );
        drop(held);
    }
    // The same from the monitor's own address: the oldest idle connection gives its place, so
    // /healthz still gets in.
    let mut held = Vec::new();
    for _ in 0..800 {
        if let Some(s) = tokio_free_socket("127.0.0.1") {
            held.push(s);
        }
    }
    assert!(held.len() > 100, "only {} connections opened", held.len());
    assert!(
        healthz(port),
        "/healthz did not answer during a flood from its own address"
    );
    drop(held);
    wait_for("/healthz after the flood", Duration::from_secs(30), || {
        healthz(port).then_some(())
    });
    assert!(
        child.try_wait().expect("status").is_none(),
        "sidesync exited"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("panicked"), "{text}");
}
