//! The API contract: every endpoint of `docs/openapi.json` is called on the running binary, and
//! each answer's status is one the document lists and its body matches the listed schema
//! (JSON Schema 2020-12 through the `jsonschema` crate); errors are problem+json, a 401 says
//! how to authenticate, and no documented endpoint goes uncalled.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::webhook_receiver::{Mode, Receiver, SECRET};
use support::{mail, wait_for};

struct Answer {
    code: u16,
    content_type: String,
    head: String,
    body: Vec<u8>,
}

fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &str,
    body: &str,
) -> Answer {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer");
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Answer {
        code,
        content_type,
        head,
        body: buf[end + 4..].to_vec(),
    }
}

/// The document, and every (template, method) it lists, to tick off.
struct Contract {
    doc: Value,
    called: BTreeSet<(String, String)>,
}

impl Contract {
    fn load() -> Contract {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("openapi.json"))
                .expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        Contract {
            doc,
            called: BTreeSet::new(),
        }
    }

    /// Calls `path` (an instance of `template`) and checks the answer against the document.
    fn check(
        &mut self,
        port: u16,
        method: &str,
        template: &str,
        path: &str,
        extra: &str,
        body: &str,
    ) -> (u16, Value) {
        let a = call(port, method, path, Some(TOKEN), extra, body);
        let m = method.to_ascii_lowercase();
        let op = &self.doc["paths"][template][&m];
        assert!(op.is_object(), "{method} {template} is not in the document");
        self.called.insert((template.to_string(), m.clone()));
        let code = a.code.to_string();
        let media = a
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let listed = &op["responses"][&code]["content"][&media]["schema"];
        assert!(
            listed.is_object(),
            "{method} {path}: {code} {media} is not documented: {}",
            String::from_utf8_lossy(&a.body)
        );
        if media == "message/rfc822" {
            return (a.code, Value::Null);
        }
        let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&a.body)
            )
        });
        let pointer = format!(
            "#/paths/{}/{m}/responses/{code}/content/{}/schema",
            escape(template),
            escape(&media)
        );
        let mut schema = self.doc.clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        schema["$ref"] = json!(pointer);
        let validator = jsonschema::validator_for(&schema).expect("the document's schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} ({code}):\n{}\n{v:#}",
            errors.join("\n")
        );
        (a.code, v)
    }
}

