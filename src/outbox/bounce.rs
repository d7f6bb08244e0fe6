//! Delivery status reports: what a report returned to the outbox's envelope sender says about
//! each recipient of the email it reports on. Pure: bytes in, a [`Report`] out, so that every
//! format is unit-tested on a sample (`tests/fixtures/bounces/`).
//!
//! Formats, in the order they are tried:
//! 1. RFC 3464 `multipart/report; report-type=delivery-status` (Postfix, Sendmail, Exim, modern
//!    Exchange and Gmail): the `message/delivery-status` part's per-recipient fields. A field the
//!    report leaves out (Postfix often omits `Diagnostic-Code` for local recipients) is read
//!    from the human-readable part's `<address>: reason` lines.
//! 2. qmail (`Hi. This is the qmail-send program…`): `<address>:` lines, each followed by its
//!    reason; qmail has no delay notices, so a report without a code is permanent.
//! 3. Gmail's non-standard notices (`X-Failed-Recipients`, `Delivery Status Notification`).
//! 4. Exchange NDRs without a report part: `Delivery has failed…` and `#550 5.1.1` codes.
//!
//! A report is just an email: anything malformed yields fewer recipients or `None`, never a panic.

use std::fmt;

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::bounce_text as text;

/// What a delivery status report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub format: Format,
    /// `Original-Envelope-Id` (RFC 3464 §2.2.1): the ENVID sent on MAIL FROM, the outbox id.
    pub envelope_id: Option<String>,
    /// The Message-ID of the email reported on, without angle brackets: from the returned
    /// message or its headers, else from the report's own `In-Reply-To` (Gmail sets it).
    pub original_message_id: Option<String>,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc3464,
    Qmail,
    Gmail,
    Exchange,
}

/// One recipient's fate as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `Final-Recipient`, or the address the non-standard report names.
    pub address: String,
    /// `Original-Recipient`: the address as the outbox wrote it, when the report kept it.
    pub original: Option<String>,
    pub action: Action,
    pub status: Status,
    pub diagnostic: Option<String>,
}

/// RFC 3464 §2.3.3 `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

/// What the outbox records for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Permanent failure (5.x.x): the email will not arrive.
    Bounced,
    /// Transient failure (4.x.x): a server still tries.
    Delayed,
}

impl Status {
    pub const PERMANENT: Status = Status {
        class: 5,
        subject: 0,
        detail: 0,
    };
    pub const TRANSIENT: Status = Status {
        class: 4,
        subject: 0,
        detail: 0,
    };

    /// A code as written in a `Status` field or a diagnostic: exactly three dot-separated
    /// numbers, class 2, 4 or 5, subject and detail of 1 to 3 digits (RFC 3463 §2).
    pub fn parse(word: &str) -> Option<Status> {
        let mut parts = word.split('.');
        let (c, s, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let digits = |p: &str, max: usize| {
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(c, 1) || !digits(s, 3) || !digits(d, 3) {
            return None;
        }
        let class = c.parse().ok()?;
        if ![2, 4, 5].contains(&class) {
            return None;
        }
        Some(Status {
            class,
            subject: s.parse().ok()?,
            detail: d.parse().ok()?,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        match word.trim().to_ascii_lowercase().as_str() {
            "failed" => Some(Action::Failed),
            "delayed" => Some(Action::Delayed),
            "delivered" => Some(Action::Delivered),
            "relayed" => Some(Action::Relayed),
            "expanded" => Some(Action::Expanded),
            _ => None,
        }
    }
}

impl Recipient {
    /// The status class decides, not the action: RFC 3464 lets `Action: failed` carry only a
    /// 5.x.x code and `delayed` a 4.x.x one, and the code is what a server acted on.
    /// Delivered, relayed and expanded recipients (2.x.x) change nothing.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.status.class {
            5 => Some(Outcome::Bounced),
            4 => Some(Outcome::Delayed),
            _ => None,
        }
    }
}

/// The report in `raw`, or `None` when `raw` is no delivery status report.
pub fn parse(raw: &[u8]) -> Option<Report> {
    let message = MessageParser::default().parse(raw)?;
    let texts = text_parts(&message);
    let mut report = rfc3464(&message, &texts)
        .or_else(|| qmail(&texts))
        .or_else(|| gmail(&message, &texts))
        .or_else(|| exchange(&message, &texts))?;
    report.original_message_id = returned_message_id(&message, &texts);
    Some(report)
}

/// Format 1: the `message/delivery-status` part.
fn rfc3464(message: &Message<'_>, texts: &[String]) -> Option<Report> {
    let part = message.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status")
                        || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })?;
    let fields = String::from_utf8_lossy(part.contents());
    let mut envelope_id = None;
    let mut recipients = Vec::new();
    for group in text::field_groups(&fields) {
        if let Some(id) = text::field(&group, "original-envelope-id") {
            envelope_id = Some(id.to_string());
        }
        if let Some(r) = dsn_recipient(&group) {
            recipients.push(r);
        }
    }
    let lines = texts
        .iter()
        .flat_map(|t| text::address_lines(t))
        .collect::<Vec<_>>();
    for r in recipients.iter_mut().filter(|r| r.diagnostic.is_none()) {
        r.diagnostic = lines
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(&r.address))
            .map(|(_, d)| d.clone());
    }
    Some(Report {
        format: Format::Rfc3464,
        envelope_id,
        original_message_id: None,
        recipients,
    })
}

