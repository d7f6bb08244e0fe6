//! P11: when more than half of a profile's mailboxes failed to synchronize within one hour, the
//! profile's owner gets one email (at most one an hour per profile). The decision is pure.

use chrono::{DateTime, Duration, Utc};

use crate::config::{Config, IncomingDelivery, Profile};
use crate::lifecycle::failing::failing_within;
use crate::store::{MailboxState, ProfileState};

/// (failing, total) among the profile's active, server-side-sync mailboxes.
pub fn failing_share<'a>(
    config: &Config,
    profile: &Profile,
    state_of: impl Fn(&str) -> Option<&'a MailboxState>,
    now: DateTime<Utc>,
) -> (usize, usize) {
    let mut failing = 0;
    let mut total = 0;
    for m in &config.mailboxes {
        if m.profile.as_deref() != Some(profile.name.as_str())
            || !m.active
            || m.incoming_delivery != IncomingDelivery::ServerSideSync
        {
            continue;
        }
        total += 1;
        let Some(s) = state_of(&m.email_address) else {
            continue;
        };
        if failing_within(s, now, Duration::hours(1)) {
            failing += 1;
        }
    }
    (failing, total)
}

/// Whether to send the alert email now.
pub fn should_send(
    profile: &Profile,
    failing: usize,
    total: usize,
    state: &ProfileState,
    now: DateTime<Utc>,
) -> bool {
    profile.send_alert_email
        && profile.owner_email.is_some()
        && total > 0
        && failing * 2 > total
        && state
            .last_alert_email_at
            .is_none_or(|t| now - t >= Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LastError, RunStatus};
    use std::collections::HashMap;
    use std::path::Path;

    fn config() -> Config {
        let mut text = String::from(
            "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"h\"\n\
             send_alert_email = true\nowner_email = \"owner@x\"\n",
        );
        for n in 0..4 {
            text.push_str(&format!(
                "[[mailbox]]\nemail_address = \"m{n}@x\"\npassword = \"pw\"\n"
            ));
        }
        Config::parse_allowing_plaintext(Path::new("t.toml"), &text).expect("valid")
    }

    fn failing(at: DateTime<Utc>) -> MailboxState {
        MailboxState {
            incoming_status: RunStatus::Failure,
            last_error: Some(LastError {
                text: "x".into(),
                code: "connect_failed".into(),
                transient: true,
                consecutive: 1,
                at,
            }),
            ..MailboxState::default()
        }
    }

    #[test]
    fn more_than_half_failing_within_the_hour_sends_once_an_hour() {
        let c = config();
        let p = &c.profiles[0];
        let now = Utc::now();
        let mut states: HashMap<String, MailboxState> = HashMap::new();
        states.insert("m0@x".into(), failing(now));
        states.insert("m1@x".into(), failing(now - Duration::minutes(10)));
        let (f, t) = failing_share(&c, p, |a| states.get(a), now);
        assert_eq!((f, t), (2, 4));
        assert!(
            !should_send(p, f, t, &ProfileState::default(), now),
            "half is not more than half"
        );
        states.insert("m2@x".into(), failing(now - Duration::minutes(59)));
        let (f, t) = failing_share(&c, p, |a| states.get(a), now);
        assert!(should_send(p, f, t, &ProfileState::default(), now));
        let sent = ProfileState {
            last_alert_email_at: Some(now - Duration::minutes(30)),
            ..ProfileState::default()
        };
        assert!(!should_send(p, f, t, &sent, now), "at most once an hour");
        // Errors older than an hour do not count.
        states.insert("m2@x".into(), failing(now - Duration::minutes(61)));
        let (f, _) = failing_share(&c, p, |a| states.get(a), now);
        assert_eq!(f, 2);
    }
}
