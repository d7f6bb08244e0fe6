//! Secrets at rest, as an admin handles them: `sidesync secret encrypt` and `rotate` (interrupted
//! at each step: every value still opens), a sealed value moved to another mailbox refused for
//! that mailbox alone, passwords from the environment and from systemd credentials, and inline
//! plaintext refused unless allowed.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::sidesync::{Sidesync, binary};
use support::{free_port, wait_for};

const PASSWORD: &str = "correct horse battery staple";

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sidesync.toml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Two mailboxes; `alice` and `bob` are their password lines.
    fn write(&self, alice: &str, bob: &str, port: u16) {
        std::fs::write(
            self.config(),
            format!(
                "[appliance]\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\n\
                 [[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
                 incoming_port_number = 9\nmin_polling_interval = \"1h\"\n\
                 [[mailbox]]\nemail_address = \"alice@example.com\"\napproval = \"approved\"\n{alice}\n\
                 [[mailbox]]\nemail_address = \"bob@example.com\"\napproval = \"approved\"\n{bob}\n",
                self.data().display()
            ),
        )
        .expect("config");
    }
}

fn sidesync(
    args: &[&str],
    config: &Path,
    stdin: &str,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn seal(d: &Dir, mailbox: &str) -> String {
    let (code, out, err) = sidesync(
        &["secret", "encrypt", "--mailbox", mailbox],
        &d.config(),
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let v = out.trim().to_string();
    assert!(v.starts_with("enc:v1:") && !v.contains(PASSWORD), "{v}");
    v
}

fn check(d: &Dir) -> (i32, String) {
    let (code, _, err) = sidesync(&["check-config"], &d.config(), "", &[]);
    (code, err)
}

#[test]
fn plaintext_is_refused_unless_allowed_and_env_and_credentials_work() {
    let d = Dir::new();
    d.write(
        &format!("password = \"{PASSWORD}\""),
        "password_env = \"BOB_PW\"",
        free_port(),
    );
    let (code, _, err) = sidesync(&["check-config"], &d.config(), "", &[("BOB_PW", "x")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("password is plaintext in the config file"),
        "{err}"
    );
    assert!(
        !err.contains(PASSWORD),
        "the error never shows the password"
    );
    // The environment variable must be there.
    let text = std::fs::read_to_string(d.config()).expect("read");
    std::fs::write(
        d.config(),
        text.replace(
            "[appliance]\n",
            "[appliance]\nallow_plaintext_passwords = true\n",
        ),
    )
    .expect("write");
    let (code, _, err) = sidesync(&["check-config"], &d.config(), "", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("password_env: the environment variable BOB_PW is not set"),
        "{err}"
    );
    let (code, _, err) = sidesync(&["check-config"], &d.config(), "", &[("BOB_PW", "x")]);
    assert_eq!(code, 0, "{err}");
    // systemd credentials: $CREDENTIALS_DIRECTORY/NAME.
    d.write(
        "password_credential = \"alice.pw\"",
        "password_env = \"BOB_PW\"",
        free_port(),
    );
    let (code, _, err) = sidesync(&["check-config"], &d.config(), "", &[("BOB_PW", "x")]);
    assert_eq!(code, 1);
    assert!(err.contains("$CREDENTIALS_DIRECTORY is not set"), "{err}");
    let creds = d.dir.path().join("creds");
    std::fs::create_dir_all(&creds).expect("creds");
    std::fs::write(creds.join("alice.pw"), PASSWORD).expect("credential");
    let creds = creds.display().to_string();
    let (code, _, err) = sidesync(
        &["check-config"],
        &d.config(),
        "",
        &[("BOB_PW", "x"), ("CREDENTIALS_DIRECTORY", creds.as_str())],
    );
    assert_eq!(code, 0, "{err}");
    // Two ways at once is a mistake.
    d.write(
        "password_env = \"A\"\npassword_file = \"/x\"",
        "password_env = \"BOB_PW\"",
        free_port(),
    );
    let (code, _, err) = sidesync(
        &["check-config"],
        &d.config(),
        "",
        &[("BOB_PW", "x"), ("A", "y")],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("set only one of password, password_file, password_env, password_credential"),
        "{err}"
    );
}

#[test]
fn sealed_values_round_trip_and_rotation_is_all_or_none() {
    let d = Dir::new();
    d.write("password_env = \"A\"", "password_env = \"B\"", free_port());
    let alice = seal(&d, "Alice@Example.com");
    let bob = seal(&d, "bob@example.com");
    let key_file = d.data().join("secret.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "the key file is made owner-only"
    );
    d.write(
        &format!("password = \"{alice}\""),
        &format!("password = \"{bob}\""),
        free_port(),
    );
    assert_eq!(check(&d), (0, String::new()));
    let before = std::fs::read_to_string(d.config()).expect("read");
    // Rotation stopped after each step: every value still opens.
    for step in ["1", "2"] {
        let (code, _, err) = sidesync(
            &["secret", "rotate"],
            &d.config(),
            "",
            &[("SIDESYNC_TEST_ROTATE_STOP", step)],
        );
        assert_eq!(code, 0, "{err}");
        let (code, err) = check(&d);
        assert_eq!(code, 0, "after step {step}: {err}");
    }
    let (code, out, err) = sidesync(&["secret", "rotate"], &d.config(), "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 sealed values rotated"), "{out}");
    let after = std::fs::read_to_string(d.config()).expect("read");
    assert_ne!(before, after);
    assert!(!after.contains(&alice) && !after.contains(PASSWORD));
    assert_eq!(check(&d).0, 0);
    let keys = std::fs::read_to_string(&key_file).expect("keys");
    assert_eq!(
        keys.lines().filter(|l| l.starts_with("key ")).count(),
        1,
        "the old key is gone"
    );
    // A value sealed under a key that is gone: nothing is rotated, nothing changes.
    let text = after.replacen(
        "password = \"enc:v1:",
        &format!("password = \"{alice}\"\n#"),
        1,
    );
    std::fs::write(d.config(), &text).expect("write");
    let keys_before = std::fs::read_to_string(&key_file).expect("keys");
    let (code, _, err) = sidesync(&["secret", "rotate"], &d.config(), "", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing rotated"), "{err}");
    assert_eq!(std::fs::read_to_string(d.config()).expect("read"), text);
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("keys"),
        keys_before
    );
    // A key file others can read is refused.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = sidesync(&["secret", "rotate"], &d.config(), "", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("chmod 600"), "{err}");
}

/// A value moved to another mailbox does not open there: that mailbox alone stops, with an
/// alert; the appliance runs and the other mailbox is processed.
#[test]
fn a_moved_ciphertext_stops_only_its_mailbox() {
    let d = Dir::new();
    let port = free_port();
    d.write("password_env = \"A\"", "password_env = \"B\"", port);
    let alice = seal(&d, "alice@example.com");
    // Alice's value pasted into bob's mailbox.
    d.write(
        &format!("password = \"{alice}\""),
        &format!("password = \"{alice}\""),
        port,
    );
    let (code, err) = check(&d);
    assert_eq!(code, 1);
    assert!(
        err.contains("bob@example.com") && err.contains("does not open"),
        "{err}"
    );
    assert!(
        !err.contains("alice@example.com:"),
        "alice's value opens: {err}"
    );
    let log = d.dir.path().join("sidesync.log");
    let s = Sidesync::start(&d.config(), &log, port);
    let bob = wait_for("bob's alert", Duration::from_secs(30), || {
        let m = s.mailbox("bob@example.com");
        (m["latest_alert"]["code"] == "secret_unreadable").then_some(m)
    });
    assert_eq!(bob["not_processed_code"], "secret_unreadable", "{bob}");
    let alice = s.mailbox("alice@example.com");
    assert_ne!(alice["not_processed_code"], "secret_unreadable", "{alice}");
    assert!(s.terminate().success());
    // Nothing of the password anywhere the appliance wrote.
    let mut written = std::fs::read(&log).expect("log");
    written.extend(std::fs::read(d.data().join("sidesync.redb")).expect("store"));
    assert!(
        memchr_find(&written, PASSWORD.as_bytes()).is_none(),
        "the password leaked into the log or the store"
    );
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Scoped API tokens: `read` reads, `send` also queues email, `admin` does everything; a call
/// beyond a token's scope is 403 naming both, and the audit line names the token.
#[test]
fn api_tokens_have_scopes() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new();
    let port = free_port();
    d.write("password_env = \"A\"", "password_env = \"B\"", port);
    let read_file = d.dir.path().join("dash.token");
    std::fs::write(&read_file, "dashboard-token-0123456789").expect("token");
    std::fs::set_permissions(&read_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = std::fs::read_to_string(d.config()).expect("read").replace(
        "[[profile]]",
        &format!(
            "[[appliance.api_tokens]]\nname = \"dash\"\nscope = \"read\"\nfile = \"{}\"\n\
             [[appliance.api_tokens]]\nname = \"crm\"\nscope = \"send\"\nenv = \"CRM_TOKEN\"\n\
             [[profile]]",
            read_file.display()
        ),
    );
    std::fs::write(d.config(), text).expect("write");
    let log = d.dir.path().join("sidesync.log");
    let s = Sidesync::start_with_env(
        &d.config(),
        &log,
        port,
        &[
            ("A", "a"),
            ("B", "b"),
            ("CRM_TOKEN", "crm-integration-token-0123"),
        ],
    );
    let call = |method: &str, path: &str, token: &str, body: &str| {
        support::sidesync::http(port, method, path, Some(token), body)
    };
    let dash = "dashboard-token-0123456789";
    let crm = "crm-integration-token-0123";
    assert_eq!(call("GET", "/api/v1/mailboxes", dash, "").0, 200);
    let (code, answer) = call("POST", "/api/v1/outbox", dash, "{}");
    assert_eq!(code, 403, "{answer}");
    assert!(
        answer.contains("\\\"dash\\\" has scope read; this call needs send"),
        "{answer}"
    );
    // send may queue (the request itself is then judged: no outgoing server here).
    let (code, answer) = call(
        "POST",
        "/api/v1/outbox",
        crm,
        "{\"from\": \"alice@example.com\", \"to\": [\"x@example.net\"], \"text\": \"t\"}",
    );
    assert_ne!(code, 403, "{answer}");
    let (code, answer) = call(
        "POST",
        "/api/v1/mailboxes/alice@example.com/approve",
        crm,
        "",
    );
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("needs admin"), "{answer}");
    assert_eq!(call("GET", "/api/v1/alerts", crm, "").0, 200);
    assert_eq!(
        call("GET", "/api/v1/alerts", "not-a-token-of-ours-at-all", "").0,
        401
    );
    assert!(s.terminate().success());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.lines().any(|l| l.contains("audit: api call")
            && l.contains("who=crm")
            && l.contains("status=403")),
        "{text}"
    );
    assert!(
        !text.contains(crm) && !text.contains(dash),
        "a token was logged"
    );
}

/// `sidesync secret rotate` run as root on the packaged layout (the config root:sidesync 0640,
/// the data folder and key file the service user's): both files keep their owner, group and
/// mode, and the service user still reads them. Needs root (CI and the fresh machine run as
/// root); elsewhere it says so and passes.
#[test]
fn rotation_as_root_keeps_owner_group_and_mode_of_the_package_layout() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
    {
        eprintln!("skipped: rotating as root needs root");
        return;
    }
    // The service user: nobody's ids stand in for sidesync:sidesync.
    const SERVICE: u32 = 65534;
    let d = Dir::new();
    d.write("password_env = \"A\"", "password_env = \"B\"", free_port());
    let alice = seal(&d, "alice@example.com");
    let bob = seal(&d, "bob@example.com");
    d.write(
        &format!("password = \"{alice}\""),
        &format!("password = \"{bob}\""),
        free_port(),
    );
    let key_file = d.data().join("secret.key");
    let own = |p: &Path, uid: u32, gid: u32, mode: u32| {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    own(d.dir.path(), 0, 0, 0o755);
    own(&d.config(), 0, SERVICE, 0o640);
    own(&d.data(), SERVICE, SERVICE, 0o750);
    own(&key_file, SERVICE, SERVICE, 0o600);
    let (code, out, err) = sidesync(&["secret", "rotate"], &d.config(), "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 sealed values rotated"), "{out}");
    let seen = |p: &Path| {
        let m = std::fs::metadata(p).expect("meta");
        (m.uid(), m.gid(), m.mode() & 0o777)
    };
    assert_eq!(seen(&d.config()), (0, SERVICE, 0o640), "the config");
    assert_eq!(seen(&key_file), (SERVICE, SERVICE, 0o600), "the key file");
    // The service user reads both: the config checks as it would at the service's start.
    let as_service = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(binary())
        .args(["check-config", "--config"])
        .arg(d.config())
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        as_service.status.success(),
        "check-config as the service user: {}",
        String::from_utf8_lossy(&as_service.stderr)
    );
}

