//! Delivery status notification requests (RFC 3461) on the envelope, where the server offers
//! DSN in EHLO: `RET=HDRS ENVID=<outbox id>` on MAIL FROM and `NOTIFY=FAILURE,DELAY` on each
//! RCPT TO. The report that comes back then carries the outbox id (`Original-Envelope-Id`) and
//! the returned headers with the Message-ID, which is how `outbox::bounce_match` finds the
//! email it is about. Only headers are asked back: the content is already in the store.

use crate::net::line::{UnsafeValue, one_line};

/// RFC 3461 §4.4: an ENVID is at most 100 characters (after xtext encoding).
const ENVID_MAX: usize = 100;

/// What the envelope's commands get appended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnParams {
    /// After `MAIL FROM:<…>`, with its leading space, or empty.
    pub mail: String,
    /// After each `RCPT TO:<…>`, with its leading space, or empty.
    pub rcpt: &'static str,
}

impl DsnParams {
    /// The parameters for a server that `offered` DSN. The envelope id must be one line (it
    /// goes into a command); one too long once encoded is left out rather than refused,
    /// because the report can still be matched by its Message-ID.
    pub fn new(offered: bool, envelope_id: Option<&str>) -> Result<DsnParams, UnsafeValue> {
        if let Some(id) = envelope_id {
            one_line("ENVID", id)?;
        }
        if !offered {
            // Without the DSN extension the parameters are a syntax error (RFC 5321 §4.1.1.11).
            return Ok(DsnParams::default());
        }
        let mut mail = " RET=HDRS".to_string();
        if let Some(id) = envelope_id.map(xtext).filter(|x| x.len() <= ENVID_MAX) {
            mail.push_str(" ENVID=");
            mail.push_str(&id);
        }
        Ok(DsnParams {
            mail,
            rcpt: " NOTIFY=FAILURE,DELAY",
        })
    }
}

/// RFC 3461 §4 xtext: printable ASCII except `+` and `=` as is, every other byte `+XX`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encodes_plus_equals_space_and_non_ascii() {
        assert_eq!(xtext("42"), "42");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("é"), "+C3+A9");
    }

    #[test]
    fn a_server_offering_dsn_gets_ret_envid_and_notify() {
        let p = DsnParams::new(true, Some("42")).expect("one line");
        assert_eq!(p.mail, " RET=HDRS ENVID=42");
        assert_eq!(p.rcpt, " NOTIFY=FAILURE,DELAY");
    }

    #[test]
    fn a_server_without_dsn_gets_nothing() {
        assert_eq!(DsnParams::new(false, Some("42")), Ok(DsnParams::default()));
    }

    #[test]
    fn an_envelope_id_with_a_line_end_is_refused_even_without_dsn() {
        for offered in [true, false] {
            let e = DsnParams::new(offered, Some("42\r\nRCPT TO:<x@y>")).expect_err("refused");
            assert_eq!(e.field, "ENVID");
        }
    }

    #[test]
    fn an_envelope_id_too_long_once_encoded_is_left_out() {
        let p = DsnParams::new(true, Some(&"+".repeat(40))).expect("one line");
        assert_eq!(p.mail, " RET=HDRS", "120 characters encoded");
    }
}
