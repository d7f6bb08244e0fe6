//! The sidesync binary as a child process, and a tiny HTTP client for its status endpoint.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait_for;

/// The sidesync binary: cargo names it for integration tests; examples find it beside their folder.
pub fn binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_sidesync") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target folder");
    dir.join("sidesync")
}

pub struct Sidesync {
    pub child: Child,
    pub log: PathBuf,
    pub status_port: u16,
}

impl Sidesync {
    /// Starts `sidesync run --config CONFIG`, logging to `log`, and waits for `/healthz`.
    pub fn start(config: &Path, log: &Path, status_port: u16) -> Sidesync {
        Sidesync::start_until(config, log, status_port, || {
            http_get(status_port, "/healthz").filter(|(code, _)| *code == 200)
        })
    }

    /// Starts sidesync with extra environment variables (test hooks) and waits for `/healthz`.
    pub fn start_with_env(
        config: &Path,
        log: &Path,
        status_port: u16,
        env: &[(&str, &str)],
    ) -> Sidesync {
        Sidesync::spawn(config, log, status_port, env, || {
            http_get(status_port, "/healthz").filter(|(code, _)| *code == 200)
        })
    }

    /// Starts sidesync and waits until `ready` says so (e.g. `/healthz` over HTTPS).
    pub fn start_until<T>(
        config: &Path,
        log: &Path,
        status_port: u16,
        ready: impl FnMut() -> Option<T>,
    ) -> Sidesync {
        Sidesync::spawn(config, log, status_port, &[], ready)
    }

    fn spawn<T>(
        config: &Path,
        log: &Path,
        status_port: u16,
        env: &[(&str, &str)],
        mut ready: impl FnMut() -> Option<T>,
    ) -> Sidesync {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("SIDESYNC_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("start sidesync");
        let mut s = Sidesync {
            child,
            log: log.to_path_buf(),
            status_port,
        };
        wait_for("sidesync /healthz", Duration::from_secs(30), || {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "sidesync exited early ({status}):\n{}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            ready()
        });
        s
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(self.status_port, "/status").expect("GET /status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }

    pub fn mailbox(&self, address: &str) -> serde_json::Value {
        self.status()["mailboxes"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["email_address"] == address).cloned())
            .unwrap_or_else(|| panic!("{address} not in /status"))
    }

    /// SIGTERM, then the exit status (it must come within the deadline).
    pub fn terminate(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        wait_for(
            "sidesync to exit after SIGTERM",
            Duration::from_secs(20),
            || self.child.try_wait().ok().flatten(),
        )
    }

    /// SIGINT (Ctrl-C), then the exit status.
    pub fn interrupt(mut self) -> ExitStatus {
        signal(&self.child, "INT");
        wait_for(
            "sidesync to exit after SIGINT",
            Duration::from_secs(20),
            || self.child.try_wait().ok().flatten(),
        )
    }

    /// SIGHUP: reload the config.
    pub fn hangup(&self) {
        signal(&self.child, "HUP");
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill9(mut self) {
        signal(&self.child, "KILL");
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidesync {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

/// `sidesync run --once`: returns its exit status and output.
pub fn run_once(config: &Path) -> (ExitStatus, String) {
    let out = Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(config)
        .output()
        .expect("run sidesync --once");
    (
        out.status,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A minimal HTTP/1.0 GET: (status code, body), or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// A minimal HTTP/1.0 request with an optional bearer token: (status code, body).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to sidesync");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, body.to_string())
}

/// `sidesync ARGS…`: exit status and output.
pub fn cli(args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run sidesync");
    (
        out.status,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Test & Enable through the API: POST answers 202 at once, then GET is polled until the
/// record is there. Returns the record (transcripts included).
pub fn test_through_api(port: u16, address: &str, token: &str) -> serde_json::Value {
    let path = format!("/api/v1/mailboxes/{address}/test");
    let (code, body) = http(port, "POST", &path, Some(token), "");
    assert_eq!(code, 202, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(started["poll"], path.as_str(), "{body}");
    super::wait_for(
        &format!("the test of {address}"),
        Duration::from_secs(120),
        || {
            let (code, body) = http(port, "GET", &path, Some(token), "");
            (code == 200).then(|| serde_json::from_str(&body).expect("json"))
        },
    )
}
