//! `track_sent` (profile and mailbox): whether a mailbox's Sent folder is read, so that email its
//! user sends from their own client is tracked as outgoing (issue 26, point 4). Off unless asked
//! for: a Sent folder holds everything a user ever wrote, and Dynamics reads only the Inbox. The
//! mailbox's own value wins over its profile's. POP3 has no Sent folder, and a forward mailbox
//! sends nothing: both are errors at the key.

use super::raw::{RawMailbox, RawProfile};
use super::{Profile, ServerType, Validator};

impl Validator<'_> {
    /// The profile's default for its mailboxes; None when it says nothing.
    pub(super) fn profile_track_sent(
        &mut self,
        rp: &RawProfile,
        name: &str,
        server_type: ServerType,
    ) -> Option<bool> {
        let value = rp.track_sent.as_ref()?;
        if *value.get_ref() && server_type == ServerType::Pop3Smtp {
            self.at(value, pop3_has_none(&format!("profile \"{name}\"")));
            return Some(false);
        }
        Some(*value.get_ref())
    }

    /// Whether the mailbox's Sent folder is read, and the folder named by its profile's
    /// `sent_folder` (read as the Sent folder without looking for one).
    pub(super) fn mailbox_track_sent(
        &mut self,
        rm: &RawMailbox,
        email_address: &str,
        profile: Option<&Profile>,
    ) -> (bool, Option<String>) {
        let own = rm.track_sent.as_ref();
        let wanted = match own {
            Some(v) => *v.get_ref(),
            None => profile.and_then(|p| p.track_sent).unwrap_or(false),
        };
        if !wanted {
            return (false, None);
        }
        if profile.is_some_and(|p| p.server_type == ServerType::Pop3Smtp) {
            // The profile's own key is reported at the profile; only the mailbox's here.
            if let Some(v) = own {
                self.at(v, pop3_has_none(&format!("mailbox {email_address}")));
            }
            return (false, None);
        }
        if rm.forward_mailbox.as_ref().is_some_and(|f| *f.get_ref()) {
            if let Some(v) = own {
                self.at(
                    v,
                    format!(
                        "mailbox {email_address}: track_sent does not apply to a forward mailbox \
                         (it sends nothing; its users' own mailboxes track what they send)"
                    ),
                );
            }
            return (false, None);
        }
        let named = profile
            .filter(|p| p.sent_folder_named)
            .map(|p| p.sent_folder.clone());
        (true, named)
    }
}

fn pop3_has_none(who: &str) -> String {
    format!(
        "{who}: track_sent = true needs IMAP folders; a POP3 maildrop has no Sent folder \
         (track what its users send by sending through sidesync, or use an IMAP profile)"
    )
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    use super::super::test_fixture::two_mailboxes as parse;

    fn sent(c: &Config) -> Vec<(bool, Option<&str>)> {
        c.mailboxes
            .iter()
            .map(|m| (m.track_sent, m.sent_folder.as_deref()))
            .collect()
    }

    #[test]
    fn off_unless_asked_for() {
        let c = parse("", "").expect("valid");
        assert_eq!(sent(&c), [(false, None), (false, None)]);
    }

    #[test]
    fn a_mailbox_value_wins_over_its_profiles() {
        let c = parse("track_sent = true", "track_sent = false").expect("valid");
        assert_eq!(sent(&c), [(false, None), (true, None)]);
        let c = parse("", "track_sent = true").expect("valid");
        assert_eq!(sent(&c), [(true, None), (false, None)]);
    }

    #[test]
    fn the_profiles_sent_folder_names_the_folder_read() {
        let c = parse("sent_folder = \"Sent Items\"", "track_sent = true").expect("valid");
        assert_eq!(sent(&c)[0], (true, Some("Sent Items")));
    }

    #[test]
    fn changing_it_needs_no_new_test() {
        let a = parse("", "").expect("valid");
        let b = parse("track_sent = true", "").expect("valid");
        for (x, y) in a.mailboxes.iter().zip(&b.mailboxes) {
            assert_eq!(x.fingerprint, y.fingerprint, "{}", x.email_address);
        }
    }

    #[test]
    fn pop3_has_no_sent_folder_an_error_at_each_key() {
        let e = parse(
            "server_type = \"pop3_smtp\"\ntrack_sent = true",
            "track_sent = true",
        )
        .expect_err("refused");
        let found: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("/etc/sidesync/sidesync.toml:10:14: profile \"corp\": track_sent"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("/etc/sidesync/sidesync.toml:15:14: mailbox alice@example.com"),
            "{found:?}"
        );
        assert!(found[1].contains("no Sent folder"), "{found:?}");
    }

    #[test]
    fn a_forward_mailbox_sends_nothing() {
        let e = parse("", "forward_mailbox = true\ntrack_sent = true").expect_err("refused");
        assert!(
            e.to_string()
                .contains("track_sent does not apply to a forward mailbox"),
            "{e}"
        );
    }
}
