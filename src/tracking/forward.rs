//! Forward mailbox (M6): each user's server forwards a copy of every email to one dedicated
//! mailbox, as an attachment (message/rfc822) or inline. What was forwarded is recovered here:
//! the attached emails byte for byte, or, for an inline forward, the original sender, date,
//! subject and recipients from the forward's own header block (Gmail's and Outlook's shapes).
//! Pure, so every shape is unit-tested.

use mail_parser::{MessageParser, MimeHeaders};

/// Emails recovered from one forward, at most (a hostile forward cannot multiply work).
pub const MAX_FORWARDED: usize = 50;

/// What a forward holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The mailbox that forwarded it: the forward's From, lower case.
    pub forwarded_by: Option<String>,
    /// The original emails, as raw MIME.
    pub emails: Vec<Vec<u8>>,
}

pub fn unpack(raw: &[u8]) -> Forward {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Forward {
            forwarded_by: None,
            emails: Vec::new(),
        };
    };
    let forwarded_by = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_lowercase);
    let mut emails: Vec<Vec<u8>> = msg
        .attachments()
        .filter(|p| {
            p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822"))
            })
        })
        .filter_map(|p| p.message().map(|m| m.raw_message().to_vec()))
        .filter(|m| !m.is_empty())
        .take(MAX_FORWARDED)
        .collect();
    if emails.is_empty()
        && let Some(text) = msg.body_text(0)
        && let Some(original) = inline(&text)
    {
        emails.push(original);
    }
    Forward {
        forwarded_by,
        emails,
    }
}

/// The header lines of an inline forward, and what they become.
const FIELDS: &[(&str, &str)] = &[
    ("from", "From"),
    ("von", "From"),
    ("de", "From"),
    ("sent", "Date"),
    ("date", "Date"),
    ("gesendet", "Date"),
    ("datum", "Date"),
    ("envoyé", "Date"),
    ("to", "To"),
    ("an", "To"),
    ("à", "To"),
    ("cc", "Cc"),
    ("subject", "Subject"),
    ("betreff", "Subject"),
    ("objet", "Subject"),
];

const MARKERS: &[&str] = &[
    "---------- forwarded message ---------",
    "-----original message-----",
    "-------- original message --------",
    "-------- forwarded message --------",
    "-----ursprüngliche nachricht-----",
    "-------- message d'origine --------",
];

/// An inline forward: the text after a forward marker, whose first lines are `Field: value`
/// with at least a From. Rebuilt as a plain-text email with those header fields.
pub fn inline(text: &str) -> Option<Vec<u8>> {
    let lower = text.to_lowercase();
    if lower.len() != text.len() {
        // Lower-casing moved byte offsets; find the marker line by line instead.
        return inline_by_lines(text);
    }
    let at = MARKERS.iter().filter_map(|m| lower.find(m)).min()?;
    // Same length does not promise the same offsets (one character may grow as another
    // shrinks): an offset that is no boundary here takes the line-by-line way.
    let Some(after) = text.get(at..) else {
        return inline_by_lines(text);
    };
    let rest = after.split_once('\n').map_or("", |(_, r)| r);
    rebuild(rest)
}

fn inline_by_lines(text: &str) -> Option<Vec<u8>> {
    let mut lines = text.split_inclusive('\n');
    let mut consumed = 0;
    for line in lines.by_ref() {
        consumed += line.len();
        let l = line.trim().to_lowercase();
        if MARKERS.iter().any(|m| l.contains(m)) {
            return rebuild(&text[consumed..]);
        }
    }
    None
}

