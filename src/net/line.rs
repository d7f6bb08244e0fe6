//! What may go into a protocol command line. A value that reaches a server inside a command
//! (an envelope address, a login name, a folder, a password in PASS) is refused whole when it
//! holds a control character: a CR or LF would end the command early and start one of the
//! attacker's (and desynchronise pipelined replies), a NUL is cut or refused differently by each
//! server. The value checked is exactly the value sent; the error names the field, never the
//! value (it may be a password).

/// The first control character in `value`: C0 (CR, LF, NUL, TAB, …), DEL and C1.
pub fn control_char(value: &str) -> Option<char> {
    value.chars().find(|c| c.is_control())
}

/// `value` cannot be sent in a command: it holds a control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} holds a control character ({}); it is not sent", describe(*found))]
pub struct UnsafeValue {
    pub field: String,
    pub found: char,
}

/// Refuses a value with a control character, naming `field`.
pub fn one_line(field: impl Into<String>, value: &str) -> Result<(), UnsafeValue> {
    match control_char(value) {
        None => Ok(()),
        Some(found) => Err(UnsafeValue {
            field: field.into(),
            found,
        }),
    }
}

/// The character's name as an admin reads it.
pub fn describe(c: char) -> String {
    match c {
        '\r' => "CR".into(),
        '\n' => "LF".into(),
        '\0' => "NUL".into(),
        '\t' => "TAB".into(),
        c => format!("U+{:04X}", u32::from(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_is_refused_and_named() {
        for (value, name) in [
            ("a@example.com\r\nRCPT TO:<b@example.com>", "CR"),
            ("a@example.com\n", "LF"),
            ("a@exam\0ple.com", "NUL"),
            ("INBOX\t", "TAB"),
            ("x\u{7f}", "U+007F"),
            ("x\u{85}", "U+0085"),
        ] {
            let e = one_line("RCPT TO", value).expect_err(value);
            assert_eq!(e.field, "RCPT TO");
            assert!(e.to_string().contains(name), "{e}");
            assert!(!e.to_string().contains("example"), "never the value: {e}");
        }
    }

    #[test]
    fn printable_values_pass_unicode_included() {
        for value in ["a@example.com", "Entwürfe", "user name", "\"quoted\" x", ""] {
            assert_eq!(one_line("f", value), Ok(()), "{value}");
        }
    }
}
