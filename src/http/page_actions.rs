//! The mailbox page's buttons — Approve and Test & Enable — for an admin token's holder: plain
//! HTML forms that POST to `/mailbox/ADDRESS/approve` and `/mailbox/ADDRESS/test` and run the
//! API's own operations (`api.rs`), then send the browser back to the page (303).
//!
//! The browser sends the token by itself (HTTP Basic, remembered for the site), so a page on
//! another site could make it POST: cross-site request forgery. Three checks stop that:
//! - a CSRF token in each form, an HMAC-SHA256 under a key drawn at start over the admin token's
//!   name and digest, the action and the mailbox: only a page the listener served to this token's
//!   holder has it; it dies with a restart or a changed token, and one form's token opens no
//!   other action or mailbox. Compared in constant time (`ring::hmac::verify`);
//! - `Sec-Fetch-Site`, when the browser sends it, must be `same-origin`;
//! - `Origin`, when sent, must be this listener (scheme and Host), and never `null`.
//!
//! A read or send token sees no button, and its POST is refused (403) like the API's.

use std::io::Read;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::hmac;
use tiny_http::{Method, Request};

use super::StatusContext;
use super::api::Caller;
use super::error::{ApiError, err};
use crate::config::TokenScope;

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAction {
    Approve,
    Test,
}

impl PageAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PageAction::Approve => "approve",
            PageAction::Test => "test",
        }
    }

    /// `/mailbox/ADDRESS/approve` → (ADDRESS as written, Approve).
    pub fn of_path(path: &str) -> Option<(&str, PageAction)> {
        let rest = path.strip_prefix("/mailbox/")?;
        let (address, action) = rest.rsplit_once('/')?;
        if address.is_empty() || address.contains('/') {
            return None;
        }
        match action {
            "approve" => Some((address, PageAction::Approve)),
            "test" => Some((address, PageAction::Test)),
            _ => None,
        }
    }
}

/// The key the CSRF tokens are made with: drawn once per process (None if the system's random
/// source fails: then no button is shown and every POST is refused).
fn key() -> Option<&'static hmac::Key> {
    static KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok()
    })
    .as_ref()
}

/// What a CSRF token vouches for: this admin token (its name and a digest of it — never the
/// token itself), this action, this mailbox.
fn message(token_name: &str, token: &str, action: PageAction, address: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut m = b"sidesync page action v1\0".to_vec();
    m.extend_from_slice(token_name.as_bytes());
    m.push(0);
    m.extend_from_slice(&Sha256::digest(token.as_bytes()));
    m.push(0);
    m.extend_from_slice(action.as_str().as_bytes());
    m.push(0);
    m.extend_from_slice(address.as_bytes());
    m
}

fn sign(
    key: &hmac::Key,
    token_name: &str,
    token: &str,
    action: PageAction,
    address: &str,
) -> String {
    B64URL.encode(hmac::sign(key, &message(token_name, token, action, address)).as_ref())
}

fn verify(
    key: &hmac::Key,
    token_name: &str,
    token: &str,
    action: PageAction,
    address: &str,
    presented: &str,
) -> bool {
    let Ok(tag) = B64URL.decode(presented.trim()) else {
        return false;
    };
    hmac::verify(key, &message(token_name, token, action, address), &tag).is_ok()
}

/// The CSRF token a form of the page carries.
pub fn csrf_token(
    token_name: &str,
    token: &str,
    action: PageAction,
    address: &str,
) -> Option<String> {
    key().map(|k| sign(k, token_name, token, action, address))
}

/// Whether `presented` is the token [`csrf_token`] gives for the same.
pub fn csrf_valid(
    token_name: &str,
    token: &str,
    action: PageAction,
    address: &str,
    presented: &str,
) -> bool {
    key().is_some_and(|k| verify(k, token_name, token, action, address, presented))
}

