//! Which alerts a list shows: `GET /api/v1/alerts?mailbox=&profile=&scope=&level=` and the
//! mailbox page's wall. A mailbox's wall is its own alerts (mailbox and email scope) and its
//! profile's Profile-scope alerts: a profile-level error is for the profile's owner to fix, and
//! its mailboxes' owners are told (the Dynamics rule). Pure; a test per case.

use super::error::{ApiError, err};
use crate::store::{Alert, AlertLevel, AlertScope};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// A mailbox's wall: the address and the profile it belongs to (None when the config does
    /// not know the address any more: then only its own alerts).
    pub wall: Option<(String, Option<String>)>,
    pub profile: Option<String>,
    pub scope: Option<AlertScope>,
    pub level: Option<AlertLevel>,
}

impl AlertFilter {
    pub fn keeps(&self, a: &Alert) -> bool {
        let wall = self
            .wall
            .as_ref()
            .is_none_or(|(m, p)| on_wall_of(a, m, p.as_deref()));
        let profile = self
            .profile
            .as_ref()
            .is_none_or(|p| a.profile.as_ref() == Some(p));
        wall && profile
            && self.scope.is_none_or(|s| a.scope == s)
            && self.level.is_none_or(|l| a.level == l)
    }
}

/// Whether `a` is on the wall of `mailbox` (of profile `profile`).
pub fn on_wall_of(a: &Alert, mailbox: &str, profile: Option<&str>) -> bool {
    if let Some(own) = &a.mailbox {
        return own == mailbox;
    }
    a.scope == AlertScope::Profile && profile.is_some() && a.profile.as_deref() == profile
}

/// A `scope=` value: one of the scope words, else a 400 naming the parameter and the words.
pub fn scope(v: &str) -> Result<AlertScope, ApiError> {
    let words = AlertScope::ALL.map(AlertScope::as_str);
    AlertScope::ALL
        .into_iter()
        .find(|s| s.as_str() == v)
        .ok_or_else(|| bad("scope", v, &words))
}

/// A `level=` value, likewise.
pub fn level(v: &str) -> Result<AlertLevel, ApiError> {
    let words = AlertLevel::ALL.map(AlertLevel::as_str);
    AlertLevel::ALL
        .into_iter()
        .find(|l| l.as_str() == v)
        .ok_or_else(|| bad("level", v, &words))
}

fn bad(parameter: &str, v: &str, allowed: &[&str]) -> ApiError {
    err(
        400,
        format!("{parameter} = \"{v}\" is not one of {}", allowed.join(", ")),
    )
    .with("parameter", parameter.into())
    .with("allowed", allowed.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AlertEmail;

    fn alert(scope: AlertScope, mailbox: Option<&str>, profile: Option<&str>) -> Alert {
        Alert {
            at: chrono::Utc::now(),
            level: AlertLevel::Warning,
            scope,
            mailbox: mailbox.map(str::to_string),
            profile: profile.map(str::to_string),
            code: "c".into(),
            message: "m".into(),
            email: (scope == AlertScope::Email).then(AlertEmail::default),
        }
    }

    #[test]
    fn a_mailbox_wall_has_its_own_alerts_of_every_scope() {
        let email = alert(AlertScope::Email, Some("a@x"), Some("p"));
        let mailbox = alert(AlertScope::Mailbox, Some("a@x"), Some("p"));
        assert!(on_wall_of(&email, "a@x", Some("p")));
        assert!(on_wall_of(&mailbox, "a@x", Some("p")));
        assert!(!on_wall_of(&mailbox, "b@x", Some("p")), "another's");
    }

    #[test]
    fn a_mailbox_wall_has_its_profiles_profile_alerts_only() {
        let profile = alert(AlertScope::Profile, None, Some("p"));
        assert!(on_wall_of(&profile, "a@x", Some("p")));
        assert!(!on_wall_of(&profile, "a@x", Some("q")), "another profile's");
        assert!(
            !on_wall_of(&profile, "a@x", None),
            "an address the config lost"
        );
        // A mailbox-scope alert of the same profile belongs to its own mailbox only.
        let other = alert(AlertScope::Mailbox, Some("b@x"), Some("p"));
        assert!(!on_wall_of(&other, "a@x", Some("p")));
        // An appliance alert (no mailbox, no profile) is on no wall.
        let appliance = alert(AlertScope::Profile, None, None);
        assert!(!on_wall_of(&appliance, "a@x", Some("p")));
    }

    #[test]
    fn profile_scope_and_level_each_narrow_the_list() {
        let a = alert(AlertScope::Email, Some("a@x"), Some("p"));
        let by = |f: AlertFilter| f.keeps(&a);
        assert!(by(AlertFilter::default()));
        assert!(by(AlertFilter {
            profile: Some("p".into()),
            ..AlertFilter::default()
        }));
        assert!(!by(AlertFilter {
            profile: Some("q".into()),
            ..AlertFilter::default()
        }));
        assert!(by(AlertFilter {
            scope: Some(AlertScope::Email),
            ..AlertFilter::default()
        }));
        assert!(!by(AlertFilter {
            scope: Some(AlertScope::Mailbox),
            ..AlertFilter::default()
        }));
        assert!(by(AlertFilter {
            level: Some(AlertLevel::Warning),
            ..AlertFilter::default()
        }));
        assert!(!by(AlertFilter {
            level: Some(AlertLevel::Error),
            ..AlertFilter::default()
        }));
        assert!(by(AlertFilter {
            wall: Some(("a@x".into(), Some("p".into()))),
            scope: Some(AlertScope::Email),
            ..AlertFilter::default()
        }));
    }

    #[test]
    fn a_bad_scope_or_level_names_the_parameter_and_the_words() {
        assert_eq!(scope("email").ok(), Some(AlertScope::Email));
        assert_eq!(scope("profile").ok(), Some(AlertScope::Profile));
        let e = scope("Mailboxes").expect_err("refused");
        assert_eq!(e.status, 400);
        assert!(
            e.message
                .contains("scope = \"Mailboxes\" is not one of email, mailbox, profile"),
            "{}",
            e.message
        );
        let body: serde_json::Value = serde_json::from_str(&e.body()).expect("json");
        assert_eq!(body["parameter"], "scope");
        assert_eq!(
            body["allowed"],
            serde_json::json!(["email", "mailbox", "profile"])
        );
        assert_eq!(level("error").ok(), Some(AlertLevel::Error));
        let e = level("fatal").expect_err("refused");
        assert!(
            e.message
                .contains("is not one of error, warning, information"),
            "{}",
            e.message
        );
    }
}
