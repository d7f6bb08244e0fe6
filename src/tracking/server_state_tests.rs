use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;

const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

fn status(exists: u32, uidnext: u32, modseq: Option<u64>) -> FolderStatus {
    FolderStatus {
        uidvalidity: Some(7),
        uidnext: Some(uidnext),
        exists,
        highest_modseq: modseq,
    }
}

fn cursor(followed: Option<Followed>) -> FolderCursor {
    FolderCursor {
        uidvalidity: 7,
        last_uid: 10,
        synced_uidnext: Some(11),
        highest_modseq: Some(50),
        uidvalidity_changes: 0,
        followed,
    }
}

fn followed(exists: u32, uidnext: u32, modseq: Option<u64>) -> Followed {
    Followed {
        modseq,
        exists,
        uidnext: Some(uidnext),
        anchor: Some((10, 9)),
        flags_at: Some(1_000),
    }
}

const CONDSTORE: Offers = Offers {
    condstore: true,
    qresync: false,
};
const QRESYNC: Offers = Offers {
    condstore: true,
    qresync: true,
};
const PLAIN: Offers = Offers {
    condstore: false,
    qresync: false,
};

fn plan(stored: Option<&FolderCursor>, st: &FolderStatus, mode: FollowMode, o: Offers) -> Check {
    plan_check(stored, st, mode, o, HOUR, 2_000)
}

#[test]
fn off_asks_nothing() {
    let c = cursor(Some(followed(9, 11, Some(50))));
    let st = status(3, 20, Some(90));
    assert!(plan(Some(&c), &st, FollowMode::Off, QRESYNC).is_nothing());
}

#[test]
fn a_new_or_renumbered_folder_was_just_ingested() {
    let st = status(9, 11, Some(50));
    assert!(plan(None, &st, FollowMode::Auto, QRESYNC).is_nothing());
    let mut c = cursor(Some(followed(9, 11, Some(50))));
    c.uidvalidity = 6;
    assert!(plan(Some(&c), &st, FollowMode::Auto, QRESYNC).is_nothing());
}

#[test]
fn an_unchanged_highestmodseq_under_qresync_means_nothing_changed() {
    let c = cursor(Some(followed(9, 11, Some(50))));
    // Even a smaller EXISTS: under QRESYNC an expunge raises HIGHESTMODSEQ.
    let st = status(8, 11, Some(50));
    assert!(plan(Some(&c), &st, FollowMode::Auto, QRESYNC).is_nothing());
}

#[test]
fn condstore_without_qresync_still_counts_for_expunges() {
    let c = cursor(Some(followed(9, 11, Some(50))));
    let st = status(8, 11, Some(50));
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Auto, CONDSTORE),
        Check {
            flags: FlagsCheck::None,
            expunges: ExpungeCheck::Probe { uid: 10, seq: 9 }
        }
    );
}

#[test]
fn a_raised_highestmodseq_asks_what_changed_since() {
    let c = cursor(Some(followed(9, 11, Some(50))));
    let st = status(9, 11, Some(60));
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Auto, QRESYNC),
        Check {
            flags: FlagsCheck::ChangedSince(50),
            expunges: ExpungeCheck::Vanished(50)
        }
    );
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Auto, CONDSTORE),
        Check {
            flags: FlagsCheck::ChangedSince(50),
            expunges: ExpungeCheck::None
        }
    );
}

#[test]
fn compare_mode_ignores_condstore() {
    let c = cursor(Some(followed(9, 11, Some(50))));
    let st = status(9, 12, Some(60));
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Compare, QRESYNC),
        Check {
            flags: FlagsCheck::None,
            expunges: ExpungeCheck::Probe { uid: 10, seq: 9 }
        }
    );
}

#[test]
fn without_condstore_an_unchanged_size_needs_no_uid_comparison() {
    let c = cursor(Some(followed(9, 11, None)));
    let st = status(9, 11, None);
    assert!(plan(Some(&c), &st, FollowMode::Auto, PLAIN).is_nothing());
}

#[test]
fn without_an_anchor_the_comparison_lists_the_folder() {
    let mut f = followed(9, 11, None);
    f.anchor = None;
    let c = cursor(Some(f));
    let st = status(10, 12, None);
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Auto, PLAIN).expunges,
        ExpungeCheck::Full
    );
}

#[test]
fn flags_are_compared_in_full_once_the_interval_passed() {
    let c = cursor(Some(followed(9, 11, None)));
    let st = status(9, 11, None);
    let due = plan_check(Some(&c), &st, FollowMode::Auto, PLAIN, HOUR, 1_000 + 3_600);
    assert_eq!(due.flags, FlagsCheck::All);
    let early = plan_check(Some(&c), &st, FollowMode::Auto, PLAIN, HOUR, 1_000 + 3_599);
    assert_eq!(early.flags, FlagsCheck::None);
    let never = plan_check(Some(&c), &st, FollowMode::Auto, PLAIN, None, 1_000_000);
    assert_eq!(never.flags, FlagsCheck::None);
}

#[test]
fn the_first_check_after_an_upgrade_asks_since_the_last_sync() {
    let c = cursor(None);
    let st = status(9, 11, Some(60));
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Auto, QRESYNC),
        Check {
            flags: FlagsCheck::ChangedSince(50),
            expunges: ExpungeCheck::Vanished(50)
        }
    );
    assert_eq!(
        plan(Some(&c), &st, FollowMode::Auto, PLAIN),
        Check {
            flags: FlagsCheck::All,
            expunges: ExpungeCheck::Full
        }
    );
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

