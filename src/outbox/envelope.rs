//! The envelope addresses of an outbox email (MAIL FROM, RCPT TO), as they will be sent. Each is
//! checked in the form that goes on the wire: spaces around it are cut first, then anything left
//! that is not a plain address is refused. A control character anywhere (a trailing CR LF
//! included) is refused, not trimmed: `"a@example.com\r\n"` passed a trimmed check and then went
//! out untrimmed, ending RCPT TO early and desynchronising the pipelined replies.

use super::request::RequestError;
use crate::net::line::{control_char, describe};

/// The address to send for `value` (field `field`, e.g. `to[2]`), or why it cannot be.
pub fn envelope_address(field: &str, value: &str) -> Result<String, RequestError> {
    if let Some(c) = control_char(value) {
        return Err(RequestError {
            field: field.to_string(),
            message: format!(
                "an address holds a control character ({}); it is not sent",
                describe(c)
            ),
        });
    }
    let sent = value.trim_matches(' ');
    if !address_ok(sent) {
        return Err(RequestError {
            field: field.to_string(),
            message: format!("\"{}\" is not an email address", value.escape_debug()),
        });
    }
    Ok(sent.to_string())
}

/// `local@domain`, one `@`, nothing an SMTP path or a header list could read as a separator.
fn address_ok(a: &str) -> bool {
    a.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !a.contains(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',')
}

/// Every address of a list field, named `field[i]`, as it will be sent.
pub fn envelope_list(field: &str, list: &[String]) -> Result<Vec<String>, RequestError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| envelope_address(&format!("{field}[{i}]"), a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_address_is_sent_as_given_spaces_cut() {
        assert_eq!(
            envelope_address("to[0]", "a@example.com").as_deref(),
            Ok("a@example.com")
        );
        assert_eq!(
            envelope_address("to[0]", "  a@example.com ").as_deref(),
            Ok("a@example.com")
        );
    }

    #[test]
    fn an_injected_rcpt_is_refused_naming_the_field() {
        let e = envelope_address("to[1]", "a@example.com\r\nRCPT TO:<b@example.com>")
            .expect_err("injection");
        assert_eq!(e.field, "to[1]");
        assert!(e.message.contains("CR"), "{e}");
    }

    #[test]
    fn trailing_line_ends_and_other_controls_are_refused_not_trimmed() {
        for v in [
            "a@example.com\r\n",
            "a@example.com\n",
            "a@example.com\r",
            "a@example.com \r\n",
            "a@example.com\t",
            "\r\na@example.com",
            "a@exa\0mple.com",
            "a@example.com\u{7f}",
        ] {
            let e = envelope_address("bcc[0]", v).expect_err(v);
            assert_eq!(e.field, "bcc[0]", "{v:?}");
            assert!(e.message.contains("control character"), "{v:?}: {e}");
        }
    }

    #[test]
    fn what_is_not_an_address_is_refused() {
        for v in [
            "", "nobody", "a@b@c", "<a@b>", "a b@c", "a@b,c@d", "@b", "a@",
        ] {
            let e = envelope_address("from", v).expect_err(v);
            assert!(e.message.contains("is not an email address"), "{v:?}: {e}");
        }
    }

    #[test]
    fn lists_name_each_entry() {
        let list = vec!["a@x.org".to_string(), "b@y.org\n".to_string()];
        assert_eq!(envelope_list("cc", &list).expect_err("b").field, "cc[1]");
        assert_eq!(
            envelope_list("cc", &list[..1]),
            Ok(vec!["a@x.org".to_string()])
        );
    }
}
