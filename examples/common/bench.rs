//! What the benchmarks share: a tool timed under `/usr/bin/time`, and the mbsync round every
//! ingest figure is held against. Included by the bench examples with `#[path]`.

#![allow(dead_code)]
use std::path::Path;
use std::process::Command;

use super::support::dovecot::{Dovecot, PASSWORD};

pub const USER: &str = "bench@example.com";

pub struct Measure {
    /// What the tool printed (the bare client prints "COUNT BYTES").
    pub stdout: String,
    pub tool: String,
    pub seconds: f64,
    pub cpu: f64,
    pub rss_kb: u64,
}

/// Runs `cmd` under /usr/bin/time and returns its wall time, user+sys CPU and max RSS.
pub fn timed(tool: &str, cmd: &mut Command, out_dir: &Path) -> Measure {
    let time_file = out_dir.join(format!("{tool}.time"));
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&time_file)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    let out = wrapped
        .output()
        .expect("run under /usr/bin/time (package time)");
    assert!(
        out.status.success(),
        "{tool} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(&time_file).expect("time output");
    let f: Vec<f64> = t
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "unexpected /usr/bin/time output {t:?}");
    Measure {
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        tool: tool.to_string(),
        seconds: f[0],
        cpu: f[1] + f[2],
        rss_kb: f[3] as u64,
    }
}

/// Emails in a maildir folder (cur and new) and their bytes.
pub fn maildir_count(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            n += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (n, bytes)
}

/// mbsync, default settings (FSync yes), into a fresh maildir.
/// `lf_bytes`: the emails' size with LF line ends, as mbsync writes them.
pub fn mbsync_round(
    d: &Dovecot,
    root: &Path,
    round: usize,
    count: usize,
    lf_bytes: u64,
) -> Measure {
    let mdir = root.join(format!("mbsync-{round}"));
    std::fs::create_dir_all(mdir.join("INBOX")).expect("mbsync dir");
    let rc = root.join(format!("mbsyncrc-{round}"));
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount bench\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass {PASSWORD}\nSSLType IMAPS\nCertificateFile {ca}\n\n\
             IMAPStore remote\nAccount bench\n\nMaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\n\n\
             Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nSync Pull\nCreate Near\nSyncState *\n",
            port = d.imaps_port,
            ca = d.ca_file.display(),
            dir = mdir.display()
        ),
    )
    .expect("mbsyncrc");
    let m = timed(
        "mbsync",
        Command::new("mbsync")
            .arg("-q")
            .arg("-c")
            .arg(&rc)
            .arg("bench"),
        root,
    );
    // Its figure counts only if it fetched every email, whole.
    let (n, bytes) = maildir_count(&mdir.join("INBOX"));
    assert_eq!(n, count, "mbsync stored {n} of {count} emails");
    // mbsync writes LF line ends and adds its "X-TUID: <12 chars>" line (21 bytes) to each;
    // it may tidy a byte here and there (a header's end), never a whole email's worth.
    let expected = lf_bytes + 21 * count as u64;
    assert!(
        bytes.abs_diff(expected) <= count as u64,
        "mbsync stored {bytes} of {expected} bytes"
    );
    let _ = std::fs::remove_dir_all(&mdir);
    m
}

/// A bench appliance's config, written to `root/sidesync.toml`: plaintext passwords allowed,
/// the store in `root/data`, the status listener on `port` with the API token file `token`, one
/// default profile `name` (track all) on dovecot's IMAPS with `profile` lines added, and every
/// address of `users` approved with dovecot's password.
#[allow(clippy::too_many_arguments)]
pub fn appliance_config(
    root: &Path,
    port: u16,
    token: &Path,
    d: &Dovecot,
    appliance: &str,
    name: &str,
    profile: &str,
    users: &[String],
) -> std::path::PathBuf {
    let mut cfg = format!(
        "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\n\
         api_token_file = \"{}\"\n{appliance}\n\n[[profile]]\nname = \"{name}\"\nis_default = true\ntrack = \"all\"\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\nca_file = \"{}\"\n{profile}\n\n",
        root.join("data").display(),
        token.display(),
        d.imaps_port,
        d.ca_file.display()
    );
    for u in users {
        cfg.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{u}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n"
        ));
    }
    let path = root.join("sidesync.toml");
    std::fs::write(&path, cfg).expect("config");
    path
}

/// The API token a bench appliance is given (`write_token`) and `api_get` sends.
pub const TOKEN: &str = "bench-token-0123456789abcdef";

/// Writes `TOKEN` to `root/api.token` (mode 0600, as the appliance requires) and returns its path.
pub fn write_token(root: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let token = root.join("api.token");
    std::fs::write(&token, TOKEN).expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    token
}

/// The body of `GET path` from the appliance on `port`, with the bench token.
pub fn api_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf.split_once("\r\n\r\n")?.1.to_string())
}

/// Starts `sidesync run --config CONFIG` at log level `level`, logging to `root/sidesync.log`.
pub fn spawn_appliance(root: &Path, config: &Path, level: &str) -> std::process::Child {
    let log = std::fs::File::create(root.join("sidesync.log")).expect("log");
    Command::new(super::support::sidesync::binary())
        .args(["run", "--config"])
        .arg(config)
        .env("SIDESYNC_LOG", level)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("sidesync")
}
