//! Whether a mailbox is processed, and if not, the reason `/status` shows (M3, M5, M8).
//! Pure: config, the mailbox's stored state and its config fingerprint in; a decision out.

use std::fmt;

use super::state::{Enablement, MailboxState};
use crate::config::{Approval, Config, IncomingDelivery, Mailbox, OutgoingDelivery, Profile};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotProcessed {
    MailboxInactive,
    NoProfile,
    ProfileInactive(String),
    NotApproved(Approval),
    IncomingDeliveryNone,
    ThroughForwardMailbox,
    /// Its sealed password (or its profile's) did not open.
    SecretUnreadable(String),
    /// A permanent error (or too many transient ones) turned incoming off.
    Disabled {
        code: String,
        reason: String,
    },
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
            NotProcessed::ThroughForwardMailbox => write!(
                f,
                "its email arrives through the forward mailbox (incoming_delivery = \
                 \"forward_mailbox\"); the mailbox itself is not polled"
            ),
            NotProcessed::SecretUnreadable(why) => write!(
                f,
                "{why}; write the password again (sidesync secret encrypt) or restore the key file"
            ),
            NotProcessed::Disabled { reason, .. } => write!(
                f,
                "incoming is disabled after an error: {reason}. Fix the cause, then run Test & Enable \
                 (sidesync test, or POST /api/v1/mailboxes/ADDRESS/test) or change the config"
            ),
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
            NotProcessed::ThroughForwardMailbox => "through_forward_mailbox",
            NotProcessed::SecretUnreadable(_) => "secret_unreadable",
            NotProcessed::Disabled { .. } => "disabled",
        }
    }
}

/// What the scheduler does with a mailbox now.
#[derive(Debug, Clone)]
pub enum Decision<'c> {
    Sync(&'c Profile),
    /// Never tested, or tested under another config: Test & Enable first (M4).
    TestFirst(&'c Profile),
    NotProcessed(NotProcessed),
}

/// The approval in force: an API override wins while the config still says what it said then.
pub fn effective_approval(configured: Approval, state: &MailboxState) -> Approval {
    match &state.approval_override {
        Some(o) if o.config_approval == configured.as_str() => {
            Approval::parse(&o.approval).unwrap_or(configured)
        }
        _ => configured,
    }
}

/// The checks that do not depend on tests: the profile a mailbox would sync through, or why not.
pub fn incoming_profile<'c>(
    config: &'c Config,
    mailbox: &Mailbox,
    state: &MailboxState,
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
    if let Some(why) = mailbox
        .secret_error
        .as_ref()
        .or(profile.secret_error.as_ref())
    {
        return Err(NotProcessed::SecretUnreadable(why.clone()));
    }
    let approval = effective_approval(mailbox.approval, state);
    if approval != Approval::Approved && !config.appliance.process_unapproved_mailboxes {
        return Err(NotProcessed::NotApproved(approval));
    }
    match mailbox.incoming_delivery {
        IncomingDelivery::None => return Err(NotProcessed::IncomingDeliveryNone),
        IncomingDelivery::ForwardMailbox => return Err(NotProcessed::ThroughForwardMailbox),
        IncomingDelivery::ServerSideSync => {}
    }
    Ok(profile)
}

pub fn incoming_decision<'c>(
    config: &'c Config,
    mailbox: &Mailbox,
    state: &MailboxState,
    fingerprint: &str,
) -> Decision<'c> {
    let profile = match incoming_profile(config, mailbox, state) {
        Ok(p) => p,
        Err(r) => return Decision::NotProcessed(r),
    };
    // A changed config voids the stored test result: test again.
    if state.config_fingerprint.as_deref() != Some(fingerprint) {
        return Decision::TestFirst(profile);
    }
    match &state.incoming_enablement {
        Enablement::NotTested => Decision::TestFirst(profile),
        Enablement::Enabled => Decision::Sync(profile),
        Enablement::Disabled { code, reason, .. } => {
            Decision::NotProcessed(NotProcessed::Disabled {
                code: code.clone(),
                reason: reason.clone(),
            })
        }
    }
}

/// Why a mailbox's queued email waits (it stays Pending Send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSending {
    NoProfile,
    Inactive,
    OutgoingDeliveryNone,
    NoOutgoingServer,
    NotApproved,
    SecretUnreadable,
}

impl fmt::Display for NotSending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotSending::NoProfile => "the mailbox has no profile",
            NotSending::Inactive => "the mailbox or its profile is inactive",
            NotSending::OutgoingDeliveryNone => "outgoing delivery is none",
            NotSending::NoOutgoingServer => "the profile has no outgoing server",
            NotSending::NotApproved => "the mailbox is not approved",
            NotSending::SecretUnreadable => "its sealed password cannot be read",
        })
    }
}