/// One per-recipient group; `None` without a usable `Final-Recipient` or `Action`.
fn dsn_recipient(group: &[(String, String)]) -> Option<Recipient> {
    let address = text::typed_address(text::field(group, "final-recipient")?)?;
    let action = Action::parse(text::field(group, "action")?)?;
    let status = text::field(group, "status")
        .and_then(|s| s.split_whitespace().next())
        .and_then(Status::parse)
        .unwrap_or(match action {
            // A report that names the action but garbles the code still says which way it went.
            Action::Delayed => Status::TRANSIENT,
            Action::Failed => Status::PERMANENT,
            _ => Status {
                class: 2,
                subject: 0,
                detail: 0,
            },
        });
    Some(Recipient {
        address,
        original: text::field(group, "original-recipient").and_then(text::typed_address),
        action,
        status,
        diagnostic: text::field(group, "diagnostic-code").map(|d| text::after_type(d).to_string()),
    })
}

/// Format 2: qmail-send's bounce.
fn qmail(texts: &[String]) -> Option<Report> {
    let body = texts.iter().find(|t| t.contains("qmail-send program"))?;
    let report_part = body.split(text::QMAIL_COPY).next().unwrap_or(body);
    let recipients = text::address_lines(report_part)
        .into_iter()
        .map(|(address, diagnostic)| {
            let status = text::status_in(&diagnostic).unwrap_or(Status::PERMANENT);
            failed(address, status, Some(diagnostic))
        })
        .collect();
    Some(Report {
        format: Format::Qmail,
        envelope_id: None,
        original_message_id: None,
        recipients,
    })
}

/// Format 3: Gmail's notice, recipients in `X-Failed-Recipients`.
fn gmail(message: &Message<'_>, texts: &[String]) -> Option<Report> {
    let failed_header = message.header_raw("X-Failed-Recipients")?;
    let delay = message
        .subject()
        .is_some_and(|s| s.to_ascii_lowercase().contains("(delay)"));
    let body = texts.first().map(String::as_str).unwrap_or("");
    let coded_line = body.lines().find(|l| text::status_in(l).is_some());
    let status = coded_line.and_then(text::status_in).unwrap_or(if delay {
        Status::TRANSIENT
    } else {
        Status::PERMANENT
    });
    let diagnostic = coded_line.map(|l| l.trim().to_string());
    let recipients = failed_header
        .split(',')
        .filter_map(text::bare_address)
        .map(|a| failed(a, status, diagnostic.clone()))
        .collect();
    Some(Report {
        format: Format::Gmail,
        envelope_id: None,
        original_message_id: None,
        recipients,
    })
}

/// Format 4: an Exchange NDR without a report part.
fn exchange(message: &Message<'_>, texts: &[String]) -> Option<Report> {
    let ndr_header = message.header_raw("X-MS-Exchange-Message-Is-Ndr").is_some();
    let body = texts.iter().find(|t| {
        ndr_header
            || t.contains("Delivery has failed to these recipients")
            || t.contains("did not reach some or all of the intended recipients")
    })?;
    let recipients = text::exchange_codes(body)
        .into_iter()
        .map(|(address, status, diagnostic)| failed(address, status, Some(diagnostic)))
        .collect();
    Some(Report {
        format: Format::Exchange,
        envelope_id: None,
        original_message_id: None,
        recipients,
    })
}

fn failed(address: String, status: Status, diagnostic: Option<String>) -> Recipient {
    Recipient {
        address,
        original: None,
        action: if status.class == 4 {
            Action::Delayed
        } else {
            Action::Failed
        },
        status,
        diagnostic,
    }
}

/// The text parts' contents (`text/plain` and the like; not the returned message's).
fn text_parts(message: &Message<'_>) -> Vec<String> {
    message
        .parts
        .iter()
        .filter(|p| {
            p.content_type()
                .is_none_or(|ct| ct.ctype().eq_ignore_ascii_case("text") && !is_headers_part(ct))
        })
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

fn is_headers_part(ct: &mail_parser::ContentType<'_>) -> bool {
    ct.subtype()
        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
}

/// The reported email's Message-ID: a returned `message/rfc822`, a `text/rfc822-headers` part,
/// a copy pasted into the text (qmail, Exchange), and last the report's own `In-Reply-To`.
fn returned_message_id(message: &Message<'_>, texts: &[String]) -> Option<String> {
    let from_parts = message.parts.iter().find_map(|p| match &p.body {
        PartType::Message(m) => m.message_id().map(str::to_string),
        PartType::Text(t) if p.content_type().is_some_and(is_headers_part) => {
            text::headers_message_id(t)
        }
        _ => None,
    });
    from_parts
        .or_else(|| texts.iter().find_map(|t| text::pasted_message_id(t)))
        .or_else(|| message.in_reply_to().as_text().map(str::to_string))
        .map(|id| id.trim_matches(['<', '>']).to_string())
        .filter(|id| !id.is_empty())
}
