//! Reading the text of delivery status reports: RFC 3464 field groups and the human-readable
//! lines of non-standard bounces. Pure string functions, used by `bounce.rs`.

use mail_parser::MessageParser;

use super::bounce::Status;

/// qmail's line between its report and the copy of the returned message.
pub const QMAIL_COPY: &str = "--- Below this line is a copy of the message.";
/// Exchange's heading before the returned message's headers.
const EXCHANGE_COPY: &str = "Original message headers:";

/// RFC 3464 §2.1: groups of header-style fields separated by blank lines, continuation lines
/// unfolded. Names are lower-cased; a line without a colon is skipped (a broken report still
/// yields its other fields).
pub fn field_groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    let mut group: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(std::mem::take(&mut group));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// The first non-empty value of `name` (lower-case) in a group.
pub fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, v)| n == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// `rfc822; addr` → `addr`: the part after the address or diagnostic type.
pub fn after_type(value: &str) -> &str {
    value.split_once(';').map_or(value, |(_, rest)| rest).trim()
}

/// The address of a typed field (`Final-Recipient: rfc822; a@b`), when it looks like one.
pub fn typed_address(value: &str) -> Option<String> {
    bare_address(after_type(value))
}

/// `<a@b>`, `"a@b"`, `(a@b)` or `a@b:` → `a@b`; `None` unless something@something remains.
pub fn bare_address(word: &str) -> Option<String> {
    let a = word
        .trim()
        .trim_matches(|c: char| matches!(c, '<' | '>' | '(' | ')' | '"' | '\'' | ':' | ',' | ';'));
    let (local, domain) = a.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !a.contains(char::is_whitespace)
        && !domain.contains('@');
    ok.then(|| a.to_string())
}

/// The first class 4 or 5 enhanced status code among the words of `line` (`#5.1.1`,
/// `(#5.1.1)`, `550 5.1.1`). Class 2 is not a failure and four-part IP addresses never match.
pub fn status_in(line: &str) -> Option<Status> {
    line.split(|c: char| c.is_whitespace() || "#()[];,<>:".contains(c))
        .map(|w| w.trim_end_matches('.'))
        .filter_map(Status::parse)
        .find(|s| s.class == 4 || s.class == 5)
}

/// The `<address>:` lines of Postfix's and qmail's text, each with the reason that follows
/// it: on the same line (Postfix) or on the lines up to the next blank line (qmail).
pub fn address_lines(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            open = false;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('<')
            && let Some((addr, after)) = rest.split_once(">:")
            && let Some(address) = bare_address(addr)
        {
            found.push((address, after.trim().to_string()));
            open = true;
        } else if open && let Some((_, reason)) = found.last_mut() {
            if !reason.is_empty() {
                reason.push(' ');
            }
            reason.push_str(trimmed);
        }
    }
    found
}

/// Exchange's `#550 5.1.1 …` lines, each with the address on the same or the nearest line
/// above it that names one.
pub fn exchange_codes(text: &str) -> Vec<(String, Status, String)> {
    let mut last_address: Option<String> = None;
    let mut found = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with(EXCHANGE_COPY) {
            break;
        }
        let on_line = trimmed.split_whitespace().find_map(bare_address);
        let coded = trimmed.contains('#').then(|| status_in(trimmed)).flatten();
        // Exchange repeats an address in several sections: its first code counts.
        let seen = |a: &String| {
            found
                .iter()
                .any(|(f, _, _): &(String, Status, String)| f == a)
        };
        match (coded, on_line.or_else(|| last_address.clone())) {
            (Some(status), Some(address)) if !seen(&address) => {
                found.push((address, status, trimmed.to_string()));
            }
            (None, Some(address)) if trimmed.contains('@') => last_address = Some(address),
            _ => {}
        }
    }
    found
}

/// The Message-ID in a block of returned headers.
pub fn headers_message_id(headers: &str) -> Option<String> {
    let parsed = MessageParser::default().parse_headers(headers.as_bytes())?;
    parsed.message_id().map(str::to_string)
}

/// The Message-ID of a returned message pasted into the text after qmail's or Exchange's line.
pub fn pasted_message_id(text: &str) -> Option<String> {
    [QMAIL_COPY, EXCHANGE_COPY].iter().find_map(|marker| {
        let (_, copy) = text.split_once(marker)?;
        headers_message_id(copy.trim_start())
    })
}
