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

/// A token of scope `read` beside the setup's admin one.
const READ_TOKEN: &str = "read-token-0123456789abcdef";

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
        self.check_as(Some(TOKEN), port, method, template, path, extra, body)
    }

    /// As `check`, with `token` (None: none) in `Authorization`.
    #[allow(clippy::too_many_arguments)]
    fn check_as(
        &mut self,
        token: Option<&str>,
        port: u16,
        method: &str,
        template: &str,
        path: &str,
        extra: &str,
        body: &str,
    ) -> (u16, Value) {
        let a = call(port, method, path, token, extra, body);
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
        let response = response_pointer(&self.doc, template, &m, &code);
        let listed =
            &self.doc.pointer(&response).unwrap_or(&Value::Null)["content"][&media]["schema"];
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
        let pointer = format!("#{}/content/{}/schema", fragment(&response), escape(&media));
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

/// The JSON pointer of the response `code` of an operation: its own, or the one of
/// `components/responses` it refers to.
fn response_pointer(doc: &Value, template: &str, method: &str, code: &str) -> String {
    let own = format!(
        "/paths/{}/{method}/responses/{code}",
        template.replace('~', "~0").replace('/', "~1")
    );
    match doc.pointer(&own).and_then(|r| r["$ref"].as_str()) {
        Some(r) => r.trim_start_matches('#').to_string(),
        None => own,
    }
}

/// A JSON pointer as a URI fragment (braces are not allowed there as they are).
fn fragment(pointer: &str) -> String {
    pointer.replace('{', "%7B").replace('}', "%7D")
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
    // The document itself: served as the file holds it, to a client with no token too.
    c.check(
        port,
        "GET",
        "/api/v1/openapi.json",
        "/api/v1/openapi.json",
        "",
        "",
    );
    let served = call(port, "GET", "/api/v1/openapi.json", None, "", "");
    assert_eq!(served.code, 200, "{}", served.head);
    assert_eq!(served.content_type, "application/json");
    // One request per connection, and the answer says so (a client would reuse it otherwise).
    assert!(
        served.head.contains("\r\nConnection: close"),
        "{}",
        served.head
    );
    let file =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .expect("openapi.json");
    assert!(
        served.body == file,
        "the served document is not docs/openapi.json"
    );
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

    // Every operation that needs a token answers its documented 401 without one, and every
    // one beyond `read` its documented 403 to a read token (nothing changes either way).
    for (template, m) in &documented {
        let op = c.doc["paths"][template][m].clone();
        let path = template
            .replace("{address}", user)
            .replace("{name}", "crm")
            .replace(['{', '}'], "");
        let method = m.to_ascii_uppercase();
        let body = if m == "put" || m == "post" { "{}" } else { "" };
        let security = op["security"].as_array();
        let open = security.is_some_and(|s| s.is_empty() || s.iter().any(|r| r == &json!({})));
        if !open {
            let (code, v) = c.check_as(None, port, &method, template, &path, "", body);
            assert_eq!(code, 401, "{method} {template} without a token: {v}");
        }
        if op["x-scope"] != "read" && !open {
            let (code, v) = c.check_as(Some(READ_TOKEN), port, &method, template, &path, "", body);
            assert_eq!(code, 403, "{method} {template} with a read token: {v}");
            assert_eq!(v["type"], "urn:sidesync:problem:forbidden");
        }
    }

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

/// The document's own rules, for every operation (the message API's too, as they come): an
/// operationId (camelCase, unique among paths and webhooks), tags the document lists, and the
/// 401 and 403 every call needing a token can answer; a webhook and a schema for each event
/// type the feed has; every schema compiles.
#[test]
fn the_document_names_tags_and_guards_every_operation_and_event() {
    let doc = Contract::load().doc;
    let listed_tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    let operations = ["paths", "webhooks"].into_iter().flat_map(|part| {
        doc[part]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(move |(p, ops)| {
                ops.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(m, _)| {
                        ["get", "put", "post", "delete", "patch", "head", "options"]
                            .contains(&m.as_str())
                    })
                    .map(move |(m, op)| (part, p.clone(), m.clone(), op))
            })
    });
    for (part, p, m, op) in operations {
        let at = format!("{part} {} {p}", m.to_ascii_uppercase());
        match op["operationId"].as_str() {
            None => problems.push(format!("{at}: no operationId")),
            Some(id) => {
                let camel = id.starts_with(|c: char| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric());
                if !camel {
                    problems.push(format!("{at}: operationId {id} is not camelCase"));
                }
                if !ids.insert(id.to_string()) {
                    problems.push(format!("{at}: operationId {id} is used twice"));
                }
            }
        }
        let tags: Vec<&str> = op["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if tags.is_empty() {
            problems.push(format!("{at}: no tags"));
        }
        for t in tags.iter().filter(|t| !listed_tags.contains(**t)) {
            problems.push(format!("{at}: tag {t} is not in the document's tags"));
        }
        // A public operation (`security: []`) cannot answer 401 or 403; every other can.
        let public = op["security"].as_array().is_some_and(Vec::is_empty);
        if part == "paths" && !public {
            for code in ["401", "403"] {
                let pointer = response_pointer(&doc, &p, &m, code);
                let schema = &doc.pointer(&pointer).unwrap_or(&Value::Null)["content"]["application/problem+json"]
                    ["schema"];
                if schema["$ref"] != "#/components/schemas/Problem" {
                    problems.push(format!("{at}: no {code} problem+json answer"));
                }
            }
        }
    }
    // Each event type: a webhook POST, signed as Standard Webhooks, with a schema whose `type`
    // is that type alone; and the feed's Event is one of those schemas.
    let schemas = &doc["components"]["schemas"];
    let event_refs: BTreeSet<&str> = schemas["Event"]["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["$ref"].as_str())
        .collect();
    for t in sidesync::store::feed::EVENT_TYPES {
        let post = &doc["webhooks"][t]["post"];
        if !post.is_object() {
            problems.push(format!("event type {t}: no webhooks entry"));
            continue;
        }
        for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let given = post["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "header" && p["name"] == h && p["required"] == true);
            if !given {
                problems.push(format!("webhook {t}: no required {h} header"));
            }
        }
        let reference = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or("");
        let name = reference.trim_start_matches("#/components/schemas/");
        let schema = &schemas[name];
        if !reference.starts_with("#/components/schemas/") || !schema.is_object() {
            problems.push(format!(
                "webhook {t}: its body is not a schema in components"
            ));
            continue;
        }
        if schema["properties"]["type"]["enum"] != json!([t]) {
            problems.push(format!("schema {name}: its type is not {t} alone"));
        }
        if !schema["properties"]["data"]["$ref"]
            .as_str()
            .is_some_and(|d| d.starts_with("#/components/schemas/"))
        {
            problems.push(format!("schema {name}: no data schema of its own"));
        }
        if !event_refs.contains(reference)
            || schemas["Event"]["discriminator"]["mapping"][t] != reference
        {
            problems.push(format!("Event: {t} is not one of its schemas"));
        }
    }
    for t in doc["webhooks"]
        .as_object()
        .into_iter()
        .flat_map(|w| w.keys())
    {
        if !sidesync::store::feed::EVENT_TYPES.contains(&t.as_str()) {
            problems.push(format!("webhooks: {t} is not an event type of the feed"));
        }
    }
    // Every schema compiles (a broken $ref or keyword would otherwise show only when an answer
    // reaches it).
    for name in schemas.as_object().expect("schemas").keys() {
        let mut whole = doc.clone();
        whole["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        whole["$ref"] = json!(format!("#/components/schemas/{name}"));
        if let Err(e) = jsonschema::validator_for(&whole) {
            problems.push(format!("schema {name} does not compile: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
