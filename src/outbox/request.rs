//! `POST /api/v1/outbox` bodies: validated field by field (every error names its field), then
//! built into MIME with mail-builder. Bcc recipients are in the envelope, never in the headers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use serde::Deserialize;

use super::envelope::{envelope_address, envelope_list};
use crate::tracking::token::with_token;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentRequest>,
    /// An activity this email answers: its Message-ID goes into In-Reply-To and References.
    pub in_reply_to: Option<u64>,
    /// A whole RFC 5322 message instead of the fields above (its To/Cc/Bcc give the envelope).
    pub raw: Option<String>,
    /// The record the email is about (`opportunity:7`); replies to it inherit it.
    pub regarding: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    pub filename: String,
    #[serde(default = "octet_stream")]
    pub content_type: String,
    pub content_base64: String,
}

fn octet_stream() -> String {
    "application/octet-stream".into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError {
        field: field.into(),
        message: message.into(),
    }
}

/// An email ready to queue.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub message_id: String,
    pub subject: String,
}

/// `type/subtype` of RFC 2045 token characters, nothing else: it goes into a header line.
fn mime_type_ok(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    t.split_once('/')
        .is_some_and(|(ty, sub)| token(ty) && token(sub))
}

/// Parses a request body. Errors name the field (serde's own message for shape errors).
pub fn parse(body: &[u8]) -> Result<EmailRequest, RequestError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("body")
            .to_string();
        bad(field, msg)
    })
}

/// Validates and builds the email. `message_id` and `in_reply_to` are ids without angle
/// brackets (mail-builder adds them); `token` goes into the subject, if any.
pub fn build(
    req: &EmailRequest,
    message_id: &str,
    in_reply_to: Option<&str>,
    token: Option<&str>,
) -> Result<NewEmail, RequestError> {
    let from = envelope_address("from", &req.from)?.to_ascii_lowercase();
    if let Some(raw) = &req.raw {
        if req.text.is_some()
            || req.html.is_some()
            || !req.attachments.is_empty()
            || !req.subject.is_empty()
        {
            return Err(bad(
                "raw",
                "give either raw or subject/text/html/attachments, not both",
            ));
        }
        return build_raw(raw, from, &req.to, &req.cc, &req.bcc, token);
    }
    // The addresses as they will be sent: the headers and the envelope use these very strings.
    let to = envelope_list("to", &req.to)?;
    let cc = envelope_list("cc", &req.cc)?;
    let recipients: Vec<String> =
        [to.clone(), cc.clone(), envelope_list("bcc", &req.bcc)?].concat();
    if recipients.is_empty() {
        return Err(bad(
            "to",
            "at least one recipient is needed in to, cc or bcc",
        ));
    }
    if req.text.is_none() && req.html.is_none() {
        return Err(bad("text", "give text or html (or both)"));
    }
    if req.subject.contains(['\r', '\n']) {
        return Err(bad("subject", "a subject is one line"));
    }
    let subject = match token {
        Some(t) => with_token(&req.subject, t),
        None => req.subject.clone(),
    };
    let mut b = MessageBuilder::new()
        .from(from.as_str())
        .subject(subject.as_str())
        .message_id(message_id);
    if !to.is_empty() {
        b = b.to(to.iter().map(String::as_str).collect::<Vec<&str>>());
    }
    if !cc.is_empty() {
        b = b.cc(cc.iter().map(String::as_str).collect::<Vec<&str>>());
    }
    if let Some(id) = in_reply_to {
        b = b.in_reply_to(id).references(id);
    }
    if let Some(t) = &req.text {
        b = b.text_body(t.as_str());
    }
    if let Some(h) = &req.html {
        b = b.html_body(h.as_str());
    }
    for (i, a) in req.attachments.iter().enumerate() {
        let data = STANDARD.decode(a.content_base64.trim()).map_err(|e| {
            bad(
                format!("attachments[{i}].content_base64"),
                format!("not base64: {e}"),
            )
        })?;
        if a.filename.trim().is_empty() || a.filename.contains(['/', '\r', '\n']) {
            return Err(bad(
                format!("attachments[{i}].filename"),
                "a plain file name is needed",
            ));
        }
        if !mime_type_ok(&a.content_type) {
            return Err(bad(
                format!("attachments[{i}].content_type"),
                format!("\"{}\" is not a MIME type", a.content_type.escape_debug()),
            ));
        }
        b = b.attachment(a.content_type.clone(), a.filename.clone(), data);
    }
    let raw = b
        .write_to_vec()
        .map_err(|e| bad("body", format!("cannot build the email: {e}")))?;
    Ok(NewEmail {
        from,
        recipients,
        raw,
        message_id: message_id.to_string(),
        subject,
    })
}

