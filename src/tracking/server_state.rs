//! Following an email on its server after ingest (issue 26, point 5): where each mailbox's copy
//! of an activity is now (the folder it was tracked from, another folder sidesync reads, or none
//! of them) and its flags. Two pure rules: [`plan_check`] says what to ask a folder's server at
//! the end of a sync, [`observe`] what one observation does to an activity's recorded copies.
//! The activity itself is never deleted: a CRM keeps what was tracked, and learns what happened.
//!
//! How changes are found, cheapest first:
//! - CONDSTORE (RFC 7162): an unchanged HIGHESTMODSEQ means nothing changed; otherwise
//!   `UID FETCH … (FLAGS) (CHANGEDSINCE m)` names exactly the emails whose flags changed, and
//!   with QRESYNC its `VANISHED` modifier the UIDs expunged since.
//! - Without them (or `follow_server_changes = "compare"`): an unchanged EXISTS and UIDNEXT
//!   mean nothing was expunged (only an arrival raises UIDNEXT, only an expunge lowers EXISTS
//!   without it). Otherwise one `UID FETCH A (UID)` of the anchor, the highest UID counted at
//!   the last check, gives its sequence number: the same number means nothing at or below it
//!   went, and only the UIDs above it are listed. A changed number lists the folder's UIDs.
//!   Flags, which change nothing EXAMINE reports, are compared every `flags_compare_every`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::plan::{FolderCursor, FolderStatus};

/// Where one mailbox's copy of an activity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// In the folder it was tracked from (or found in since).
    Present,
    /// Gone from there, and in another folder sidesync reads: `folder` says which.
    Moved,
    /// In no folder sidesync reads: deleted, or moved to a folder it does not read.
    Deleted,
}

/// One mailbox's copy of an activity, as last seen on its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCopy {
    pub mailbox: String,
    pub state: CopyState,
    /// Where it is; where it was last seen when deleted.
    pub folder: String,
    /// Its IMAP flags and keywords (`\Seen`, `\Flagged`, `$Label1`…, never the session's
    /// `\Recent`), sorted; None until the server was asked.
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    /// When the server last showed a change (None: as ingested).
    #[serde(default, with = "crate::timefmt::option")]
    pub changed_at: Option<DateTime<Utc>>,
}

/// How a profile's mailboxes follow their server (`follow_server_changes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowMode {
    /// CONDSTORE/QRESYNC where the server offers them, else the comparison.
    #[default]
    Auto,
    /// The UID comparison and a periodic flags comparison, whatever the server offers (for a
    /// server whose CONDSTORE cannot be trusted).
    Compare,
    /// Activities stay as ingested.
    Off,
}

/// What a folder's last check saw, kept in its cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    pub modseq: Option<u64>,
    pub exists: u32,
    pub uidnext: Option<u32>,
    /// (UID, its sequence number then): every message up to that UID was counted.
    #[serde(default)]
    pub anchor: Option<(u32, u32)>,
    /// When flags were last compared in full (Unix seconds).
    #[serde(default)]
    pub flags_at: Option<i64>,
}

/// How the flags are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsCheck {
    None,
    /// The emails whose flags changed since this mod-sequence (CONDSTORE).
    ChangedSince(u64),
    /// Every tracked email's flags; a copy whose flags were unknown takes them silently.
    All,
}

/// How expunged emails are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpungeCheck {
    None,
    /// QRESYNC: `VANISHED (EARLIER)` with the flags fetch, since this mod-sequence.
    Vanished(u64),
    /// The anchor's sequence number, then the UIDs above it.
    Probe {
        uid: u32,
        seq: u32,
    },
    /// Every UID of the folder.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub flags: FlagsCheck,
    pub expunges: ExpungeCheck,
}

impl Check {
    pub const NOTHING: Check = Check {
        flags: FlagsCheck::None,
        expunges: ExpungeCheck::None,
    };

    pub fn is_nothing(&self) -> bool {
        *self == Check::NOTHING
    }
}