/// The profile a mailbox sends through, or why its email waits. The same approval rule as
/// incoming ([`effective_approval`]); enablement is the send job's business (a disabled
/// direction is found when the session fails to open).
pub fn outgoing_profile<'c>(
    config: &'c Config,
    mailbox: &Mailbox,
    state: &MailboxState,
) -> Result<&'c Profile, NotSending> {
    let profile = config
        .mailbox_profile(mailbox)
        .ok_or(NotSending::NoProfile)?;
    if !mailbox.active || !profile.active {
        return Err(NotSending::Inactive);
    }
    if mailbox.outgoing_delivery != OutgoingDelivery::ServerSideSync {
        return Err(NotSending::OutgoingDeliveryNone);
    }
    if mailbox.secret_error.is_some() || profile.secret_error.is_some() {
        return Err(NotSending::SecretUnreadable);
    }
    if profile.outgoing.is_none() {
        return Err(NotSending::NoOutgoingServer);
    }
    if effective_approval(mailbox.approval, state) != Approval::Approved
        && !config.appliance.process_unapproved_mailboxes
    {
        return Err(NotSending::NotApproved);
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state::ApprovalOverride;
    use std::path::Path;

    fn config(extra_profile: &str, mailbox: &str) -> Config {
        let text = format!(
            "[[profile]]\nname = \"p\"\nincoming_server_location = \"h\"\n{extra_profile}\n\
             [[mailbox]]\nemail_address = \"a@x\"\npassword = \"pw\"\n{mailbox}\n"
        );
        Config::parse_allowing_plaintext(Path::new("t.toml"), &text).expect("valid")
    }

    fn reason(extra_profile: &str, mailbox: &str) -> Result<(), NotProcessed> {
        let c = config(extra_profile, mailbox);
        incoming_profile(&c, &c.mailboxes[0], &MailboxState::default()).map(|_| ())
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
        assert!(
            reason("server_type = \"pop3_smtp\"", ok).is_ok(),
            "POP3 mailboxes are processed like IMAP ones"
        );
    }

    #[test]
    fn unapproved_mailboxes_run_when_the_appliance_says_so() {
        let mut c = config("", "profile = \"p\"");
        c.appliance.process_unapproved_mailboxes = true;
        assert!(incoming_profile(&c, &c.mailboxes[0], &MailboxState::default()).is_ok());
    }

    #[test]
    fn an_api_approval_wins_until_the_config_value_changes() {
        let over = |config_approval: &str| MailboxState {
            approval_override: Some(ApprovalOverride {
                approval: "approved".into(),
                config_approval: config_approval.into(),
                at: chrono::Utc::now(),
            }),
            ..MailboxState::default()
        };
        assert_eq!(
            effective_approval(Approval::PendingApproval, &over("pending_approval")),
            Approval::Approved
        );
        // The admin edited the config since: the config's word counts again.
        assert_eq!(
            effective_approval(Approval::Rejected, &over("pending_approval")),
            Approval::Rejected
        );
        assert_eq!(
            effective_approval(Approval::Empty, &MailboxState::default()),
            Approval::Empty
        );
    }

    #[test]
    fn tests_come_first_and_disabled_mailboxes_wait() {
        let c = config("", "profile = \"p\"\napproval = \"approved\"");
        let m = &c.mailboxes[0];
        let never = MailboxState::default();
        assert!(matches!(
            incoming_decision(&c, m, &never, "f1"),
            Decision::TestFirst(_)
        ));
        let enabled = MailboxState {
            incoming_enablement: Enablement::Enabled,
            config_fingerprint: Some("f1".into()),
            ..MailboxState::default()
        };
        assert!(matches!(
            incoming_decision(&c, m, &enabled, "f1"),
            Decision::Sync(_)
        ));
        assert!(
            matches!(
                incoming_decision(&c, m, &enabled, "f2"),
                Decision::TestFirst(_)
            ),
            "config changed"
        );
        let disabled = MailboxState {
            incoming_enablement: Enablement::Disabled {
                code: "authentication_rejected".into(),
                reason: "bad password".into(),
                at: chrono::Utc::now(),
            },
            config_fingerprint: Some("f1".into()),
            ..MailboxState::default()
        };
        match incoming_decision(&c, m, &disabled, "f1") {
            Decision::NotProcessed(r @ NotProcessed::Disabled { .. }) => {
                assert!(r.to_string().contains("bad password"))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(
                incoming_decision(&c, m, &disabled, "f2"),
                Decision::TestFirst(_)
            ),
            "a fixed config is tested"
        );
    }

    fn sending(extra_profile: &str, mailbox: &str) -> Result<(), NotSending> {
        let c = config(
            &format!("outgoing_server_location = \"h\"\n{extra_profile}"),
            mailbox,
        );
        outgoing_profile(&c, &c.mailboxes[0], &MailboxState::default()).map(|_| ())
    }

    #[test]
    fn each_reason_email_waits() {
        let ok = "profile = \"p\"\napproval = \"approved\"";
        assert_eq!(sending("", ok), Ok(()));
        assert_eq!(
            sending("", "approval = \"approved\""),
            Err(NotSending::NoProfile)
        );
        assert_eq!(sending("active = false", ok), Err(NotSending::Inactive));
        assert_eq!(
            sending("", &format!("{ok}\nactive = false")),
            Err(NotSending::Inactive)
        );
        assert_eq!(
            sending("", &format!("{ok}\noutgoing_delivery = \"none\"")),
            Err(NotSending::OutgoingDeliveryNone)
        );
        assert_eq!(sending("", "profile = \"p\""), Err(NotSending::NotApproved));
        let c = config("", ok);
        assert_eq!(
            outgoing_profile(&c, &c.mailboxes[0], &MailboxState::default()).map(|_| ()),
            Err(NotSending::NoOutgoingServer)
        );
    }
}
