//! `skip_automatic` (profile and mailbox): the automatic kinds a mailbox skips whatever its
//! `track` says. Every word that is not a kind is an error at its own place.

use toml::Spanned;

use super::Validator;
use crate::tracking::automatic::{Automatic, AutomaticSet};

impl Validator<'_> {
    pub(super) fn skip_automatic(&mut self, kinds: &Spanned<Vec<Spanned<String>>>) -> AutomaticSet {
        let mut set = AutomaticSet::default();
        for word in kinds.get_ref() {
            match Automatic::parse(word.get_ref().trim()) {
                Some(kind) => set.insert(kind),
                None => self.at(
                    word,
                    format!(
                        "skip_automatic: \"{}\" is not one of {}",
                        word.get_ref(),
                        Automatic::ALL
                            .iter()
                            .map(|k| format!("\"{}\"", k.as_str()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use crate::tracking::automatic::{Automatic, AutomaticSet};

    use super::super::test_fixture::two_mailboxes as parse;

    fn set(kinds: &[Automatic]) -> AutomaticSet {
        kinds.iter().copied().collect()
    }

    #[test]
    fn nothing_is_skipped_by_default() {
        let c = parse("", "").expect("valid");
        assert!(c.mailboxes.iter().all(|m| m.skip_automatic.is_empty()));
    }

    #[test]
    fn a_profile_list_applies_to_its_mailboxes() {
        let c = parse("skip_automatic = [\"list\", \"auto_reply\"]", "").expect("valid");
        let want = set(&[Automatic::List, Automatic::AutoReply]);
        assert!(c.mailboxes.iter().all(|m| m.skip_automatic == want));
        assert_eq!(
            c.directory().mailboxes["sales@example.com"].skip_automatic,
            want,
            "other mailboxes' filters know it"
        );
    }

    #[test]
    fn a_mailbox_list_replaces_its_profiles() {
        let c = parse(
            "skip_automatic = [\"list\", \"auto_reply\"]",
            "skip_automatic = [\"bounce\"]",
        )
        .expect("valid");
        assert_eq!(c.mailboxes[0].skip_automatic, set(&[Automatic::Bounce]));
        assert_eq!(
            c.mailboxes[1].skip_automatic,
            set(&[Automatic::List, Automatic::AutoReply])
        );
        let c = parse("skip_automatic = [\"list\"]", "skip_automatic = []").expect("valid");
        assert!(c.mailboxes[0].skip_automatic.is_empty(), "[] skips nothing");
    }

    #[test]
    fn every_kind_is_a_word() {
        let c = parse(
            "",
            "skip_automatic = [\"list\", \"bulk\", \"auto_reply\", \"bounce\", \"auto_submitted\"]",
        )
        .expect("valid");
        assert_eq!(
            c.mailboxes[0].skip_automatic.kinds().collect::<Vec<_>>(),
            Automatic::ALL.to_vec()
        );
    }

    #[test]
    fn a_word_that_is_no_kind_is_an_error_at_its_place() {
        let e = parse(
            "skip_automatic = [\"lists\"]",
            "skip_automatic = [\"bounce\", \"noise\"]",
        )
        .expect_err("refused");
        let found: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("/etc/sidesync/sidesync.toml:9:19: skip_automatic: \"lists\""),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("/etc/sidesync/sidesync.toml:14:29: skip_automatic: \"noise\""),
            "{found:?}"
        );
        assert!(found[1].contains("\"auto_submitted\""), "{found:?}");
        let e = parse("", "skip_automatic = \"list\"").expect_err("not a list");
        assert_eq!(e.errors[0].line, 14, "{e}");
    }

    #[test]
    fn changing_what_is_skipped_needs_no_new_test() {
        let a = parse("", "").expect("valid");
        let b = parse("skip_automatic = [\"bulk\"]", "skip_automatic = [\"list\"]").expect("valid");
        for (x, y) in a.mailboxes.iter().zip(&b.mailboxes) {
            assert_eq!(x.fingerprint, y.fingerprint, "{}", x.email_address);
        }
    }

    #[test]
    fn a_forward_mailbox_has_no_list_of_its_own() {
        let e =
            parse("", "forward_mailbox = true\nskip_automatic = [\"list\"]").expect_err("refused");
        assert!(
            e.to_string().contains("no skip_automatic of its own"),
            "{e}"
        );
    }
}
