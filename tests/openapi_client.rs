//! A Python client generated from `docs/openapi.json` with openapi-python-client (PyPI, in a
//! venv) exercises every operation the document lists against the running binary with a real
//! dovecot (`tests/openapi_client/exercise.py`): statuses and parsed models are checked there,
//! and here that the operations it called are exactly the document's — an operation added to
//! the document and not to the script fails this test. openapi-spec-validator checks the
//! document first, and the webhook bodies delivered are parsed with the generated event models.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::webhook_receiver::{Mode, Receiver, SECRET};
use support::{mail, wait_for};

/// The PyPI versions the client is generated and the document validated with, the generated
/// client's own requirements (it is installed without resolving them) and its build backend.
const PINS: [&str; 5] = [
    "openapi-python-client==0.29.1",
    "openapi-spec-validator==0.9.0",
    "httpx==0.28.1",
    "attrs==26.1.0",
    "setuptools==80.9.0",
];
const READ_TOKEN: &str = "read-token-0123456789abcdef";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command; its output, or a panic with what it said.
fn run(what: &str, command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{said}");
    said
}

/// The venv with the pinned tools, made once per target directory (again when the pins change).
fn venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-client-venv");
    let marker = venv.join("pins.txt");
    let pins = PINS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(pins.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            "python3 -m venv (package python3-venv)",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        );
        run(
            "pip install (PyPI reachable?)",
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(PINS),
        );
        std::fs::write(&marker, pins).expect("pins.txt");
    }
    venv
}

/// Generates the client from the document into `dir` and installs it into the venv.
fn generate_client(venv: &Path, dir: &Path) {
    let doc = manifest().join("docs/openapi.json");
    run(
        "openapi-spec-validator",
        Command::new(venv.join("bin/openapi-spec-validator")).arg(&doc),
    );
    let out = dir.join("client");
    let said = run(
        "openapi-python-client generate",
        Command::new(venv.join("bin/openapi-python-client"))
            .arg("generate")
            .arg("--path")
            .arg(&doc)
            .arg("--output-path")
            .arg(&out)
            .args(["--meta", "setup", "--config"])
            .arg(manifest().join("tests/openapi_client/config.yaml")),
    );
    // A part of the document the generator could not read would be missing from the client.
    assert!(
        !said.contains("Warning"),
        "openapi-python-client could not read all of the document:\n{said}"
    );
    run(
        "pip install the generated client",
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "--force-reinstall",
            ])
            .arg(&out),
    );
}