/// The browser's word on where the request comes from: refused when it says another site, or
/// an origin that is not this listener (`scheme://host` as the Host header names it). Clients
/// that send neither header (curl, a script) still need the CSRF token.
pub fn same_origin(
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    host: Option<&str>,
    secure: bool,
) -> Result<(), &'static str> {
    if let Some(site) = sec_fetch_site
        && !site.trim().eq_ignore_ascii_case("same-origin")
    {
        return Err("the browser says this request comes from another site (Sec-Fetch-Site)");
    }
    if let Some(origin) = origin {
        let origin = origin.trim();
        let scheme = if secure { "https" } else { "http" };
        let expected = host.map(|h| format!("{scheme}://{}", h.trim()));
        if !expected.is_some_and(|e| e.eq_ignore_ascii_case(origin)) {
            return Err("the request's Origin is not this listener");
        }
    }
    Ok(())
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
pub fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| super::error::percent_decode(&v.replace('+', " ")))
    })
}

/// The CSRF tokens of a mailbox page's two forms, for a caller whose token is an admin's;
/// None (no buttons) for any other caller.
pub(super) fn forms_for(
    ctx: &StatusContext,
    caller: Option<&Caller>,
    address: &str,
) -> Option<(String, String)> {
    let caller = caller.filter(|c| c.scope == TokenScope::Admin)?;
    let config = ctx.config();
    let token = config
        .appliance
        .api_tokens
        .iter()
        .find(|t| t.name == caller.name)?;
    let secret = token.token.expose();
    Some((
        csrf_token(&caller.name, secret, PageAction::Approve, address)?,
        csrf_token(&caller.name, secret, PageAction::Test, address)?,
    ))
}

fn header_of<'r>(request: &'r Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// A button's POST: checked (admin, same origin, CSRF token), then the API's own operation,
/// then back to the mailbox's page (303). Every attempt leaves an audit line, as API calls do.
pub(super) fn handle(
    ctx: &StatusContext,
    request: &mut Request,
    caller: Option<&Caller>,
    path: &str,
) -> Result<String, ApiError> {
    let outcome = act(ctx, request, caller, path);
    tracing::info!(
        target: "sidesync::audit",
        peer = %super::peer(request).map(|p| p.to_string()).unwrap_or_else(|| "unknown".into()),
        who = %caller.map(|c| c.name.as_str()).unwrap_or("refused"),
        method = %request.method(),
        path,
        status = outcome.as_ref().map(|_| 303).unwrap_or_else(|e| e.status),
        "audit: status page action"
    );
    outcome
}

fn act(
    ctx: &StatusContext,
    request: &mut Request,
    caller: Option<&Caller>,
    path: &str,
) -> Result<String, ApiError> {
    let Some((written, action)) = PageAction::of_path(path) else {
        return Err(err(404, format!("nothing at {path}")));
    };
    if *request.method() != Method::Post {
        return Err(err(
            405,
            format!("{path} answers POST only (the page's button)"),
        ));
    }
    let caller = caller.ok_or_else(|| err(403, "the page's buttons need an admin token"))?;
    if caller.scope != TokenScope::Admin {
        return Err(err(
            403,
            format!(
                "the token \"{}\" has scope {}; the page's buttons need admin",
                caller.name,
                caller.scope.as_str()
            ),
        ));
    }
    same_origin(
        header_of(request, "Origin"),
        header_of(request, "Sec-Fetch-Site"),
        header_of(request, "Host"),
        ctx.config().appliance.status_tls.is_some(),
    )
    .map_err(|e| err(403, e))?;
    let mut body = String::new();
    request
        .as_reader()
        .take(MAX_FORM)
        .read_to_string(&mut body)
        .map_err(|_| err(400, "the form is not UTF-8 text"))?;
    let address = super::error::percent_decode(written).to_ascii_lowercase();
    let presented = form_value(&body, "csrf").unwrap_or_default();
    let config = ctx.config();
    let valid = config
        .appliance
        .api_tokens
        .iter()
        .find(|t| t.name == caller.name)
        .is_some_and(|t| csrf_valid(&caller.name, t.token.expose(), action, &address, &presented));
    if !valid {
        return Err(err(
            403,
            "missing or wrong CSRF token: reload the mailbox's page and press the button again",
        ));
    }
    // The API's own operations, given the address as written in the path (they decode it).
    match action {
        PageAction::Approve => super::api::approve(
            ctx,
            written,
            Some(serde_json::json!({"approval": "approved"})),
        )?,
        PageAction::Test => super::api::test(ctx, written)?,
    };
    Ok(format!("/mailbox/{written}"))
}

