//! What an activity records of an email's header, and the key that says "this is the same email".

use mail_parser::{Address, HeaderValue, MessageParser};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::automatic::{Automatic, classify};

/// The parsed header fields an activity keeps beside its raw MIME.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailHeaders {
    pub message_id: Option<String>,
    /// The Date header as RFC 3339, when it parses.
    pub date: Option<String>,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Written by a machine, and what kind (see [`super::automatic`]); None for a person's
    /// email. Stores before the kinds had names wrote it as `noise`.
    #[serde(default, alias = "noise", skip_serializing_if = "Option::is_none")]
    pub automatic: Option<Automatic>,
    /// Not even a header block could be read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}

/// Parses only the header block; a malformed email still yields whatever fields could be read.
pub fn parse_headers(raw: &[u8]) -> EmailHeaders {
    let Some(msg) = MessageParser::default().parse_headers(raw) else {
        return EmailHeaders {
            unreadable: true,
            ..EmailHeaders::default()
        };
    };
    EmailHeaders {
        message_id: msg
            .message_id()
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
        date: msg.date().map(|d| d.to_rfc3339()),
        from: addresses(msg.from()),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        subject: msg.subject().map(str::to_string),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        automatic: classify(&msg),
        unreadable: false,
    }
}

/// "Name <addr>" or "addr", in header order; group members included.
fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    let Some(a) = a else { return Vec::new() };
    a.iter()
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// The duplicate-check key of an email: its Message-ID (as Dynamics does), or, for an email
/// without one, a hash of its bytes so that a rescan still recognises it.
pub fn dedup_key(headers: &EmailHeaders, raw: &[u8]) -> String {
    match &headers.message_id {
        Some(id) => message_id_key(id),
        None => content_key(raw),
    }
}

/// The duplicate-check key of a Message-ID.
pub fn message_id_key(id: &str) -> String {
    format!(
        "mid:{}",
        id.trim().trim_start_matches('<').trim_end_matches('>')
    )
}

/// "sha256:…" of the raw bytes: the key of an email without a Message-ID.
pub fn content_key(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// P6 on POP3, where the server reports no receive time: true when the Date header says the
/// email is older than `cutoff` (unix time). An email without a readable Date is kept: dropping it
/// could lose mail.
pub fn dated_before(headers: &EmailHeaders, cutoff: i64) -> bool {
    headers
        .date
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .is_some_and(|d| d.timestamp() < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_filter_keeps_what_it_cannot_date() {
        let old = parse_headers(b"Date: Tue, 1 Oct 2024 10:00:00 +0200\r\n\r\nx");
        let cutoff = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .expect("date")
            .timestamp();
        assert!(dated_before(&old, cutoff));
        assert!(!dated_before(&old, cutoff - 200 * 86_400 * 2));
        assert!(!dated_before(
            &parse_headers(b"Subject: none\r\n\r\nx"),
            cutoff
        ));
        assert!(!dated_before(
            &parse_headers(b"Date: yesterday\r\n\r\nx"),
            cutoff
        ));
    }

    #[test]
    fn reads_the_fields_an_activity_keeps() {
        let raw = b"Message-ID: <a1@example.com>\r\n\
            Date: Tue, 1 Oct 2024 10:00:00 +0200\r\n\
            From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.com>\r\n\
            To: a@example.com, \"B\" <b@example.com>\r\n\
            Cc: c@example.com\r\n\
            Subject: =?UTF-8?B?SMOpbGxv?=\r\n\
            In-Reply-To: <p@example.com>\r\n\
            References: <o@example.com> <p@example.com>\r\n\
            \r\nbody\r\n";
        let h = parse_headers(raw);
        assert_eq!(h.message_id.as_deref(), Some("a1@example.com"));
        assert_eq!(h.date.as_deref(), Some("2024-10-01T10:00:00+02:00"));
        assert_eq!(h.from, vec!["Jürgen <j@example.com>"]);
        assert_eq!(h.to, vec!["a@example.com", "B <b@example.com>"]);
        assert_eq!(h.cc, vec!["c@example.com"]);
        assert_eq!(h.subject.as_deref(), Some("Héllo"));
        assert_eq!(h.in_reply_to, vec!["p@example.com"]);
        assert_eq!(h.references, vec!["o@example.com", "p@example.com"]);
        assert_eq!(dedup_key(&h, raw), "mid:a1@example.com");
    }

    #[test]
    fn without_message_id_the_key_is_a_content_hash() {
        let a = b"Subject: x\r\n\r\none\r\n";
        let b = b"Subject: x\r\n\r\ntwo\r\n";
        let ka = dedup_key(&parse_headers(a), a);
        assert!(ka.starts_with("sha256:"));
        assert_eq!(ka, dedup_key(&parse_headers(a), a));
        assert_ne!(ka, dedup_key(&parse_headers(b), b));
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [&b""[..], b"\x00\xff\xfe", b"From:\r\n\r\n", b":::\r\n"] {
            let h = parse_headers(raw);
            let _ = dedup_key(&h, raw);
        }
    }
}
