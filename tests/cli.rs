//! The command line as users run it: `check-config` points at FILE:LINE:COL of every mistake.

mod support;

use std::process::Command;

fn check_config(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidesync.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(support::sidesync::binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("SIDESYNC_TEST_PW", "pw")
        .output()
        .expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "FILE"),
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE"),
    )
}

#[test]
fn a_valid_config_passes() {
    let (code, out, err) = check_config(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"imap.example.com\"\n\
         [[mailbox]]\nemail_address = \"a@example.com\"\npassword_env = \"SIDESYNC_TEST_PW\"\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "FILE: OK (1 profiles, 1 mailboxes)");
}

#[test]
fn every_mistake_is_printed_with_its_place() {
    let text = r#"[appliance]
data_dir = "/tmp/x"
colour = "blue"
"#;
    let (code, _, err) = check_config(text);
    assert_eq!(code, 1);
    assert!(err.starts_with("FILE:3:1: unknown field `colour`"), "{err}");

    let text = r#"[[profile]]
name = "p"
incoming_server_location = "imap.example.com"
incoming_port_number = 99999
timeout_mailbox_connection_after = "2m"
incoming_credential_retrieval = "without_credentials"

[[mailbox]]
email_address = "a@example.com"
password_env = "SIDESYNC_TEST_PW"
profile = "q"

[[mailbox]]
email_address = "A@example.com"
password_env = "SIDESYNC_TEST_PW"
profile = "p"
"#;
    let (code, _, err) = check_config(text);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(
        lines[0].starts_with("FILE:4:24: incoming_port_number = 99999 is out of range"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(
            "FILE:5:36: timeout_mailbox_connection_after = 2m is over the upper limit of 100 s"
        ),
        "{err}"
    );
    assert!(
        lines[2].starts_with(
            "FILE:6:33: incoming_credential_retrieval = \"without_credentials\" is not valid"
        ),
        "{err}"
    );
    assert!(
        lines[3].starts_with(
            "FILE:11:11: mailbox a@example.com names profile \"q\", which is not defined"
        ),
        "{err}"
    );
    assert!(
        lines[4].starts_with("FILE:14:17: a mailbox for a@example.com is already defined"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let out = Command::new(support::sidesync::binary())
        .args(["check-config", "--config", "/nonexistent/sidesync.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/sidesync.toml") && err.contains("cannot read the config file"),
        "{err}"
    );
}

/// `run` with a broken config exits 78 (EX_CONFIG) and says what is wrong, so systemd's
/// RestartPreventExitStatus=78 stops restarting it.
#[test]
fn run_with_a_broken_config_exits_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidesync.toml");
    std::fs::write(&path, "[appliance]\ncolour = \"blue\"\n").expect("write");
    let out = Command::new(support::sidesync::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `colour`"), "{err}");
}

/// Under systemd (`Type=notify`): READY=1 with a STATUS line once the store is open and the
/// listener bound, WATCHDOG=1 while the scheduler loops, STOPPING=1 on the way out. A socket of
/// the test's own plays systemd.
#[test]
fn systemd_is_told_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let port = support::free_port();
    let cfg = dir.path().join("sidesync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[appliance]\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let s = support::sidesync::Sidesync::start_with_env(
        &cfg,
        &dir.path().join("sidesync.log"),
        port,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().expect("utf-8")),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while !said.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = sock.recv(&mut buf).expect("a notification within 30 s");
        said.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(said[0].starts_with("READY=1\nSTATUS="), "{said:?}");
    assert!(said[0].contains("mailboxes"), "{said:?}");
    assert!(s.terminate().success());
    let mut rest = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        let stop = m.contains("STOPPING=1");
        rest.push(m);
        if stop {
            break;
        }
    }
    assert!(rest.iter().any(|m| m.contains("STOPPING=1")), "{rest:?}");
}

/// The config is found without --config: SIDESYNC_CONFIG, else /etc/sidesync/sidesync.toml.
#[test]
fn the_config_path_comes_from_sidesync_config_or_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("elsewhere.toml");
    std::fs::write(&path, "[appliance]\ndata_dir = \"/tmp/x\"\n").expect("write");
    let out = Command::new(support::sidesync::binary())
        .arg("check-config")
        .env("SIDESYNC_CONFIG", &path)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("elsewhere.toml: OK"));
    let out = Command::new(support::sidesync::binary())
        .arg("check-config")
        .env_remove("SIDESYNC_CONFIG")
        .output()
        .expect("run");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("/etc/sidesync/sidesync.toml"), "{said}");
}

