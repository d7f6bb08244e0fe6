//! Which folder is a mailbox's Sent folder (`track_sent`). Pure: the IMAP session lists the
//! folders, this picks one. The profile's `sent_folder`, when named, wins (the admin knows); then
//! the folder the server marks `\Sent` (RFC 6154 SPECIAL-USE); then the first of the names
//! clients commonly use, in the order below, matched without regard to case. None when there
//! is no such folder: nothing is read (a new account may have sent nothing yet).

/// One folder of a LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFolder {
    pub name: String,
    /// The server marks it `\Sent`.
    pub sent: bool,
    /// `\Noselect` or `\NonExistent`: it cannot be opened.
    pub unselectable: bool,
}

/// Names mail clients and servers give the Sent folder, most common first.
pub const COMMON_NAMES: [&str; 8] = [
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "INBOX.Sent",
    "INBOX/Sent",
    "[Gmail]/Sent Mail",
    "Gesendete Elemente",
];

pub fn sent_folder(named: Option<&str>, listed: &[ListedFolder]) -> Option<String> {
    if let Some(name) = named {
        return Some(name.to_string());
    }
    // A name with a control character could not be sent back in EXAMINE (a hostile server's
    // literal): passed over rather than failing the mailbox's whole sync.
    let selectable = || {
        listed
            .iter()
            .filter(|f| !f.unselectable && !f.name.chars().any(char::is_control))
    };
    if let Some(f) = selectable().find(|f| f.sent) {
        return Some(f.name.clone());
    }
    COMMON_NAMES.iter().find_map(|common| {
        selectable()
            .find(|f| f.name.eq_ignore_ascii_case(common))
            .map(|f| f.name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, sent: bool) -> ListedFolder {
        ListedFolder {
            name: name.to_string(),
            sent,
            unselectable: false,
        }
    }

    #[test]
    fn the_profiles_sent_folder_wins() {
        let listed = [folder("Sent", true)];
        assert_eq!(
            sent_folder(Some("Outbox copies"), &listed).as_deref(),
            Some("Outbox copies")
        );
    }

    #[test]
    fn the_special_use_folder_comes_before_names() {
        let listed = [folder("Sent", false), folder("Envoyés", true)];
        assert_eq!(sent_folder(None, &listed).as_deref(), Some("Envoyés"));
    }

    #[test]
    fn without_special_use_the_first_common_name_in_any_case() {
        let listed = [
            folder("INBOX", false),
            folder("sent items", false),
            folder("INBOX.Sent", false),
        ];
        assert_eq!(sent_folder(None, &listed).as_deref(), Some("sent items"));
    }

    #[test]
    fn an_unselectable_folder_is_never_chosen() {
        let listed = [
            ListedFolder {
                unselectable: true,
                ..folder("Sent", true)
            },
            folder("INBOX.Sent", false),
        ];
        assert_eq!(sent_folder(None, &listed).as_deref(), Some("INBOX.Sent"));
    }

    #[test]
    fn a_name_that_cannot_be_sent_back_is_passed_over() {
        let listed = [
            folder("Sent\r\nA1 DELETE INBOX", true),
            folder("Sent Items", false),
        ];
        assert_eq!(sent_folder(None, &listed).as_deref(), Some("Sent Items"));
    }

    #[test]
    fn no_sent_folder_reads_nothing() {
        assert_eq!(sent_folder(None, &[folder("INBOX", false)]), None);
    }
}
