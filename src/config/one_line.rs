//! Config values that end up inside a server command (MAIL FROM, RCPT TO, LOGIN, USER/PASS,
//! SELECT, APPEND, the token request's scope): one with a control character is a mistake at its
//! key, reported with the others, never sent. The protocol layers refuse such values again
//! (`net::line`) for what the config does not hold (passwords from files, tokens). Values are
//! not quoted in the message: some of them are passwords.

use toml::Spanned;

use super::Validator;
use super::raw::RawConfig;
use crate::net::line::{control_char, describe};

impl Validator<'_> {
    pub(super) fn one_line_values(&mut self, raw: &RawConfig) {
        if let Some(a) = raw.appliance.as_ref().and_then(|a| a.alert_smtp.as_ref()) {
            let a = a.get_ref();
            self.one_line("alert_smtp.from", Some(&a.from));
            self.one_line("alert_smtp.username", a.username.as_ref());
            self.one_line("alert_smtp.password", a.password.as_ref());
        }
        for p in &raw.profile {
            for (key, value) in [
                ("owner_email", &p.owner_email),
                ("incoming_username", &p.incoming_username),
                ("incoming_password", &p.incoming_password),
                ("outgoing_username", &p.outgoing_username),
                ("outgoing_password", &p.outgoing_password),
                ("sent_folder", &p.sent_folder),
                ("oauth_client_id", &p.oauth_client_id),
                ("oauth_client_secret", &p.oauth_client_secret),
                ("oauth_scope", &p.oauth_scope),
            ] {
                self.one_line(key, value.as_ref());
            }
        }
        for m in &raw.mailbox {
            self.one_line("email_address", Some(&m.email_address));
            self.one_line("username", m.username.as_ref());
            self.one_line("password", m.password.as_ref());
            self.one_line("refresh_token", m.refresh_token.as_ref());
            if let Some(folders) = &m.tracking_folders {
                for f in folders.get_ref() {
                    self.one_line_at("tracking_folders", folders, f);
                }
            }
            for tf in m.tracking_folder.iter().flatten() {
                self.one_line("tracking_folder.folder", Some(&tf.get_ref().folder));
            }
        }
    }

    fn one_line(&mut self, key: &str, value: Option<&Spanned<String>>) {
        if let Some(v) = value {
            self.one_line_at(key, v, v.get_ref());
        }
    }

    fn one_line_at<T>(&mut self, key: &str, place: &Spanned<T>, value: &str) {
        if let Some(c) = control_char(value) {
            self.at(
                place,
                format!(
                    "{key} holds a control character ({}); it would go into a server command \
                     as is: remove it",
                    describe(c)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// Each mistake as `LINE:COL: message`.
    fn mistakes(text: &str) -> Vec<String> {
        match Config::parse_with(Path::new("/etc/sidesync/sidesync.toml"), text, true) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e
                .errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
                .collect(),
        }
    }

    const PROFILE: &str = "[[profile]]\nname = \"corp\"\nis_default = true\n\
                           incoming_server_location = \"imap.example.com\"\n";

    #[test]
    fn a_control_character_in_a_wire_bound_value_is_refused_at_its_key() {
        for (key, table, value, line) in [
            ("email_address", "mailbox", r#""a@example.com\r\nRSET""#, 6),
            ("username", "mailbox", r#""alice\nA1 LOGOUT""#, 6),
            ("password", "mailbox", r#""pw\u0000x""#, 6),
            ("incoming_username", "profile", r#""corp\r""#, 5),
            ("outgoing_username", "profile", r#""corp\t""#, 5),
            ("sent_folder", "profile", r#""Sent\r\nA2 DELETE INBOX""#, 5),
            ("owner_email", "profile", r#""boss@example.com\n""#, 5),
            ("oauth_scope", "profile", r#""mail\u007f""#, 5),
        ] {
            let (profile_extra, mailbox_extra) = match table {
                "profile" => (format!("{key} = {value}\n"), String::new()),
                _ => (String::new(), format!("{key} = {value}\n")),
            };
            let mailbox = if key == "email_address" {
                format!("[[mailbox]]\n{mailbox_extra}password = \"x\"\n")
            } else {
                format!(
                    "[[mailbox]]\nemail_address = \"a@example.com\"\npassword_env = \"P\"\n{mailbox_extra}"
                )
            };
            let text = format!("{PROFILE}{profile_extra}{mailbox}");
            let found = mistakes(&text);
            let wanted = format!("{key} holds a control character");
            let hit = found
                .iter()
                .find(|m| m.contains(&wanted))
                .unwrap_or_else(|| panic!("{key}: {found:?}\n{text}"));
            let at_line = text
                .lines()
                .position(|l| l.starts_with(&format!("{key} =")))
                .map(|i| i + 1);
            assert!(
                hit.starts_with(&format!("{}:", at_line.unwrap_or(line))),
                "{key}: {hit}"
            );
            assert!(!hit.contains("RSET") && !hit.contains("pw"), "{hit}");
        }
    }

    #[test]
    fn tracking_folders_and_alert_smtp_are_checked_too() {
        let text = format!(
            "[appliance]\n[appliance.alert_smtp]\nserver_location = \"smtp.example.com\"\n\
             from = \"alerts@example.com\\r\\n\"\n{PROFILE}[[mailbox]]\n\
             email_address = \"a@example.com\"\npassword_env = \"P\"\n\
             tracking_folders = [\"CRM\", \"Deals\\nA3 LOGOUT\"]\n"
        );
        let found = mistakes(&text);
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("4:") && m.contains("alert_smtp.from holds")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("12:") && m.contains("tracking_folders holds")),
            "{found:?}"
        );
    }

    #[test]
    fn plain_values_pass() {
        let text = format!(
            "{PROFILE}sent_folder = \"Gesendete Objekte\"\n[[mailbox]]\n\
             email_address = \"a@example.com\"\npassword = \"p w\"\ntracking_folders = [\"Entwürfe\"]\n"
        );
        assert!(
            Config::parse_with(Path::new("/x.toml"), &text, true).is_ok(),
            "{text}"
        );
    }
}