/// A JSON pointer segment.
fn escape(s: &str) -> String {
    // As a URI fragment: braces are not allowed there as they are.
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

#[test]
fn every_endpoint_answers_as_the_openapi_document_says() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let receiver = Receiver::start(&d.dir.join("server.pem"), &d.dir.join("server.key"));
    receiver.set(Mode::Fail);
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
    // A list email: under "all" an activity like any other, its kind in `automatic`.
    d.deliver(
        user,
        b"Message-ID: <list@lists.example.org>\r\nFrom: dev@lists.example.org\r\nTo: api@example.com\r\n\
          List-Id: <dev.lists.example.org>\r\nSubject: [dev] release\r\n\r\nz\r\n",
        "",
        SystemTime::now(),
    );
    let secret = d.dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).expect("secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = setup.write(
        "",
        &format!(
            "[[profile]]\nname = \"imap\"\ntrack = \"all\"\nincoming_server_location = \"127.0.0.1\"\n\
             incoming_port_number = {imaps}\nca_file = \"{ca}\"\nmin_polling_interval = \"1s\"\n\
             outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {sub}\n\
             outgoing_tls = \"starttls\"\n\
             [[mailbox]]\nemail_address = \"{user}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\
             [[mailbox]]\nemail_address = \"{held}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\napproval = \"pending_approval\"\n\
             [[mailbox]]\nemail_address = \"{broken}\"\nprofile = \"imap\"\npassword = \"wrong\"\napproval = \"approved\"\n\
             [[webhook]]\nname = \"crm\"\nurl = \"{url}\"\nsecret_file = \"{secret}\"\nca_file = \"{ca}\"\n\
             max_attempts = 1\nevents = [\"activity.created\"]\n",
            imaps = d.imaps_port,
            sub = d.submission_port,
            ca = d.ca_file.display(),
            url = receiver.url(),
            secret = secret.display(),
        ),
    );
    let s = setup.start(&cfg);
    let port = setup.port;
    wait_for("the emails stored", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 6).then_some(())
    });
    wait_for(
        "an alert for the broken mailbox",
        Duration::from_secs(60),
        || {
            let (_, v) = support::sidesync::http(port, "GET", "/api/v1/alerts", Some(TOKEN), "");
            v.contains(broken).then_some(())
        },
    );
    let mut c = Contract::load();

    c.check(port, "GET", "/status", "/status", "", "");
    // Activities: a page, the next one, one, its raw bytes, regarding; a bad cursor.
    let (_, page) = c.check(
        port,
        "GET",
        "/api/v1/activities",
        "/api/v1/activities?limit=2",
        "",
        "",
    );
    let next = page["next"]
        .as_str()
        .expect("a next link on a full page")
        .to_string();
    c.check(port, "GET", "/api/v1/activities", &next, "", "");
    c.check(
        port,
        "GET",
        "/api/v1/activities",
        "/api/v1/activities?cursor=bogus",
        "",
        "",
    );
    let (_, all) = c.check(
        port,
        "GET",
        "/api/v1/activities",
        "/api/v1/activities?limit=100",
        "",
        "",
    );
    let (_, lists) = c.check(
        port,
        "GET",
        "/api/v1/activities",
        "/api/v1/activities?automatic=list",
        "",
        "",
    );
    let lists = lists["activities"].as_array().cloned().unwrap_or_default();
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(lists[0]["automatic"], "list");
    let (_, people) = c.check(
        port,
        "GET",
        "/api/v1/activities",
        "/api/v1/activities?automatic=none&limit=100",
        "",
        "",
    );
    assert_eq!(people["activities"].as_array().map(Vec::len), Some(5));
    let (code, _) = c.check(
        port,
        "GET",
        "/api/v1/activities",
        "/api/v1/activities?automatic=noise",
        "",
        "",
    );
    assert_eq!(code, 400);
    let reply = all["activities"]
        .as_array()
        .expect("activities")
        .iter()
        .find(|a| a["message_id"] == "second@example.net")
        .expect("the reply")["id"]
        .as_u64()
        .expect("id");
    let (_, one) = c.check(
        port,
        "GET",
        "/api/v1/activities/{id}",
        &format!("/api/v1/activities/{reply}"),
        "",
        "",
    );
    assert_eq!(
        one["correlation"]["related_activities"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    c.check(
        port,
        "GET",
        "/api/v1/activities/{id}",
        "/api/v1/activities/999999",
        "",
        "",
    );
    c.check(
        port,
        "GET",
        "/api/v1/activities/{id}/raw",
        &format!("/api/v1/activities/{reply}/raw"),
        "",
        "",
    );
    c.check(
        port,
        "PUT",
        "/api/v1/activities/{id}/regarding",
        &format!("/api/v1/activities/{reply}/regarding"),
        "",
        r#"{"regarding":"account:7"}"#,
    );
    c.check(
        port,
        "PUT",
        "/api/v1/contacts",
        "/api/v1/contacts",
        "",
        r#"{"upsert":{"a@example.net":"contact:1"}}"#,
    );
    c.check(
        port,
        "PUT",
        "/api/v1/contacts",
        "/api/v1/contacts",
        "",
        r#"{"bogus":1}"#,
    );
    // Mailboxes.
    c.check(
        port,
        "GET",
        "/api/v1/mailboxes",
        "/api/v1/mailboxes?limit=1",
        "",
        "",
    );
    c.check(
        port,
        "GET",
        "/api/v1/mailboxes",
        "/api/v1/mailboxes?state=bogus",
        "",
        "",
    );
    c.check(
        port,
        "POST",
        "/api/v1/mailboxes/{address}/approve",
        &format!("/api/v1/mailboxes/{user}/approve"),
        "",
        "",
    );
    c.check(
        port,
        "POST",
        "/api/v1/mailboxes/{address}/approve",
        "/api/v1/mailboxes/nobody@x/approve",
        "",
        "",
    );
    c.check(
        port,
        "POST",
        "/api/v1/mailboxes/{address}/test",
        &format!("/api/v1/mailboxes/{user}/test"),
        "",
        "",
    );
    wait_for("the test's record", Duration::from_secs(60), || {
        let (code, _) = c.check(
            port,
            "GET",
            "/api/v1/mailboxes/{address}/test",
            &format!("/api/v1/mailboxes/{user}/test"),
            "",
            "",
        );
        (code == 200).then_some(())
    });
    c.check(
        port,
        "GET",
        "/api/v1/mailboxes/{address}/failures",
        &format!("/api/v1/mailboxes/{user}/failures"),
        "",
        "",
    );
    c.check(
        port,
        "POST",
        "/api/v1/mailboxes/{address}/failures/{key}/retry",
        &format!("/api/v1/mailboxes/{user}/failures/nothing/retry"),
        "",
        "",
    );
    // Alerts, with ids.
    let (_, alerts) = c.check(
        port,
        "GET",
        "/api/v1/alerts",
        "/api/v1/alerts?limit=1",
        "",
        "",
    );
    assert!(alerts["alerts"][0]["id"].as_u64().is_some());
    c.check(
        port,
        "GET",
        "/api/v1/alerts",
        "/api/v1/alerts?limit=0",
        "",
        "",
    );
    // The outbox: queue (twice with one key, then the key for another email), list, one,
    // cancel, resend.
    let email =
        json!({"from": held, "to": ["x@example.net"], "subject": "held", "text": "t"}).to_string();
    let key = "Idempotency-Key: contract-1\r\n";
    let (_, first) = c.check(
        port,
        "POST",
        "/api/v1/outbox",
        "/api/v1/outbox",
        key,
        &email,
    );
    let (_, again) = c.check(
        port,
        "POST",
        "/api/v1/outbox",
        "/api/v1/outbox",
        key,
        &email,
    );
    assert_eq!(first, again);
    let other =
        json!({"from": held, "to": ["y@example.net"], "subject": "other", "text": "t"}).to_string();
    c.check(
        port,
        "POST",
        "/api/v1/outbox",
        "/api/v1/outbox",
        key,
        &other,
    );
    c.check(port, "POST", "/api/v1/outbox", "/api/v1/outbox", "", "{}");
    let id = first["id"].as_u64().expect("id");
    c.check(
        port,
        "GET",
        "/api/v1/outbox",
        "/api/v1/outbox?limit=5",
        "",
        "",
    );
    c.check(
        port,
        "GET",
        "/api/v1/outbox",
        "/api/v1/outbox?status=queued",
        "",
        "",
    );
    c.check(
        port,
        "GET",
        "/api/v1/outbox/{id}",
        &format!("/api/v1/outbox/{id}"),
        "",
        "",
    );
    c.check(
        port,
        "GET",
        "/api/v1/outbox/{id}",
        "/api/v1/outbox/424242",
        "",
        "",
    );
    c.check(
        port,
        "DELETE",
        "/api/v1/outbox/{id}",
        &format!("/api/v1/outbox/{id}"),
        "",
        "",
    );
    let (code, _) = c.check(
        port,
        "DELETE",
        "/api/v1/outbox/{id}",
        &format!("/api/v1/outbox/{id}"),
        "",
        "",
    );
    assert_eq!(code, 409);
    let (code, _) = c.check(
        port,
        "POST",
        "/api/v1/outbox/{id}/resend",
        &format!("/api/v1/outbox/{id}/resend"),
        "",
        "",
    );
    assert_eq!(code, 409);
    // The feed, the webhooks, dead letters and redelivery.
    let (_, events) = c.check(
        port,
        "GET",
        "/api/v1/events",
        "/api/v1/events?after=0&limit=50&types=activity.*",
        "",
        "",
    );
    assert!(!events["events"].as_array().expect("events").is_empty());
    c.check(
        port,
        "GET",
        "/api/v1/events",
        "/api/v1/events?after=x",
        "",
        "",
    );
    c.check(
        port,
        "GET",
        "/api/v1/events",
        "/api/v1/events?after=999999999&wait=1s",
        "",
        "",
    );
    c.check(port, "GET", "/api/v1/webhooks", "/api/v1/webhooks", "", "");
    let dead = wait_for("dead letters", Duration::from_secs(60), || {
        let (_, v) = c.check(
            port,
            "GET",
            "/api/v1/webhooks/{name}/dead",
            "/api/v1/webhooks/crm/dead?limit=2",
            "",
            "",
        );
        (v["dead_letters"].as_array()?.len() == 2).then_some(v)
    });
    let next = dead["next"].as_str().expect("next").to_string();
    c.check(port, "GET", "/api/v1/webhooks/{name}/dead", &next, "", "");
    c.check(
        port,
        "GET",
        "/api/v1/webhooks/{name}/dead",
        "/api/v1/webhooks/none/dead",
        "",
        "",
    );
    let seq = dead["dead_letters"][0]["event"]["seq"]
        .as_u64()
        .expect("seq");
    c.check(
        port,
        "POST",
        "/api/v1/webhooks/{name}/dead/{seq}/redeliver",
        &format!("/api/v1/webhooks/crm/dead/{seq}/redeliver"),
        "",
        "",
    );
    c.check(
        port,
        "POST",
        "/api/v1/webhooks/{name}/dead/{seq}/redeliver",
        "/api/v1/webhooks/crm/dead/x/redeliver",
        "",
        "",
    );

    // Every documented endpoint was called.
    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&c.called).collect();
    assert!(missed.is_empty(), "documented but not called: {missed:?}");

    // 401: problem+json with a challenge; a wrong token says invalid_token.
    let a = call(port, "GET", "/api/v1/activities", None, "", "");
    assert_eq!(a.code, 401);
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{}",
        a.head
    );
    assert!(
        a.head
            .contains("WWW-Authenticate: Bearer realm=\"sidesync\""),
        "{}",
        a.head
    );
    let a = call(
        port,
        "GET",
        "/api/v1/activities",
        Some("wrong-token-0000000000"),
        "",
        "",
    );
    assert_eq!(a.code, 401);
    assert!(a.head.contains("error=\"invalid_token\""), "{}", a.head);
    let v: Value = serde_json::from_slice(&a.body).expect("json");
    assert_eq!(v["type"], "urn:sidesync:problem:invalid-token");
    // An undocumented path is a documented problem too.
    let a = call(port, "GET", "/api/v1/nowhere", Some(TOKEN), "", "");
    assert_eq!(a.code, 404);
    assert!(a.content_type.starts_with("application/problem+json"));
    s.terminate();
}
