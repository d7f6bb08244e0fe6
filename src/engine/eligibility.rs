//! Whether a mailbox is processed, and if not, the reason `/status` shows (M3, M5).

use std::fmt;

use crate::config::{Approval, Config, IncomingDelivery, Mailbox, Profile, ServerType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotProcessed {
    MailboxInactive,
    NoProfile,
    ProfileInactive(String),
    NotApproved(Approval),
    IncomingDeliveryNone,
    ForwardMailboxUnsupported,
    Pop3Unsupported,
}

impl fmt::Display for NotProcessed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotProcessed::MailboxInactive => write!(f, "the mailbox is inactive (active = false)"),
            NotProcessed::NoProfile => {
                write!(
                    f,
                    "the mailbox has no email server profile and there is no default profile"
                )
            }
            NotProcessed::ProfileInactive(p) => {
                write!(f, "its email server profile \"{p}\" is inactive")
            }
            NotProcessed::NotApproved(a) => write!(
                f,
                "the mailbox is not approved (approval = \"{}\"); approve it or set \
                 process_unapproved_mailboxes = true",
                a.as_str()
            ),
            NotProcessed::IncomingDeliveryNone => write!(f, "incoming delivery is none"),
            NotProcessed::ForwardMailboxUnsupported => {
                write!(
                    f,
                    "incoming delivery \"forward_mailbox\" is not available in this version"
                )
            }
            NotProcessed::Pop3Unsupported => {
                write!(f, "POP3 incoming is not available in this version")
            }
        }
    }
}

impl NotProcessed {
    pub fn code(&self) -> &'static str {
        match self {
            NotProcessed::MailboxInactive => "mailbox_inactive",
            NotProcessed::NoProfile => "no_profile",
            NotProcessed::ProfileInactive(_) => "profile_inactive",
            NotProcessed::NotApproved(_) => "not_approved",
            NotProcessed::IncomingDeliveryNone => "incoming_delivery_none",
            NotProcessed::ForwardMailboxUnsupported => "forward_mailbox_unsupported",
            NotProcessed::Pop3Unsupported => "pop3_unsupported",
        }
    }
}

/// The profile a mailbox syncs incoming email through, or why it does not.
pub fn incoming_profile<'c>(
    config: &'c Config,
    mailbox: &Mailbox,
) -> Result<&'c Profile, NotProcessed> {
    if !mailbox.active {
        return Err(NotProcessed::MailboxInactive);
    }
    let profile = config
        .mailbox_profile(mailbox)
        .ok_or(NotProcessed::NoProfile)?;
    if !profile.active {
        return Err(NotProcessed::ProfileInactive(profile.name.clone()));
    }
    if mailbox.approval != Approval::Approved && !config.appliance.process_unapproved_mailboxes {
        return Err(NotProcessed::NotApproved(mailbox.approval));
    }
    match mailbox.incoming_delivery {
        IncomingDelivery::None => return Err(NotProcessed::IncomingDeliveryNone),
        IncomingDelivery::ForwardMailbox => return Err(NotProcessed::ForwardMailboxUnsupported),
        IncomingDelivery::ServerSideSync => {}
    }
    if profile.server_type == ServerType::Pop3Smtp {
        return Err(NotProcessed::Pop3Unsupported);
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra_profile: &str, mailbox: &str) -> Config {
        let text = format!(
            "[[profile]]\nname = \"p\"\nincoming_server_location = \"h\"\n{extra_profile}\n\
             [[mailbox]]\nemail_address = \"a@x\"\npassword = \"pw\"\n{mailbox}\n"
        );
        Config::parse(Path::new("t.toml"), &text).expect("valid")
    }

    fn reason(extra_profile: &str, mailbox: &str) -> Result<(), NotProcessed> {
        let c = config(extra_profile, mailbox);
        incoming_profile(&c, &c.mailboxes[0]).map(|_| ())
    }

    #[test]
    fn each_reason() {
        let ok = "profile = \"p\"\napproval = \"approved\"";
        assert_eq!(reason("", ok), Ok(()));
        assert_eq!(
            reason("", "approval = \"approved\""),
            Err(NotProcessed::NoProfile)
        );
        assert_eq!(
            reason("is_default = true", "approval = \"approved\""),
            Ok(())
        );
        assert_eq!(
            reason("active = false", ok),
            Err(NotProcessed::ProfileInactive("p".into()))
        );
        assert_eq!(
            reason("", &format!("{ok}\nactive = false")),
            Err(NotProcessed::MailboxInactive)
        );
        assert_eq!(
            reason("", "profile = \"p\"\napproval = \"pending_approval\""),
            Err(NotProcessed::NotApproved(Approval::PendingApproval))
        );
        assert_eq!(
            reason("", "profile = \"p\""),
            Err(NotProcessed::NotApproved(Approval::Empty))
        );
        assert_eq!(
            reason("", &format!("{ok}\nincoming_delivery = \"none\"")),
            Err(NotProcessed::IncomingDeliveryNone)
        );
        assert_eq!(
            reason("server_type = \"pop3_smtp\"", ok),
            Err(NotProcessed::Pop3Unsupported)
        );
    }

    #[test]
    fn unapproved_mailboxes_run_when_the_appliance_says_so() {
        let mut c = config("", "profile = \"p\"");
        c.appliance.process_unapproved_mailboxes = true;
        assert!(incoming_profile(&c, &c.mailboxes[0]).is_ok());
    }
}
