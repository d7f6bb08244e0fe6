//! The parties of an email (sender, recipients) resolved to records: a tracked mailbox first
//! (`user:` or `queue:`), then known contacts in Dynamics' order — contact, account, lead, then
//! any other record type — so an address that is both a contact and a lead is the contact.

use serde::{Deserialize, Serialize};

use super::message::EmailHeaders;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    From,
    To,
    Cc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub role: Role,
    /// Lower case.
    pub address: String,
    /// The record it resolved to (`contact:42`, `user:a@example.com`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// The bare address of "Name <addr>" or "addr", lower case; None when there is no `@`.
pub fn bare_address(entry: &str) -> Option<String> {
    let inner = match (entry.rfind('<'), entry.rfind('>')) {
        (Some(a), Some(b)) if a < b => &entry[a + 1..b],
        _ => entry,
    };
    let inner = inner.trim();
    (inner.contains('@') && !inner.contains(char::is_whitespace)).then(|| inner.to_lowercase())
}

/// A record reference is `type:id`: a type of lower-case letters, digits and `_`, then an id of
/// printable characters; 200 characters at most.
pub fn check_record(record: &str) -> Result<(), String> {
    let r = record.trim();
    let Some((kind, id)) = r.split_once(':') else {
        return Err(format!(
            "\"{r}\" is not a record reference like \"account:contoso\" (type:id)"
        ));
    };
    if r.chars().count() > 200 {
        return Err("is longer than 200 characters".to_string());
    }
    if kind.is_empty()
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "\"{r}\": the record type must be lower-case letters, digits or _ (like \"account\")"
        ));
    }
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(format!(
            "\"{r}\": the record id must be printable and not empty"
        ));
    }
    Ok(())
}

/// Where record types rank when one address maps to several.
fn rank(record: &str) -> u8 {
    match record.split_once(':').map_or(record, |(t, _)| t) {
        "user" | "queue" => 0,
        "contact" => 1,
        "account" => 2,
        "lead" => 3,
        _ => 4,
    }
}

/// The record an address resolves to, from the tracked mailbox it is (if any) and its known
/// contact records: the best ranked, ties broken by the text so the answer never depends on order.
pub fn resolve(mailbox_record: Option<String>, contact_records: &[String]) -> Option<String> {
    if mailbox_record.is_some() {
        return mailbox_record;
    }
    contact_records
        .iter()
        .min_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)))
        .cloned()
}

/// Every address of the header once, in the first role it appears in (From, then To, then Cc),
/// resolved by `record_of`.
pub fn parties(
    headers: &EmailHeaders,
    mut record_of: impl FnMut(&str) -> Option<String>,
) -> Vec<Party> {
    let mut out: Vec<Party> = Vec::new();
    let roles = [
        (Role::From, &headers.from),
        (Role::To, &headers.to),
        (Role::Cc, &headers.cc),
    ];
    for (role, list) in roles {
        for entry in list {
            let Some(address) = bare_address(entry) else {
                continue;
            };
            if out.iter().any(|p| p.address == address) {
                continue;
            }
            let record = record_of(&address);
            out.push(Party {
                role,
                address,
                record,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_bare_and_lower_case() {
        assert_eq!(
            bare_address("Carol <Carol@Example.ORG>").as_deref(),
            Some("carol@example.org")
        );
        assert_eq!(bare_address("a@x").as_deref(), Some("a@x"));
        assert_eq!(bare_address("undisclosed-recipients"), None);
        assert_eq!(bare_address("<>"), None);
    }

    #[test]
    fn record_references_are_checked() {
        assert!(check_record("account:contoso").is_ok());
        assert!(check_record("contact:42").is_ok());
        assert!(check_record("opportunity:7-Ab c").is_ok());
        for bad in [
            "contoso",
            ":42",
            "Account:1",
            "contact:",
            "contact:a\nb",
            &format!("a:{}", "x".repeat(200)),
        ] {
            assert!(check_record(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolution_order_is_user_contact_account_lead_other() {
        let recs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve(
                Some("user:a@x".into()),
                &recs(&["contact:1", "account:contoso"])
            )
            .as_deref(),
            Some("user:a@x")
        );
        assert_eq!(
            resolve(None, &recs(&["lead:9", "account:contoso", "contact:42"])).as_deref(),
            Some("contact:42")
        );
        assert_eq!(
            resolve(None, &recs(&["lead:9", "account:contoso"])).as_deref(),
            Some("account:contoso")
        );
        assert_eq!(
            resolve(None, &recs(&["partner:7", "lead:9"])).as_deref(),
            Some("lead:9")
        );
        assert_eq!(
            resolve(None, &recs(&["partner:b", "partner:a"])).as_deref(),
            Some("partner:a")
        );
        assert_eq!(resolve(None, &[]), None);
    }

    #[test]
    fn each_address_once_in_its_first_role() {
        let h = EmailHeaders {
            from: vec!["Carol <carol@example.org>".into()],
            to: vec!["a@x".into(), "CAROL@example.org".into(), "b@x".into()],
            cc: vec!["b@x".into(), "c@x".into(), "team".into()],
            ..EmailHeaders::default()
        };
        let p = parties(&h, |a| (a == "c@x").then(|| "contact:c".to_string()));
        let got: Vec<(Role, &str, Option<&str>)> = p
            .iter()
            .map(|p| (p.role, p.address.as_str(), p.record.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Role::From, "carol@example.org", None),
                (Role::To, "a@x", None),
                (Role::To, "b@x", None),
                (Role::Cc, "c@x", Some("contact:c")),
            ]
        );
    }
}
