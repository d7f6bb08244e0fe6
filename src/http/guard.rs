//! Who may see what on the status listener, and what every answer carries so that a browser
//! keeps it to itself. Pure rules; `mod.rs` applies them.
//!
//! Three kinds of path:
//! - open: `/healthz` (a monitor's; says nothing about the mail) and `/api/v1/openapi.json`
//!   (the API's document: the same static text in every sidesync of a version);
//! - the overview: `/`, `/status`, `/metrics` (states, counts and errors of the mailboxes, no
//!   mail): free from loopback, the token from anywhere else unless `status_public`;
//! - mail content: `/mailbox/ADDRESS` (recent subjects and senders, Test & Enable transcripts)
//!   and the API (`/api/v1/…`: raw MIME, activities), and the mailbox page's buttons (POST
//!   `/mailbox/ADDRESS/approve|test`, an admin token and a CSRF token: `page_actions.rs`):
//!   the token always, from loopback too —
//!   another local user or a page in the operator's browser (DNS rebinding aside, any local
//!   process) is not the operator — and `status_public` never opens them.

use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    Overview,
    MailContent,
}

/// The kind of a path (the API's own rules are in `api.rs`; it is mail content here).
pub fn access(path: &str) -> Access {
    match path {
        "/" | "/status" | "/metrics" => Access::Overview,
        super::openapi::PATH => Access::Open,
        p if p.starts_with("/mailbox/") || p.starts_with("/api/") => Access::MailContent,
        _ => Access::Open,
    }
}

/// Whether a request for a page or status endpoint (not the API, which checks for itself)
/// must carry the token. `peer`: the client as the front says (None: unknown, so not loopback).
pub fn needs_token(path: &str, peer: Option<IpAddr>, status_public: bool) -> bool {
    match access(path) {
        Access::Open => false,
        Access::Overview => !status_public && !peer.is_some_and(|ip| ip.is_loopback()),
        Access::MailContent => true,
    }
}

/// Whether a 401 for `path` should make a browser ask for the token (HTTP Basic: any user name,
/// the token as password), not only name the bearer scheme an API client uses.
pub fn browser_page(path: &str) -> bool {
    path == "/" || path.starts_with("/mailbox/")
}

/// The token an `Authorization` value carries: `Bearer TOKEN`, or `Basic` with the token as
/// the password (what a browser sends after asking; the user name is not looked at).
pub fn presented_token(authorization: &str) -> Result<String, &'static str> {
    let value = authorization.trim();
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Ok(token.trim().to_string());
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = B64
            .decode(encoded.trim())
            .map_err(|_| "the Authorization: Basic value is not base64")?;
        let text = String::from_utf8(decoded)
            .map_err(|_| "the Authorization: Basic value is not UTF-8")?;
        let (_, password) = text
            .split_once(':')
            .ok_or("the Authorization: Basic value has no user:password")?;
        return Ok(password.to_string());
    }
    Err("the Authorization header must be \"Bearer <token>\" (or Basic with the token as password)")
}

/// `Content-Security-Policy` for every answer: nothing may load, run, frame or be framed; the
/// one thing a page needs is its own inline stylesheet, allowed by its hash (no inline style
/// attribute, no script, no image, no font anywhere: `page.rs` and `detail.rs` use the one
/// `<style>` block and inline SVG). The search form submits to the listener itself.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let hash = B64.encode(Sha256::digest(super::page::CSS.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// The headers every answer of the listener carries, beside its own.
pub fn security_headers() -> [(&'static str, &'static str); 3] {
    [
        ("Content-Security-Policy", content_security_policy()),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]
}

/// `Content-Disposition` of an email's raw MIME: saved, never shown by the browser (a message is
/// HTML and script as much as its sender likes). `id` is the activity's, digits only by then.
pub fn raw_mime_disposition(id: &str) -> String {
    let name: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let name = if name.is_empty() {
        "message".into()
    } else {
        name
    };
    format!("attachment; filename=\"{name}.eml\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_content_needs_the_token_from_loopback_too() {
        let lan: IpAddr = "192.0.2.7".parse().expect("ip");
        let lo: IpAddr = "::1".parse().expect("ip");
        let lo4: IpAddr = "127.0.0.1".parse().expect("ip");
        for path in [
            "/mailbox/a@x.example",
            "/mailbox/",
            "/api/v1/activities/3/raw",
        ] {
            for peer in [Some(lan), Some(lo), Some(lo4), None] {
                for public in [false, true] {
                    assert!(needs_token(path, peer, public), "{path} {peer:?} {public}");
                }
            }
        }
        for path in ["/", "/status", "/metrics"] {
            assert!(needs_token(path, Some(lan), false), "{path}");
            assert!(needs_token(path, None, false), "{path}: an unknown client");
            assert!(!needs_token(path, Some(lo), false), "{path}");
            assert!(!needs_token(path, Some(lo4), false), "{path}");
            assert!(!needs_token(path, Some(lan), true), "{path}: status_public");
        }
        assert!(!needs_token("/healthz", Some(lan), false));
        assert!(!needs_token("/healthz", None, false));
        assert!(!needs_token("/api/v1/openapi.json", Some(lan), false));
        assert!(!needs_token("/api/v1/openapi.json", None, false));
        assert!(browser_page("/") && browser_page("/mailbox/a@x.example"));
        assert!(!browser_page("/status") && !browser_page("/api/v1/activities"));
    }

    #[test]
    fn the_token_comes_as_bearer_or_as_a_basic_password() {
        assert_eq!(presented_token("Bearer abc "), Ok("abc".into()));
        let basic = format!("Basic {}", B64.encode("anyone:the:token"));
        assert_eq!(
            presented_token(&basic),
            Ok("the:token".into()),
            "split at the first colon"
        );
        let empty_user = format!("Basic {}", B64.encode(":tok"));
        assert_eq!(presented_token(&empty_user), Ok("tok".into()));
        assert!(presented_token("Basic !!!").is_err());
        assert!(presented_token(&format!("Basic {}", B64.encode("no-colon"))).is_err());
        assert!(presented_token("Digest x").is_err());
        assert!(presented_token("abc").is_err());
    }

    #[test]
    fn the_policy_allows_the_pages_own_stylesheet_and_nothing_else() {
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none'; "), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        use sha2::{Digest, Sha256};
        let hash = B64.encode(Sha256::digest(super::super::page::CSS.as_bytes()));
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    }

    #[test]
    fn raw_mime_is_an_attachment_with_a_plain_name() {
        assert_eq!(
            raw_mime_disposition("42"),
            "attachment; filename=\"42.eml\""
        );
        assert_eq!(
            raw_mime_disposition("4\"2;x"),
            "attachment; filename=\"42x.eml\""
        );
        assert_eq!(
            raw_mime_disposition(""),
            "attachment; filename=\"message.eml\""
        );
    }
}