/// What the server offers this session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    pub condstore: bool,
    /// QRESYNC offered and enabled on the session.
    pub qresync: bool,
}

/// What to ask the server about a folder at the end of a sync. `stored` is the cursor the sync
/// started from (None for a folder seen for the first time), `status` what its EXAMINE said.
pub fn plan_check(
    stored: Option<&FolderCursor>,
    status: &FolderStatus,
    mode: FollowMode,
    offers: Offers,
    flags_every: Option<std::time::Duration>,
    now: i64,
) -> Check {
    if mode == FollowMode::Off {
        return Check::NOTHING;
    }
    // A new folder, or one the server renumbered: everything in it was just ingested.
    let Some(stored) = stored.filter(|c| Some(c.uidvalidity) == status.uidvalidity) else {
        return Check::NOTHING;
    };
    let condstore = mode == FollowMode::Auto && offers.condstore;
    let qresync = condstore && offers.qresync;
    let Some(prev) = &stored.followed else {
        // First check of a folder ingested before sidesync followed changes: what changed since
        // its last sync (CONDSTORE), else everything once.
        return match (condstore, stored.highest_modseq) {
            (true, Some(m)) => Check {
                flags: FlagsCheck::ChangedSince(m),
                expunges: if qresync {
                    ExpungeCheck::Vanished(m)
                } else {
                    ExpungeCheck::Full
                },
            },
            _ => Check {
                flags: if flags_every.is_some() {
                    FlagsCheck::All
                } else {
                    FlagsCheck::None
                },
                expunges: ExpungeCheck::Full,
            },
        };
    };
    let unchanged_size = status.exists == prev.exists && status.uidnext == prev.uidnext;
    let by_size = if unchanged_size {
        ExpungeCheck::None
    } else {
        match prev.anchor {
            Some((uid, seq)) => ExpungeCheck::Probe { uid, seq },
            None => ExpungeCheck::Full,
        }
    };
    if condstore && let (Some(now_m), Some(then)) = (status.highest_modseq, prev.modseq) {
        if now_m == then {
            // RFC 7162 3.1: every flag change and (under QRESYNC) every expunge raises it.
            return if qresync {
                Check::NOTHING
            } else {
                Check {
                    flags: FlagsCheck::None,
                    expunges: by_size,
                }
            };
        }
        return Check {
            flags: FlagsCheck::ChangedSince(then),
            expunges: if qresync {
                ExpungeCheck::Vanished(then)
            } else {
                by_size
            },
        };
    }
    let flags_due = flags_every.is_some_and(|every| {
        prev.flags_at
            .is_none_or(|at| now.saturating_sub(at) >= every.as_secs() as i64)
    });
    Check {
        flags: if flags_due {
            FlagsCheck::All
        } else {
            FlagsCheck::None
        },
        expunges: by_size,
    }
}