/// A form's body is a few hundred bytes.
const MAX_FORM: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_opens_its_own_action_mailbox_and_token_only() {
        let t = csrf_token(
            "admin",
            "secret-token-0123456789",
            PageAction::Approve,
            "a@x.example",
        )
        .expect("a key");
        assert!(csrf_valid(
            "admin",
            "secret-token-0123456789",
            PageAction::Approve,
            "a@x.example",
            &t
        ));
        assert!(!csrf_valid(
            "admin",
            "secret-token-0123456789",
            PageAction::Test,
            "a@x.example",
            &t
        ));
        assert!(!csrf_valid(
            "admin",
            "secret-token-0123456789",
            PageAction::Approve,
            "b@x.example",
            &t
        ));
        assert!(!csrf_valid(
            "admin",
            "another-token-0123456789",
            PageAction::Approve,
            "a@x.example",
            &t
        ));
        assert!(!csrf_valid(
            "other",
            "secret-token-0123456789",
            PageAction::Approve,
            "a@x.example",
            &t
        ));
        assert!(!csrf_valid(
            "admin",
            "secret-token-0123456789",
            PageAction::Approve,
            "a@x.example",
            ""
        ));
        assert!(!csrf_valid(
            "admin",
            "secret-token-0123456789",
            PageAction::Approve,
            "a@x.example",
            "!!"
        ));
        assert!(!t.contains("secret"), "the token is not in it");
    }

    #[test]
    fn a_key_of_another_run_makes_other_tokens() {
        let rng = ring::rand::SystemRandom::new();
        let (a, b) = (
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("key"),
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("key"),
        );
        let t = sign(&a, "admin", "tok", PageAction::Test, "a@x");
        assert!(verify(&a, "admin", "tok", PageAction::Test, "a@x", &t));
        assert!(!verify(&b, "admin", "tok", PageAction::Test, "a@x", &t));
    }

    #[test]
    fn only_this_listener_may_post() {
        let host = Some("127.0.0.1:8025");
        assert!(
            same_origin(None, None, host, false).is_ok(),
            "curl sends neither"
        );
        assert!(
            same_origin(
                Some("http://127.0.0.1:8025"),
                Some("same-origin"),
                host,
                false
            )
            .is_ok()
        );
        assert!(same_origin(Some("HTTP://127.0.0.1:8025"), None, host, false).is_ok());
        assert!(same_origin(Some("https://127.0.0.1:8025"), None, host, true).is_ok());
        assert!(
            same_origin(Some("http://127.0.0.1:8025"), None, host, true).is_err(),
            "scheme"
        );
        assert!(same_origin(Some("http://evil.example"), None, host, false).is_err());
        assert!(same_origin(Some("null"), None, host, false).is_err());
        assert!(same_origin(Some("http://127.0.0.1:8025"), None, None, false).is_err());
        for site in ["cross-site", "same-site", "none"] {
            assert!(
                same_origin(None, Some(site), host, false).is_err(),
                "{site}"
            );
        }
    }

    #[test]
    fn paths_and_forms_are_read() {
        assert_eq!(
            PageAction::of_path("/mailbox/a@x.example/approve"),
            Some(("a@x.example", PageAction::Approve))
        );
        assert_eq!(
            PageAction::of_path("/mailbox/a@x.example/test"),
            Some(("a@x.example", PageAction::Test))
        );
        assert_eq!(PageAction::of_path("/mailbox/a@x.example"), None);
        assert_eq!(PageAction::of_path("/mailbox//test"), None);
        assert_eq!(PageAction::of_path("/mailbox/a/b/test"), None);
        assert_eq!(PageAction::of_path("/mailbox/a@x/delete"), None);
        assert_eq!(
            form_value("csrf=ab%2Dc_d&x=1", "csrf"),
            Some("ab-c_d".into())
        );
        assert_eq!(form_value("x=1", "csrf"), None);
        assert_eq!(form_value("csrf", "csrf"), Some(String::new()));
    }
}
