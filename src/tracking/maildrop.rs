//! What to do with a POP3 maildrop, decided from its listing and the sync id map: which messages
//! to retrieve, which entries to forget, and which messages may be deleted from the server.

use std::collections::{HashMap, HashSet};

#[cfg(test)]
use crate::store::NOT_TRACKED;
use crate::store::is_activity;

/// One listed message: number in this session, UIDL, size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropEntry {
    pub msgno: u32,
    pub uidl: String,
    pub size: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MaildropPlan {
    /// Messages whose UIDL has no sync id map entry, in maildrop order.
    pub retrieve: Vec<MaildropEntry>,
    /// Map entries of messages the server no longer lists (deleted there): their UIDLs may be
    /// given to new messages later (RFC 1939 allows reuse after deletion), so they must go.
    pub forget: Vec<String>,
}

/// `known`: the mailbox's sync id map, UIDL → (activity id, committed at).
pub fn plan_maildrop(
    listed: &[MaildropEntry],
    known: &HashMap<String, (u64, i64)>,
) -> MaildropPlan {
    let on_server: HashSet<&str> = listed.iter().map(|m| m.uidl.as_str()).collect();
    let mut forget: Vec<String> = known
        .keys()
        .filter(|k| !on_server.contains(k.as_str()))
        .cloned()
        .collect();
    forget.sort();
    MaildropPlan {
        retrieve: listed
            .iter()
            .filter(|m| !known.contains_key(&m.uidl))
            .cloned()
            .collect(),
        forget,
    }
}

/// Message numbers to delete: listed messages stored as an activity (read back from the store,
/// so only committed ones) at least `days` before `now`. An entry without an activity (skipped by
/// the date filter, too large, a poison email) is never deleted: only stored email may leave the
/// server.
pub fn deletable(
    listed: &[MaildropEntry],
    committed: &HashMap<String, (u64, i64)>,
    days: u32,
    now: i64,
) -> Vec<u32> {
    let cutoff = now - i64::from(days) * 86_400;
    listed
        .iter()
        .filter(|m| {
            committed
                .get(&m.uidl)
                .is_some_and(|(activity, at)| is_activity(*activity) && *at <= cutoff)
        })
        .map(|m| m.msgno)
        .collect()
}

/// Splits messages into batches of at most `count` messages and about `bytes` bytes (a single
/// larger message is a batch of its own).
pub fn batches(messages: Vec<MaildropEntry>, count: usize, bytes: u64) -> Vec<Vec<MaildropEntry>> {
    let mut out = Vec::new();
    let mut current: Vec<MaildropEntry> = Vec::new();
    let mut size = 0u64;
    for m in messages {
        if !current.is_empty() && (current.len() >= count.max(1) || size + m.size > bytes) {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += m.size;
        current.push(m);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(msgno: u32, uidl: &str) -> MaildropEntry {
        MaildropEntry {
            msgno,
            uidl: uidl.into(),
            size: 100,
        }
    }

    #[test]
    fn only_unknown_uidls_are_retrieved_and_vanished_ones_forgotten() {
        let listed = vec![e(1, "a"), e(2, "b"), e(3, "c")];
        let known: HashMap<String, (u64, i64)> =
            [("a".into(), (1, 0)), ("gone".into(), (2, 0))].into();
        let plan = plan_maildrop(&listed, &known);
        assert_eq!(plan.retrieve, vec![e(2, "b"), e(3, "c")]);
        assert_eq!(plan.forget, vec!["gone".to_string()]);
        assert_eq!(plan_maildrop(&[], &HashMap::new()), MaildropPlan::default());
    }

    #[test]
    fn deletion_waits_for_commit_and_age() {
        let listed = vec![
            e(1, "old"),
            e(2, "new"),
            e(3, "not-stored"),
            e(4, "skipped"),
            e(5, "not-relevant"),
        ];
        let now = 100 * 86_400;
        let committed: HashMap<String, (u64, i64)> = [
            ("old".into(), (1, now - 3 * 86_400)),
            ("new".into(), (2, now - 60)),
            // Seen and recorded, but not stored as an activity (date filter): it stays.
            ("skipped".into(), (NOT_TRACKED, now - 9 * 86_400)),
            // Skipped by the tracking decision: no activity, no body kept; it stays.
            (
                "not-relevant".into(),
                (
                    crate::store::skip_marker(
                        crate::tracking::decision::SkipReason::NoCorrelationMatch,
                    ),
                    now - 9 * 86_400,
                ),
            ),
        ]
        .into();
        assert_eq!(deletable(&listed, &committed, 2, now), vec![1]);
        assert_eq!(deletable(&listed, &committed, 0, now), vec![1, 2]);
        assert!(deletable(&listed, &committed, 4, now).is_empty());
    }

    #[test]
    fn batches_bound_count_and_bytes() {
        let ms: Vec<_> = (1..=5).map(|i| e(i, &i.to_string())).collect();
        let b = batches(ms.clone(), 2, 10_000);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        let b = batches(ms, 10, 250);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(batches(Vec::new(), 2, 10).is_empty());
    }
}