/// What a check or an ingest saw of one email in `mailbox`'s `folder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Its UID there is gone; `elsewhere`: another folder of the mailbox sidesync reads holds it.
    Gone { elsewhere: Option<&'a str> },
    /// Its flags now; `changed`: the server says they changed (CONDSTORE), so even a copy whose
    /// flags were unknown records a change.
    Flags { flags: &'a [String], changed: bool },
    /// Tracked or linked there by an ingest, with its flags when they were fetched.
    Found { flags: Option<&'a [String]> },
}

/// What an observation did to the activity's copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// Recorded, but nothing a consumer needs to hear (a first look at flags, a new copy).
    Quiet,
    /// A change downstream is told of (`activity.updated`, `changed: ["server_state"]`).
    Changed,
}

/// Flags as recorded: without `\Recent` (it belongs to one session, not the email), sorted and
/// deduplicated so that a server's order does not look like a change.
pub fn normalized(flags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Applies what was seen of the copy in `mailbox`'s `folder` to the activity's `copies`.
pub fn observe(
    copies: &mut Vec<ServerCopy>,
    mailbox: &str,
    folder: &str,
    seen: Seen<'_>,
    now: DateTime<Utc>,
) -> Outcome {
    let Some(i) = copies.iter().position(|c| c.mailbox == mailbox) else {
        // The mailbox's first recorded copy (an activity ingested before sidesync followed
        // changes, or a mailbox that just linked it).
        let (state, flags, outcome) = match seen {
            Seen::Gone { elsewhere: Some(f) } => {
                copies.push(copy(mailbox, CopyState::Moved, f, None, Some(now)));
                return Outcome::Changed;
            }
            Seen::Gone { elsewhere: None } => (CopyState::Deleted, None, Outcome::Changed),
            Seen::Flags { flags, changed } => (
                CopyState::Present,
                Some(normalized(flags)),
                if changed {
                    Outcome::Changed
                } else {
                    Outcome::Quiet
                },
            ),
            Seen::Found { flags } => (CopyState::Present, flags.map(normalized), Outcome::Quiet),
        };
        let at = (outcome == Outcome::Changed).then_some(now);
        copies.push(copy(mailbox, state, folder, flags, at));
        return outcome;
    };
    let c = &mut copies[i];
    match seen {
        // A second copy of the same email went (it was copied, not moved): where it is stays.
        Seen::Gone { .. } if c.folder != folder => Outcome::Unchanged,
        Seen::Gone { elsewhere: Some(f) } => {
            c.state = CopyState::Moved;
            c.folder = f.to_string();
            c.changed_at = Some(now);
            Outcome::Changed
        }
        Seen::Gone { elsewhere: None } if c.state == CopyState::Deleted => Outcome::Unchanged,
        Seen::Gone { elsewhere: None } => {
            c.state = CopyState::Deleted;
            c.changed_at = Some(now);
            Outcome::Changed
        }
        Seen::Flags { .. } if c.folder != folder || c.state == CopyState::Deleted => {
            Outcome::Unchanged
        }
        Seen::Flags { flags, changed } => {
            let flags = normalized(flags);
            match &c.flags {
                Some(old) if *old == flags => Outcome::Unchanged,
                None if !changed => {
                    c.flags = Some(flags);
                    Outcome::Quiet
                }
                _ => {
                    c.flags = Some(flags);
                    c.changed_at = Some(now);
                    Outcome::Changed
                }
            }
        }
        // Found again after it was gone: moved into a folder sidesync reads.
        Seen::Found { flags } if c.state == CopyState::Deleted => {
            c.state = if c.folder == folder {
                CopyState::Present
            } else {
                CopyState::Moved
            };
            c.folder = folder.to_string();
            if let Some(f) = flags {
                c.flags = Some(normalized(f));
            }
            c.changed_at = Some(now);
            Outcome::Changed
        }
        // Another copy (the recorded one is still where it was), or the same one again.
        Seen::Found { .. } => Outcome::Unchanged,
    }
}

fn copy(
    mailbox: &str,
    state: CopyState,
    folder: &str,
    flags: Option<Vec<String>>,
    changed_at: Option<DateTime<Utc>>,
) -> ServerCopy {
    ServerCopy {
        mailbox: mailbox.to_string(),
        state,
        folder: folder.to_string(),
        flags,
        changed_at,
    }
}

/// What the folder's cursor keeps after a check. `anchor` is what the check counted (None:
/// it counted nothing, the previous anchor stays unless the check found it gone).
pub fn followed_after(
    prev: Option<&Followed>,
    status: &FolderStatus,
    anchor: Option<Option<(u32, u32)>>,
    flags_compared: bool,
    now: i64,
) -> Followed {
    Followed {
        modseq: status.highest_modseq,
        exists: status.exists,
        uidnext: status.uidnext,
        anchor: match anchor {
            Some(a) => a,
            None => prev.and_then(|p| p.anchor),
        },
        flags_at: if flags_compared {
            Some(now)
        } else {
            prev.and_then(|p| p.flags_at)
        },
    }
}

#[cfg(test)]
#[path = "server_state_tests.rs"]
mod tests;
