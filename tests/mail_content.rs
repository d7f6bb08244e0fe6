//! Mail content (the mailbox pages, transcripts, raw MIME) needs the token from loopback too;
//! the overview and /healthz stay as the README says; every answer tells the browser to keep
//! to it (CSP, nosniff). Against the real binary on a free port; no mail server needed.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use support::appliance::{Setup, TOKEN};
use support::web::{Reply, http};

const ADDRESS: &str = "alice@example.com";

/// A mailbox on a server that is not there: its page exists all the same.
fn mailbox() -> String {
    format!(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\n\n[[mailbox]]\nemail_address = \"{ADDRESS}\"\npassword = \"pw\"\n",
        support::free_port()
    )
}

/// A request with a raw `Authorization` value.
fn with_authorization(port: u16, path: &str, authorization: &str) -> Reply {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\r\n"
    )
    .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Reply {
        code,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

fn challenges(r: &Reply) -> Vec<String> {
    r.head
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(str::to_string)
        .collect()
}

/// Fails on the old code: loopback was trusted with the mailbox pages.
#[test]
fn mailbox_pages_need_the_token_from_loopback_too() {
    // status_public does not open mail content either.
    for extra in ["", "status_public = true"] {
        let setup = Setup::new();
        let config = setup.write(extra, &mailbox());
        let running = setup.start(&config);
        let port = setup.port;
        let page = format!("/mailbox/{ADDRESS}");
        let refused = http(port, "GET", &page, None, b"");
        assert_eq!(refused.code, 401, "{extra}: {}", refused.text());
        assert!(!refused.text().contains(ADDRESS), "{}", refused.text());
        // A browser is asked for it (Basic); an API client is told the bearer scheme.
        let asked = challenges(&refused);
        assert!(
            asked
                .iter()
                .any(|c| c.starts_with("Basic realm=\"sidesync\"")),
            "{asked:?}"
        );
        assert!(asked.iter().any(|c| c.starts_with("Bearer")), "{asked:?}");
        let wrong = http(port, "GET", &page, Some("not-the-token-at-all"), b"");
        assert_eq!(wrong.code, 401);
        // With the token, as a bearer or as the password of Basic, the page is there.
        let shown = http(port, "GET", &page, Some(TOKEN), b"");
        assert_eq!(shown.code, 200, "{}", shown.text());
        assert!(shown.text().contains("id=\"state\""), "{}", shown.text());
        let basic = format!("Basic {}", B64.encode(format!("anyone:{TOKEN}")));
        let shown = with_authorization(port, &page, &basic);
        assert_eq!(shown.code, 200, "{}", shown.text());
        // The overview and /healthz are as before: free from loopback.
        for open in ["/", "/status", "/metrics", "/healthz"] {
            let r = http(port, "GET", open, None, b"");
            assert_eq!(r.code, 200, "{open}: {}", r.text());
        }
        // The API is mail content too: the token from loopback, as always.
        let r = http(port, "GET", "/api/v1/activities", None, b"");
        assert_eq!(r.code, 401);
        assert!(running.terminate().success());
    }
}

/// Without an API token there is no way to the mailbox pages but the control socket: said.
#[test]
fn without_a_token_the_mailbox_pages_say_how_to_get_one() {
    let setup = Setup::new();
    let path = setup.dir.path().join("sidesync.toml");
    std::fs::write(
        &path,
        format!(
            "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\n\
             status_listen = \"127.0.0.1:{}\"\n{}",
            setup.dir.path().join("data").display(),
            setup.port,
            mailbox()
        ),
    )
    .expect("config");
    let running = setup.start(&path);
    let r = http(setup.port, "GET", &format!("/mailbox/{ADDRESS}"), None, b"");
    assert_eq!(r.code, 403, "{}", r.text());
    assert!(r.text().contains("api_token_file"), "{}", r.text());
    assert!(running.terminate().success());
}

/// Fails on the old code: no answer carried a Content-Security-Policy or nosniff.
#[test]
fn every_answer_carries_the_browser_policy() {
    use sha2::{Digest, Sha256};
    let setup = Setup::new();
    let config = setup.write("", &mailbox());
    let running = setup.start(&config);
    let port = setup.port;
    let answers = [
        http(port, "GET", "/", None, b""),
        http(port, "GET", "/status", None, b""),
        http(port, "GET", "/metrics", None, b""),
        http(port, "GET", "/healthz", None, b""),
        http(port, "GET", "/nothing-here", None, b""),
        http(port, "GET", &format!("/mailbox/{ADDRESS}"), None, b""),
        http(
            port,
            "GET",
            &format!("/mailbox/{ADDRESS}"),
            Some(TOKEN),
            b"",
        ),
        http(port, "GET", "/api/v1/activities", Some(TOKEN), b""),
        http(port, "GET", "/api/v1/activities", None, b""),
        // The front's own refusals too.
        with_authorization(port, "/status", "x\r\nHost: evil.example"),
    ];
    for a in &answers {
        let csp = a
            .header("Content-Security-Policy")
            .unwrap_or_else(|| panic!("no CSP: {}", a.head));
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(
            a.header("X-Content-Type-Options").as_deref(),
            Some("nosniff"),
            "{}",
            a.head
        );
    }
    assert_eq!(answers[9].code, 421, "{}", answers[9].head);
    // The pages' one stylesheet is the one the policy allows, by its hash.
    for page in [&answers[0], &answers[6]] {
        let html = page.text();
        let css = html
            .split("<style>")
            .nth(1)
            .and_then(|s| s.split("</style>").next())
            .expect("a stylesheet");
        let hash = B64.encode(Sha256::digest(css.as_bytes()));
        let csp = page.header("Content-Security-Policy").expect("csp");
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
        assert!(
            !html.contains(" style="),
            "an inline style the policy blocks"
        );
        assert!(!html.contains("<script"), "a script the policy blocks");
    }
    assert!(running.terminate().success());
}