/// `run --once` on an empty config: its stderr with `args` and `env`.
fn run_once_logs(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidesync.toml");
    std::fs::write(
        &path,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let out = Command::new(support::sidesync::binary())
        .args(["run", "--once", "--config"])
        .arg(&path)
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .envs(env.iter().copied())
        .output()
        .expect("run sidesync");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn logs_as_json_lines_for_shippers_and_plain_elsewhere() {
    let json = run_once_logs(&["--log-format", "json"], &[]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let warning = events
        .iter()
        .find(|e| e["level"] == "WARN")
        .unwrap_or_else(|| panic!("the plaintext warning: {json}"));
    assert!(
        warning["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("allow_plaintext_passwords")),
        "{warning}"
    );
    let starting = events
        .iter()
        .find(|e| e["fields"]["message"] == "sidesync starting")
        .unwrap_or_else(|| panic!("the start line: {json}"));
    assert_eq!(starting["level"], "INFO");
    assert_eq!(starting["fields"]["mailboxes"], 0, "fields stay fields");
    assert!(starting["timestamp"].is_string(), "{starting}");

    // The same through the environment variable a unit file sets.
    let json = run_once_logs(&[], &[("SIDESYNC_LOG_FORMAT", "json")]);
    assert!(json.lines().all(|l| l.starts_with('{')), "{json}");

    // Plain: one line per event with a time; under systemd without a journal socket (a
    // container), the journal stamps the lines itself, so they carry no time.
    let plain = run_once_logs(&["--log-format", "plain"], &[]);
    assert!(
        plain
            .lines()
            .any(|l| l.contains(" WARN ") && l.starts_with(|c: char| c.is_ascii_digit())),
        "{plain}"
    );
    if !std::path::Path::new("/run/systemd/journal/socket").exists() {
        let bare = run_once_logs(&[], &[("JOURNAL_STREAM", "8:1234")]);
        assert!(
            bare.lines().any(|l| l.starts_with(" WARN ")),
            "no time under systemd: {bare}"
        );
    }
    let bad = Command::new(support::sidesync::binary())
        .args(["run", "--log-format", "xml", "--config", "/nonexistent"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown format");
}

/// The status page's TLS key and an OAuth service account's key are secrets: `check-config`
/// refuses them when others can read them, naming the key and the fix, and passes them 0600.
#[test]
fn private_keys_others_can_read_fail_check_config() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (keys.path().join("s.pem"), keys.path().join("s.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let text = format!(
        "[appliance]\nstatus_tls_cert = \"{}\"\nstatus_tls_key = \"{}\"\n\
         [[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"imap.example.com\"\n\
         oauth_token_endpoint = \"https://127.0.0.1:9/token\"\noauth_grant = \"service_account\"\n\
         oauth_client_id = \"sa@example.com\"\noauth_client_key_file = \"{}\"\n\
         oauth_scope = \"https://mail.google.com/\"\nincoming_authentication_protocol = \"xoauth2\"\n\
         [[mailbox]]\nemail_address = \"a@example.com\"\n",
        cert.display(),
        key.display(),
        key.display()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = check_config(&text);
    assert_eq!(code, 1, "{err}");
    for name in ["status_tls_key", "oauth_client_key_file"] {
        assert!(
            err.contains(&format!("{name} {}", key.display()))
                && err.contains("can be read by others (mode 644); run chmod 600 on it"),
            "{name}: {err}"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) = check_config(&text);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
}

fn sidesync(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(support::sidesync::binary())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run sidesync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The environment variables the source reads (`env::var("X")`, `var_os("X")`, clap's
/// `env = "X"`), test hooks aside.
fn env_vars_read() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("src").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read");
                for marker in [
                    "env::var(\"",
                    "env::var_os(\"",
                    "env = \"",
                    "try_from_env(\"",
                ] {
                    for (i, _) in text.match_indices(marker) {
                        let rest = &text[i + marker.len()..];
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                            .collect();
                        if !name.is_empty() && !name.starts_with("SIDESYNC_TEST_") {
                            out.push(name);
                        }
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut out,
    );
    out.sort();
    out.dedup();
    out
}

/// sidesync(1) has EXIT STATUS, ENVIRONMENT (every variable the binary reads) and FILES.
#[test]
fn the_man_page_names_exit_statuses_environment_and_files() {
    let (code, man) = sidesync(&["man"], &[]);
    assert_eq!(code, 0, "{man}");
    for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"] {
        assert!(
            man.contains(&format!(".SH \"{section}\"")) || man.contains(&format!(".SH {section}")),
            "{section}: {man}"
        );
    }
    let vars = env_vars_read();
    for must in [
        "SIDESYNC_CONFIG",
        "SIDESYNC_LOG",
        "SIDESYNC_SHARD",
        "SIDESYNC_LOG_FORMAT",
    ] {
        assert!(
            vars.iter().any(|v| v == must),
            "the scan finds {must}: {vars:?}"
        );
    }
    let environment = man
        .split(".SH ENVIRONMENT")
        .nth(1)
        .and_then(|r| r.split(".SH FILES").next())
        .unwrap_or_else(|| panic!("an ENVIRONMENT section: {man}"));
    for v in &vars {
        assert!(environment.contains(v.as_str()), "{v} in ENVIRONMENT");
    }
    for status in [
        "\\fB0\\fR",
        "\\fB1\\fR",
        "\\fB2\\fR",
        "\\fB3\\fR",
        "\\fB78\\fR",
    ] {
        assert!(man.contains(status), "{status}");
    }
    for file in [
        "sidesync.toml",
        "sidesync.redb",
        "secret.key",
        "control.sock",
    ] {
        assert!(man.contains(file), "{file}");
    }
    let (code, help) = sidesync(&["--help"], &[]);
    assert_eq!(code, 0, "{help}");
    assert!(
        help.contains("Exit status:") && help.contains("3   the appliance is not running"),
        "{help}"
    );
}

/// sidesync.toml(5): every key the config parser accepts, under its section, with its type.
#[test]
fn the_config_page_lists_every_key_the_parser_accepts() {
    let (code, page) = sidesync(&["man", "--config-page"], &[]);
    assert_eq!(code, 0, "{page}");
    assert!(page.contains(".TH sidesync.toml 5"), "{page}");
    let keys = sidesync::config::reference::accepted_keys();
    assert!(keys.len() > 100, "{keys:?}");
    for (section, key) in keys {
        let head = [format!(".SH [{section}]\n"), format!(".SH [[{section}]]\n")];
        let part = head
            .iter()
            .find_map(|h| page.split(h.as_str()).nth(1))
            .and_then(|r| r.split("\n.SH ").next())
            .unwrap_or_else(|| panic!("a section [{section}]: {page}"));
        let shown = format!("\\fB{}\\fR (\\fI", key);
        assert!(part.contains(&shown), "[{section}] {key}: {part}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = sidesync(&["man", "--dir", dir.path().to_str().expect("utf-8")], &[]);
    assert_eq!(code, 0, "{out}");
    let written = std::fs::read_to_string(dir.path().join("sidesync.toml.5")).expect("page");
    assert_eq!(written, page);
    let main = std::fs::read_to_string(dir.path().join("sidesync.1")).expect("page");
    assert!(
        main.contains("EXIT STATUS"),
        "the folder's sidesync.1 is the full page"
    );
}

/// Dynamic completions: the script calls sidesync back, which completes mailbox addresses and
/// profile names from the config; enums complete from their values.
#[test]
fn mailbox_addresses_and_profile_names_complete_from_the_config() {
    let (code, script) = sidesync(&["completions", "bash", "--dynamic"], &[]);
    assert_eq!(code, 0, "{script}");
    assert!(script.contains("SIDESYNC_COMPLETE=\"bash\""), "{script}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("sidesync.toml");
    std::fs::write(
        &cfg,
        "[[profile]]\nname = \"corporate\"\n[[profile]]\nname = \"cloud\"\n\
         [[mailbox]]\nemail_address = \"alice@example.com\"\n\
         [[mailbox]]\nemail_address = \"bob@example.com\"\n",
    )
    .expect("write");
    let complete = |words: &[&str]| {
        let mut args = vec!["--"];
        args.extend(words);
        let index = (words.len() - 1).to_string();
        let (code, out) = sidesync(
            &args,
            &[
                ("SIDESYNC_COMPLETE", "bash"),
                ("SIDESYNC_CONFIG", cfg.to_str().expect("utf-8")),
                ("_CLAP_COMPLETE_INDEX", &index),
                ("_CLAP_COMPLETE_COMP_TYPE", "9"),
                ("_CLAP_COMPLETE_SPACE", "true"),
                ("_CLAP_IFS", "\n"),
            ],
        );
        assert_eq!(code, 0, "{out}");
        let mut got: Vec<String> = out.lines().map(str::to_string).collect();
        got.sort();
        got
    };
    assert_eq!(
        complete(&["sidesync", "approve", "a"]),
        ["alice@example.com"]
    );
    assert_eq!(
        complete(&["sidesync", "alerts", "--mailbox", ""]),
        ["alice@example.com", "bob@example.com"]
    );
    assert_eq!(
        complete(&["sidesync", "test", "--profile", "co"]),
        ["corporate"]
    );
    assert_eq!(
        complete(&["sidesync", "approve", "--approval", "p"]),
        ["pending_approval"]
    );
    // The static scripts know the values too.
    let (code, bash) = sidesync(&["completions", "bash"], &[]);
    assert_eq!(code, 0, "{bash}");
    assert!(
        bash.contains("pending_send sending sent failed cancelled"),
        "{bash}"
    );
}