fn present(folder: &str, flags: Option<&[&str]>) -> Vec<ServerCopy> {
    vec![ServerCopy {
        mailbox: "a@x".into(),
        state: CopyState::Present,
        folder: folder.into(),
        flags: flags.map(|f| f.iter().map(|s| s.to_string()).collect()),
        changed_at: None,
    }]
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn gone_with_no_other_copy_is_deleted_and_only_once() {
    let mut c = present("INBOX", Some(&[]));
    let gone = Seen::Gone { elsewhere: None };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", gone, now()),
        Outcome::Changed
    );
    assert_eq!(c[0].state, CopyState::Deleted);
    assert_eq!(c[0].folder, "INBOX", "where it was last seen");
    assert_eq!(c[0].changed_at, Some(now()));
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", gone, now()),
        Outcome::Unchanged
    );
}

#[test]
fn gone_with_a_copy_in_another_read_folder_is_moved_there() {
    let mut c = present("INBOX", None);
    let seen = Seen::Gone {
        elsewhere: Some("Acme"),
    };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", seen, now()),
        Outcome::Changed
    );
    assert_eq!(
        (c[0].state, c[0].folder.as_str()),
        (CopyState::Moved, "Acme")
    );
}

#[test]
fn a_second_copy_going_leaves_the_first_where_it_is() {
    let mut c = present("Acme", None);
    let gone = Seen::Gone { elsewhere: None };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", gone, now()),
        Outcome::Unchanged
    );
    assert_eq!(c[0].state, CopyState::Present);
}

#[test]
fn found_again_after_deleted_is_a_move_into_that_folder() {
    let mut c = present("INBOX", None);
    observe(
        &mut c,
        "a@x",
        "INBOX",
        Seen::Gone { elsewhere: None },
        now(),
    );
    let flags = strings(&["\\Seen"]);
    let found = Seen::Found {
        flags: Some(&flags),
    };
    assert_eq!(
        observe(&mut c, "a@x", "Acme", found, now()),
        Outcome::Changed
    );
    assert_eq!(
        (c[0].state, c[0].folder.as_str()),
        (CopyState::Moved, "Acme")
    );
    assert_eq!(c[0].flags, Some(flags));
}

#[test]
fn found_in_a_new_mailbox_adds_its_copy_quietly() {
    let mut c = present("INBOX", None);
    let found = Seen::Found { flags: None };
    assert_eq!(
        observe(&mut c, "b@x", "INBOX", found, now()),
        Outcome::Quiet
    );
    assert_eq!(c.len(), 2);
    assert_eq!(
        observe(&mut c, "b@x", "Other", found, now()),
        Outcome::Unchanged,
        "a second copy while the first is still there"
    );
}

#[test]
fn flags_that_differ_are_a_change_and_order_or_recent_are_not() {
    let mut c = present("INBOX", Some(&["\\Flagged", "\\Seen"]));
    let same = strings(&["\\Seen", "\\Recent", "\\Flagged"]);
    let seen = Seen::Flags {
        flags: &same,
        changed: true,
    };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", seen, now()),
        Outcome::Unchanged
    );
    let read = strings(&["\\Seen"]);
    let seen = Seen::Flags {
        flags: &read,
        changed: false,
    };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", seen, now()),
        Outcome::Changed
    );
    assert_eq!(c[0].flags, Some(read));
}

#[test]
fn unknown_flags_are_a_change_only_when_the_server_says_so() {
    let flags = strings(&["\\Seen"]);
    let mut c = present("INBOX", None);
    let compared = Seen::Flags {
        flags: &flags,
        changed: false,
    };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", compared, now()),
        Outcome::Quiet
    );
    assert_eq!(c[0].changed_at, None);
    let mut c = present("INBOX", None);
    let reported = Seen::Flags {
        flags: &flags,
        changed: true,
    };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", reported, now()),
        Outcome::Changed
    );
}

#[test]
fn flags_of_another_copy_or_a_deleted_one_are_ignored() {
    let flags = strings(&["\\Seen"]);
    let seen = Seen::Flags {
        flags: &flags,
        changed: true,
    };
    let mut c = present("Acme", Some(&[]));
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", seen, now()),
        Outcome::Unchanged
    );
    observe(&mut c, "a@x", "Acme", Seen::Gone { elsewhere: None }, now());
    assert_eq!(
        observe(&mut c, "a@x", "Acme", seen, now()),
        Outcome::Unchanged
    );
}

#[test]
fn an_activity_without_copies_gets_one_at_its_first_observation() {
    let mut c = Vec::new();
    let gone = Seen::Gone { elsewhere: None };
    assert_eq!(
        observe(&mut c, "a@x", "INBOX", gone, now()),
        Outcome::Changed
    );
    assert_eq!(c[0].state, CopyState::Deleted);
    let mut c = Vec::new();
    let moved = Seen::Gone {
        elsewhere: Some("Acme"),
    };
    observe(&mut c, "a@x", "INBOX", moved, now());
    assert_eq!(
        (c[0].state, c[0].folder.as_str()),
        (CopyState::Moved, "Acme")
    );
}

#[test]
fn a_check_keeps_its_anchor_unless_it_counted_again() {
    let prev = followed(9, 11, Some(50));
    let st = status(12, 14, Some(70));
    let kept = followed_after(Some(&prev), &st, None, false, 5);
    assert_eq!(kept.anchor, Some((10, 9)));
    assert_eq!(kept.flags_at, Some(1_000));
    assert_eq!(
        (kept.exists, kept.uidnext, kept.modseq),
        (12, Some(14), Some(70))
    );
    let counted = followed_after(Some(&prev), &st, Some(Some((13, 12))), true, 5);
    assert_eq!(counted.anchor, Some((13, 12)));
    assert_eq!(counted.flags_at, Some(5));
    let emptied = followed_after(Some(&prev), &st, Some(None), false, 5);
    assert_eq!(emptied.anchor, None);
}
