//! M8's "the owner of the email server profile has been notified": whether a disabled mailbox's
//! profile owner gets an alert email about it, and the sentence the disable alert says about that.
//! The alert says "has been notified" only when that email went out; pure, a test per case.

use chrono::{DateTime, Duration, Utc};

use crate::config::Profile;
use crate::store::ProfileState;

/// What became of telling the profile's owner about a disabled mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerNotice {
    /// The alert email went out to `to`.
    Emailed { to: String },
    /// `send_alert_email` is off for the profile.
    AlertEmailOff,
    /// `send_alert_email` is on but the profile names no `owner_email`.
    NoOwner,
    /// A disable email for this profile already went out at `at`: at most one an hour, so that a
    /// profile-wide failure disabling every mailbox sends one email, not one per mailbox.
    AlreadySent { at: DateTime<Utc> },
    /// Sending to `to` failed with `why` (the send error, which names no credential).
    NotSent { to: String, why: String },
}

/// Whom to email about a mailbox of `profile` being disabled now, or why nobody.
pub fn disable_email_to(
    profile: &Profile,
    state: &ProfileState,
    now: DateTime<Utc>,
) -> Result<String, OwnerNotice> {
    if !profile.send_alert_email {
        return Err(OwnerNotice::AlertEmailOff);
    }
    let Some(owner) = &profile.owner_email else {
        return Err(OwnerNotice::NoOwner);
    };
    match state.last_disable_email_at {
        Some(at) if now - at < Duration::hours(1) => Err(OwnerNotice::AlreadySent { at }),
        _ => Ok(owner.clone()),
    }
}

/// The disable alert's sentence about the profile's owner.
pub fn sentence(profile: &str, notice: &OwnerNotice) -> String {
    match notice {
        OwnerNotice::Emailed { to } => format!(
            "The owner of the email server profile \"{profile}\" has been notified (alert email \
             to {to})."
        ),
        OwnerNotice::AlertEmailOff => format!(
            "Alert email is off for the email server profile \"{profile}\" (send_alert_email); \
             nobody has been emailed."
        ),
        OwnerNotice::NoOwner => format!(
            "The email server profile \"{profile}\" names no owner_email; nobody has been emailed."
        ),
        OwnerNotice::AlreadySent { at } => format!(
            "The owner of the email server profile \"{profile}\" was emailed about a disabled \
             mailbox at {} (at most one such email an hour); nobody has been emailed about this \
             one.",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        OwnerNotice::NotSent { to, why } => format!(
            "The alert email to the owner of the email server profile \"{profile}\" ({to}) could \
             not be sent: {why}. Nobody has been emailed."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn profile(extra: &str) -> Profile {
        let text = format!(
            "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"h\"\n{extra}\n\
             [[mailbox]]\nemail_address = \"m@x\"\npassword = \"pw\"\n"
        );
        let c = Config::parse_allowing_plaintext(Path::new("t.toml"), &text).expect("valid");
        c.profiles[0].clone()
    }

    const ON: &str = "send_alert_email = true\nowner_email = \"owner@x\"";

    #[test]
    fn alert_email_off_emails_nobody_and_says_so() {
        let got = disable_email_to(&profile(""), &ProfileState::default(), Utc::now());
        assert_eq!(got, Err(OwnerNotice::AlertEmailOff));
        let s = sentence("p", &OwnerNotice::AlertEmailOff);
        assert!(!s.contains("has been notified"), "{s}");
        assert!(s.contains("nobody has been emailed"), "{s}");
    }

    #[test]
    fn alert_email_on_without_an_owner_emails_nobody() {
        let p = profile("send_alert_email = true");
        let got = disable_email_to(&p, &ProfileState::default(), Utc::now());
        assert_eq!(got, Err(OwnerNotice::NoOwner));
        assert!(!sentence("p", &OwnerNotice::NoOwner).contains("has been notified"));
    }

    #[test]
    fn alert_email_on_emails_the_owner() {
        let got = disable_email_to(&profile(ON), &ProfileState::default(), Utc::now());
        assert_eq!(got, Ok("owner@x".to_string()));
    }

    #[test]
    fn at_most_one_disable_email_an_hour_per_profile() {
        let now = Utc::now();
        let state = |ago: i64| ProfileState {
            last_disable_email_at: Some(now - Duration::minutes(ago)),
            ..ProfileState::default()
        };
        let at = now - Duration::minutes(59);
        assert_eq!(
            disable_email_to(&profile(ON), &state(59), now),
            Err(OwnerNotice::AlreadySent { at })
        );
        assert_eq!(
            disable_email_to(&profile(ON), &state(60), now),
            Ok("owner@x".to_string())
        );
        assert!(!sentence("p", &OwnerNotice::AlreadySent { at }).contains("has been notified"));
    }

    #[test]
    fn only_an_email_that_went_out_says_has_been_notified() {
        let sent = OwnerNotice::Emailed { to: "o@x".into() };
        assert!(sentence("p", &sent).contains(
            "The owner of the email server profile \"p\" has been notified (alert email to o@x)."
        ));
        let failed = OwnerNotice::NotSent {
            to: "o@x".into(),
            why: "connection refused".into(),
        };
        let s = sentence("p", &failed);
        assert!(!s.contains("has been notified"), "{s}");
        assert!(s.contains("connection refused"), "{s}");
    }
}