/// A webhook's signing secret sealed for it (`--webhook`): it opens for that webhook only, is
/// rotated with the rest, and one that does not open fails `check-config`, naming the webhook
/// (the appliance holds that webhook, keeping its events, instead of dropping it unseen).
#[test]
fn webhook_secrets_are_sealed_for_their_webhook_and_rotated() {
    let d = Dir::new();
    let hooks = |crm: &str, other: &str| {
        format!(
            "\n[[webhook]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\n{crm}\n\
             [[webhook]]\nname = \"other\"\nurl = \"http://127.0.0.1:9/other\"\n{other}\n"
        )
    };
    let write = |crm: &str, other: &str| {
        d.write("password_env = \"A\"", "password_env = \"B\"", 9);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.config())
            .expect("config");
        f.write_all(hooks(crm, other).as_bytes()).expect("append");
    };
    let env = [
        ("A", "alice-password"),
        ("B", "bob-password"),
        ("H1", "first-webhook-secret-0123"),
        ("H2", "second-webhook-secret-0123"),
    ];
    let check = |_: &Dir| {
        let (code, _, err) = sidesync(&["check-config"], &d.config(), "", &env);
        (code, err)
    };
    write("secret_env = \"H1\"", "secret_env = \"H2\"");
    let (code, out, err) = sidesync(
        &["secret", "encrypt", "--webhook", "crm"],
        &d.config(),
        "whsec-signing-secret-0123456789\n",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let sealed = out.trim().to_string();
    assert!(sealed.starts_with("enc:v1:") && !sealed.contains("whsec-signing"));
    let (code, _, err) = sidesync(
        &["secret", "encrypt", "--webhook", "nope"],
        &d.config(),
        "x\n",
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("has no webhook:nope"), "{err}");
    write(&format!("secret = \"{sealed}\""), "secret_env = \"H2\"");
    assert_eq!(check(&d), (0, String::new()));
    // The same value under another webhook does not open there.
    write("secret_env = \"H1\"", &format!("secret = \"{sealed}\""));
    let (code, err) = check(&d);
    assert_eq!(code, 1);
    assert!(
        err.contains("webhook other") && err.contains("cannot be read"),
        "{err}"
    );
    assert!(!err.contains("whsec-signing"), "{err}");
    // Rotation re-seals it with the rest.
    write(&format!("secret = \"{sealed}\""), "secret_env = \"H2\"");
    let (code, out, err) = sidesync(&["secret", "rotate"], &d.config(), "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 sealed values rotated"), "{out}");
    let rotated = std::fs::read_to_string(d.config()).expect("config");
    assert!(
        !rotated.contains(&sealed),
        "the webhook's value was re-sealed"
    );
    assert_eq!(check(&d), (0, String::new()));
    // Without the key file it cannot open: check-config says which webhook.
    std::fs::remove_file(d.data().join("secret.key")).expect("remove the key file");
    let (code, err) = check(&d);
    assert_eq!(code, 1);
    assert!(err.contains("webhook crm"), "{err}");
}