/// A message given whole: the envelope comes from its headers (or the request's lists), Bcc
/// lines are removed, and the token goes into a one-line Subject.
fn build_raw(
    raw: &str,
    from: String,
    to: &[String],
    cc: &[String],
    bcc: &[String],
    token: Option<&str>,
) -> Result<NewEmail, RequestError> {
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(raw.as_bytes())
        .ok_or_else(|| bad("raw", "not an RFC 5322 message"))?;
    let addrs = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    let mut recipients = [
        envelope_list("to", to)?,
        envelope_list("cc", cc)?,
        envelope_list("bcc", bcc)?,
    ]
    .concat();
    if recipients.is_empty() {
        let named = [addrs(parsed.to()), addrs(parsed.cc()), addrs(parsed.bcc())].concat();
        recipients = envelope_list("raw", &named).map_err(|e| {
            bad(
                "raw",
                format!("a To, Cc or Bcc header address: {}", e.message),
            )
        })?;
    }
    if recipients.is_empty() {
        return Err(bad("raw", "the message names no recipient (To, Cc or Bcc)"));
    }
    // The mailbox sends as itself: a raw From naming anyone else is refused, not relayed.
    let senders = addrs(parsed.from());
    if senders.len() != 1 || !senders[0].eq_ignore_ascii_case(&from) {
        return Err(bad(
            "raw",
            format!("the From header must be the mailbox's address, {from}"),
        ));
    }
    let message_id = parsed
        .message_id()
        .map(str::to_string)
        .ok_or_else(|| bad("raw", "the message has no Message-ID header"))?;
    let subject = parsed.subject().unwrap_or("").to_string();
    // An encoded word may decode to a line break ("=?utf-8?Q?a=0D=0ABcc:_x?="): the Subject is
    // written back decoded when the token goes in, so such a subject would add header lines.
    if subject.contains(['\r', '\n']) {
        return Err(bad(
            "raw",
            "the Subject header decodes to more than one line",
        ));
    }
    let (head, body) = match raw.find("\r\n\r\n") {
        Some(i) => (&raw[..i + 2], &raw[i + 2..]),
        None => match raw.find("\n\n") {
            Some(i) => (&raw[..i + 1], &raw[i + 1..]),
            None => {
                return Err(bad(
                    "raw",
                    "the message has no empty line between header and body",
                ));
            }
        },
    };
    let mut out = String::with_capacity(raw.len() + 32);
    let mut skipping = false;
    let mut final_subject = subject.clone();
    for line in head.split_inclusive('\n') {
        let continuation = line.starts_with([' ', '\t']);
        if continuation {
            if !skipping {
                out.push_str(line);
            }
            continue;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        skipping = name == "bcc";
        if skipping {
            continue;
        }
        if name == "subject"
            && let Some(t) = token
            && subject.is_ascii()
        {
            final_subject = with_token(&subject, t);
            out.push_str(&format!("Subject: {final_subject}\r\n"));
            continue;
        }
        out.push_str(line);
    }
    out.push_str(body);
    Ok(NewEmail {
        from,
        recipients,
        raw: out.into_bytes(),
        message_id,
        subject: final_subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<NewEmail, RequestError> {
        build(
            &parse(json.as_bytes())?,
            "m1@sidesync",
            None,
            Some("CRM:0001001001"),
        )
    }

    #[test]
    fn builds_mime_without_bcc_and_with_the_token() {
        let e = req(r#"{"from":"a@x.org","to":["b@y.org"],"cc":["c@y.org"],"bcc":["secret@z.org"],
            "subject":"Hello","text":"Hi","html":"<p>Hi</p>",
            "attachments":[{"filename":"a.txt","content_type":"text/plain","content_base64":"aGVsbG8="}]}"#)
        .expect("valid");
        assert_eq!(e.recipients, vec!["b@y.org", "c@y.org", "secret@z.org"]);
        let text = String::from_utf8_lossy(&e.raw);
        assert!(
            !text
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:"))
                && !text.contains("secret@z.org"),
            "{text}"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&e.raw)
            .expect("parses");
        assert_eq!(parsed.subject(), Some("Hello [CRM:0001001001]"));
        assert_eq!(parsed.message_id(), Some("m1@sidesync"));
        assert_eq!(
            parsed.attachment(0).map(|a| a.contents()),
            Some(&b"hello"[..])
        );
    }

    #[test]
    fn every_error_names_its_field() {
        let field = |json: &str| req(json).expect_err("invalid").field;
        assert_eq!(
            field(r#"{"from":"a@x","to":["b@y"],"text":"t","colour":1}"#),
            "colour"
        );
        assert_eq!(
            field(r#"{"from":"nobody","to":["b@y"],"text":"t"}"#),
            "from"
        );
        assert_eq!(
            field(r#"{"from":"a@x","to":["not an address"],"text":"t"}"#),
            "to[0]"
        );
        assert_eq!(field(r#"{"from":"a@x","text":"t"}"#), "to");
        assert_eq!(field(r#"{"from":"a@x","to":["b@y"]}"#), "text");
        assert_eq!(field(r#"{"from":"a@x","to":"b@y","text":"t"}"#), "body");
        assert_eq!(
            field(
                r#"{"from":"a@x","to":["b@y"],"text":"t","attachments":[{"filename":"f","content_base64":"%%%"}]}"#
            ),
            "attachments[0].content_base64"
        );
        assert_eq!(field("not json"), "body");
    }

    #[test]
    fn raw_messages_lose_their_bcc_line_and_keep_the_rest() {
        let raw = "Message-ID: <r1@x>\r\nFrom: a@x.org\r\nTo: b@y.org\r\nBcc: hidden@z.org,\r\n other@z.org\r\nSubject: Raw one\r\n\r\nBody\r\n";
        let json = serde_json::json!({ "from": "a@x.org", "raw": raw }).to_string();
        let e = req(&json).expect("valid");
        assert_eq!(e.recipients, vec!["b@y.org", "hidden@z.org", "other@z.org"]);
        let text = String::from_utf8_lossy(&e.raw);
        assert!(
            !text.contains("hidden@z.org") && !text.contains("other@z.org"),
            "{text}"
        );
        assert!(
            text.contains("Subject: Raw one [CRM:0001001001]\r\n")
                && text.ends_with("\r\n\r\nBody\r\n"),
            "{text}"
        );
    }

    #[test]
    fn raw_mode_recipients_are_checked_as_sent() {
        let raw = "Message-ID: <r2@x>\r\nFrom: a@x.org\r\nTo: b@y.org\r\n\r\nBody\r\n";
        for (field, bad_value) in [
            ("to", "a@example.com\r\nRCPT TO:<b@example.com>"),
            ("to", "a@example.com\r\n"),
            ("cc", "a@example.com\n"),
            ("bcc", "a@example.com \r\n"),
        ] {
            let json = serde_json::json!({ "from": "a@x.org", "raw": raw, field: [bad_value] })
                .to_string();
            let e = req(&json).expect_err(bad_value);
            assert_eq!(e.field, format!("{field}[0]"), "{bad_value:?}");
        }
        let json =
            serde_json::json!({ "from": "a@x.org", "raw": raw, "to": [" c@y.org "] }).to_string();
        assert_eq!(req(&json).expect("spaces cut").recipients, vec!["c@y.org"]);
    }

    #[test]
    fn a_sender_with_a_line_end_is_refused() {
        let e = req(r#"{"from":"a@x.org\r\n","to":["b@y.org"],"text":"t"}"#).expect_err("from");
        assert_eq!(e.field, "from");
    }

    #[test]
    fn header_injection_is_refused_in_every_header_bound_field() {
        let raw = |subject: &str, from: &str| {
            serde_json::json!({
                "from": "a@example.com",
                "raw": format!("From: {from}\r\nTo: b@example.com\r\nMessage-ID: <m@x>\r\nSubject: {subject}\r\n\r\nbody\r\n"),
            })
            .to_string()
        };
        let build_with_token = |json: &str| {
            let r = parse(json.as_bytes()).expect("parses");
            build(&r, "id@x", None, Some("CRM:0001001001"))
        };
        let e = build_with_token(&raw("=?utf-8?Q?hi=0D=0ABcc:_evil@x?=", "a@example.com"))
            .expect_err("an encoded CRLF in the subject");
        assert_eq!(e.field, "raw");
        let e = build_with_token(&raw("hi", "boss@example.com")).expect_err("a forged From");
        assert!(e.message.contains("must be the mailbox's address"), "{e}");
        assert!(
            build_with_token(&raw("hi", "A@Example.com")).is_ok(),
            "the mailbox itself"
        );
        let attachment = |ct: &str| {
            serde_json::json!({
                "from": "a@example.com", "to": ["b@example.com"], "text": "t",
                "attachments": [{"filename": "f", "content_type": ct, "content_base64": "QQ=="}],
            })
            .to_string()
        };
        for bad_type in [
            "text/plain\r\nBcc: evil@x",
            "text/plain; x=y",
            "text",
            "/x",
            "a b/c",
        ] {
            let e = build_with_token(&attachment(bad_type)).expect_err(bad_type);
            assert_eq!(e.field, "attachments[0].content_type", "{bad_type}");
        }
        assert!(build_with_token(&attachment("application/vnd.ms-excel")).is_ok());
    }
}