/// The operationIds of the document's paths.
fn documented_operations() -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(manifest().join("docs/openapi.json")).expect("openapi.json"),
    )
    .expect("openapi.json is JSON");
    doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|ops| ops.as_object().into_iter().flatten())
        .filter_map(|(_, op)| op["operationId"].as_str().map(str::to_string))
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_generated_python_client_exercises_every_operation() {
    let venv = venv();
    let work = tempfile::tempdir().expect("tempdir");
    generate_client(&venv, work.path());

    let d = Dovecot::start();
    let setup = Setup::new();
    let (cert, key) = (d.dir.join("server.pem"), d.dir.join("server.key"));
    let refusing = Receiver::start(&cert, &key);
    refusing.set(Mode::Fail);
    let taking = Receiver::start(&cert, &key);
    let (user, held, broken) = ("api@example.com", "held@example.com", "broken@example.com");
    for n in 0..3 {
        d.deliver(user, &mail::sample(user, n, 1_200), "", SystemTime::now());
    }
    d.deliver(
        user,
        b"Message-ID: <first@example.net>\r\nFrom: a@example.net\r\nTo: api@example.com\r\nSubject: s\r\n\r\nx\r\n",
        "",
        SystemTime::now(),
    );
    d.deliver(
        user,
        b"Message-ID: <second@example.net>\r\nIn-Reply-To: <first@example.net>\r\nFrom: b@example.net\r\nTo: api@example.com\r\nSubject: Re: s\r\n\r\ny\r\n",
        "",
        SystemTime::now(),
    );
    use std::os::unix::fs::PermissionsExt;
    let secret = d.dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let read_token = setup.dir.path().join("read.token");
    std::fs::write(&read_token, format!("{READ_TOKEN}\n")).expect("read token");
    std::fs::set_permissions(&read_token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = setup.write(
        &format!(
            "[[appliance.api_tokens]]\nname = \"dash\"\nscope = \"read\"\nfile = \"{}\"\n",
            read_token.display()
        ),
        &format!(
            "[[profile]]\nname = \"imap\"\ntrack = \"all\"\nincoming_server_location = \"127.0.0.1\"\n\
             incoming_port_number = {imaps}\nca_file = \"{ca}\"\nmin_polling_interval = \"1s\"\n\
             outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {sub}\n\
             outgoing_tls = \"starttls\"\n\
             [[mailbox]]\nemail_address = \"{user}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\
             [[mailbox]]\nemail_address = \"{held}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\napproval = \"pending_approval\"\n\
             [[mailbox]]\nemail_address = \"{broken}\"\nprofile = \"imap\"\npassword = \"wrong\"\napproval = \"approved\"\n\
             [[webhook]]\nname = \"crm\"\nurl = \"{refusing}\"\nsecret_file = \"{secret}\"\nca_file = \"{ca}\"\n\
             max_attempts = 1\nevents = [\"activity.created\"]\n\
             [[webhook]]\nname = \"feed\"\nurl = \"{taking}\"\nsecret_file = \"{secret}\"\nca_file = \"{ca}\"\n",
            imaps = d.imaps_port,
            sub = d.submission_port,
            ca = d.ca_file.display(),
            refusing = refusing.url(),
            taking = taking.url(),
            secret = secret.display(),
        ),
    );
    let s = setup.start(&cfg);
    let port = setup.port;
    wait_for("the emails stored", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 5).then_some(())
    });
    wait_for(
        "an alert for the broken mailbox",
        Duration::from_secs(60),
        || {
            let (_, v) = support::sidesync::http(port, "GET", "/api/v1/alerts", Some(TOKEN), "");
            v.contains(broken).then_some(())
        },
    );

    // Every operation, through the client.
    let context = work.path().join("context.json");
    let report = work.path().join("report.json");
    let values = json!({
        "base_url": format!("http://127.0.0.1:{port}"),
        "token": TOKEN,
        "read_token": READ_TOKEN,
        "user": user,
        "held": held,
        "webhook": "crm",
    });
    std::fs::write(&context, values.to_string()).expect("context");
    let script = manifest().join("tests/openapi_client/exercise.py");
    run(
        "exercise.py",
        Command::new(venv.join("bin/python"))
            .arg(&script)
            .arg(&context)
            .arg(&report),
    );
    let said: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    let called = strings(&said["operations"]);
    let documented = documented_operations();
    let missed: Vec<_> = documented.difference(&called).collect();
    assert!(
        missed.is_empty(),
        "operations in docs/openapi.json that exercise.py does not call: {missed:?}"
    );
    let unknown: Vec<_> = called.difference(&documented).collect();
    assert!(unknown.is_empty(), "called but not documented: {unknown:?}");

    // Every event the feed has, as the webhook delivered it, parsed with its event model.
    let (_, feed) = support::sidesync::http(
        port,
        "GET",
        "/api/v1/events?after=0&limit=1000",
        Some(TOKEN),
        "",
    );
    let feed: Value = serde_json::from_str(&feed).expect("events JSON");
    let seqs: BTreeSet<u64> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    taking.wait_until("every event delivered", Duration::from_secs(60), |got| {
        let have: BTreeSet<u64> = got.iter().map(|r| r.seq).collect();
        seqs.is_subset(&have)
    });
    let received = taking.received();
    assert_eq!(
        refusing
            .bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst)
            + taking
                .bad_signatures
                .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let bodies: Vec<&Value> = received.iter().map(|r| &r.body).collect();
    let kinds: BTreeSet<String> = received.iter().map(|r| r.kind.clone()).collect();
    let bodies_file = work.path().join("webhooks.json");
    std::fs::write(&bodies_file, json!(bodies).to_string()).expect("bodies");
    let report = work.path().join("webhooks-report.json");
    run(
        "exercise.py webhooks",
        Command::new(venv.join("bin/python"))
            .arg(&script)
            .arg("webhooks")
            .arg(&bodies_file)
            .arg(&report),
    );
    let said: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    assert_eq!(strings(&said["webhook_events"]), kinds);
    assert!(kinds.len() >= 5, "{kinds:?}");
    s.terminate();
}
