//! `follow_server_changes` and `flags_compare_every` (profile): whether and how a profile's
//! IMAP mailboxes follow what happens to tracked email on the server after ingest (issue 26,
//! point 5; `tracking::server_state`). POP3 keeps no folders to follow: an error at the key.

use std::time::Duration;

use super::raw::RawProfile;
use super::{ServerType, Validator};
use crate::tracking::server_state::FollowMode;

/// How often, by default, flags are compared in full on a server without CONDSTORE.
pub const FLAGS_COMPARE_EVERY: Duration = Duration::from_secs(3600);

impl Validator<'_> {
    /// The profile's mode and its flags comparison interval (None: never compared in full).
    pub(super) fn profile_follow(
        &mut self,
        rp: &RawProfile,
        name: &str,
        server_type: ServerType,
    ) -> (FollowMode, Option<Duration>) {
        let mode = match &rp.follow_server_changes {
            None => FollowMode::Auto,
            Some(v) => match v.get_ref().trim() {
                "auto" => FollowMode::Auto,
                "compare" => FollowMode::Compare,
                "off" => FollowMode::Off,
                other => {
                    self.at(
                        v,
                        format!(
                            "follow_server_changes = \"{other}\" is not one of \"auto\" \
                             (CONDSTORE/QRESYNC where offered), \"compare\" (UIDs and flags \
                             compared), \"off\""
                        ),
                    );
                    FollowMode::Auto
                }
            },
        };
        if server_type == ServerType::Pop3Smtp {
            if let Some(v) = &rp.follow_server_changes
                && mode != FollowMode::Off
            {
                self.at(
                    v,
                    format!(
                        "follow_server_changes applies to IMAP profiles; profile \"{name}\" is \
                         POP3 (a maildrop has no folders or flags to follow)"
                    ),
                );
            }
            return (FollowMode::Off, None);
        }
        let every = self.duration(
            "flags_compare_every",
            rp.flags_compare_every.as_ref(),
            FLAGS_COMPARE_EVERY,
            Duration::ZERO..=Duration::from_secs(30 * 86_400),
        );
        (mode, (!every.is_zero()).then_some(every))
    }
}