fn rebuild(rest: &str) -> Option<Vec<u8>> {
    let mut header = String::new();
    let mut has_from = false;
    let mut body_start = rest.len();
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        let trimmed = line.trim();
        offset += line.len();
        if trimmed.is_empty() {
            if header.is_empty() {
                continue;
            }
            body_start = offset;
            break;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            body_start = offset - line.len();
            break;
        };
        let name = name.trim().trim_matches('*').to_lowercase();
        let Some((_, field)) = FIELDS.iter().find(|(n, _)| *n == name) else {
            body_start = offset - line.len();
            break;
        };
        let value = value.trim().trim_matches('*').trim();
        // One line each: nothing recovered may add a header of its own.
        if value.contains(['\r', '\n']) || header.len() > 8 * 1024 {
            return None;
        }
        has_from |= *field == "From";
        header.push_str(&format!("{field}: {value}\r\n"));
    }
    if !has_from {
        return None;
    }
    let body = rest[body_start.min(rest.len())..]
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    Some(
        format!(
            "{header}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::message::parse_headers;

    const ORIGINAL: &str = "Message-ID: <orig@contoso.com>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\n\
        From: Carol <carol@contoso.com>\r\nTo: alice@example.com\r\nSubject: Renewal\r\n\r\nLet us talk.\r\n";

    fn attached(by: &str, original: &str) -> Vec<u8> {
        format!(
            "From: {by}\r\nTo: forward@example.com\r\nSubject: FW: Renewal\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             see attached\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn an_attached_email_comes_back_with_its_own_header() {
        let f = unpack(&attached("Alice <Alice@Example.com>", ORIGINAL));
        assert_eq!(f.forwarded_by.as_deref(), Some("alice@example.com"));
        assert_eq!(f.emails.len(), 1);
        let h = parse_headers(&f.emails[0]);
        assert_eq!(h.message_id.as_deref(), Some("orig@contoso.com"));
        assert_eq!(h.from, vec!["Carol <carol@contoso.com>"]);
        assert_eq!(h.subject.as_deref(), Some("Renewal"));
        assert!(String::from_utf8_lossy(&f.emails[0]).contains("Let us talk."));
    }

    #[test]
    fn inline_forwards_of_gmail_and_outlook() {
        let gmail = "From: alice@example.com\r\nTo: forward@example.com\r\nSubject: Fwd: Renewal\r\n\r\n\
            FYI\r\n\r\n---------- Forwarded message ---------\r\nFrom: Carol <carol@contoso.com>\r\n\
            Date: Mon, 1 Sep 2025 at 10:00\r\nSubject: Renewal\r\nTo: <alice@example.com>\r\n\r\nLet us talk.\r\n";
        let f = unpack(gmail.as_bytes());
        assert_eq!(f.emails.len(), 1);
        let h = parse_headers(&f.emails[0]);
        assert_eq!(h.from, vec!["Carol <carol@contoso.com>"]);
        assert_eq!(h.subject.as_deref(), Some("Renewal"));
        assert!(String::from_utf8_lossy(&f.emails[0]).ends_with("Let us talk.\r\n"));
        let outlook = "From: alice@example.com\r\nSubject: FW: Renewal\r\n\r\n\
            -----Original Message-----\r\nFrom: carol@contoso.com\r\nSent: Monday, September 1, 2025 10:00 AM\r\n\
            To: alice@example.com\r\nCc: dan@contoso.com\r\nSubject: Renewal\r\n\r\nLet us talk.\r\n";
        let h = parse_headers(&unpack(outlook.as_bytes()).emails[0]);
        assert_eq!(h.cc, vec!["dan@contoso.com"]);
        let german = "From: alice@example.com\r\n\r\n-----Ursprüngliche Nachricht-----\r\n\
            Von: carol@contoso.com\r\nBetreff: Angebot\r\n\r\nText\r\n";
        let h = parse_headers(&unpack(german.as_bytes()).emails[0]);
        assert_eq!(h.from, vec!["carol@contoso.com"]);
        assert_eq!(h.subject.as_deref(), Some("Angebot"));
    }

    #[test]
    fn lower_casing_that_moves_offsets_does_not_panic() {
        // 'İ' grows when lower-cased and 'ẞ' shrinks: same length, other offsets.
        let text = "İẞ x -----Original Message-----\r\nFrom: carol@contoso.com\r\n\r\nbody\r\n";
        assert_eq!(text.len(), text.to_lowercase().len());
        let _ = inline(text);
        let _ = inline("ẞẞẞ ---------- Forwarded message ---------\nFrom: a@b\n\nx");
    }

    #[test]
    fn nothing_recoverable_is_nothing() {
        let plain = "From: alice@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n";
        assert!(unpack(plain.as_bytes()).emails.is_empty());
        let no_from = "From: a@x\r\n\r\n-----Original Message-----\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(unpack(no_from.as_bytes()).emails.is_empty());
        assert_eq!(unpack(b"").emails.len(), 0);
    }
}
