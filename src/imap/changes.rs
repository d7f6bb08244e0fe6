//! What changed on the server since the last check (see `tracking::server_state`): the flags of
//! emails (CONDSTORE's CHANGEDSINCE, or all of them), the UIDs expunged (QRESYNC's VANISHED, or
//! a comparison of UIDs). Each asks the selected folder; none changes anything.

use async_imap::error::Error as E;
use async_imap::imap_proto::Response;
use async_imap::types::{Flag, UnsolicitedResponse};
use futures::StreamExt;

use super::{ImapSession, lost, step};
use crate::engine::error::SyncError;

/// The flags the server reported, and (QRESYNC) the UIDs it said are gone.
#[derive(Debug, Default)]
pub struct Changes {
    pub flags: Vec<(u32, Vec<String>)>,
    /// As the server wrote them: ranges, never expanded (a hostile `1:4294967295` costs
    /// nothing); the caller looks up the UIDs it has mapped.
    pub vanished: Vec<std::ops::RangeInclusive<u32>>,
}

impl Changes {
    /// Whether `uid` is among the vanished (ranges sorted and merged by `merge_vanished`: a
    /// binary search, so a hostile answer of 100,000 ranges costs a few steps a UID).
    pub fn is_vanished(&self, uid: u32) -> bool {
        let i = self.vanished.partition_point(|r| *r.end() < uid);
        self.vanished.get(i).is_some_and(|r| r.contains(&uid))
    }

    fn merge_vanished(&mut self) {
        self.vanished.sort_unstable_by_key(|r| *r.start());
        let mut merged: Vec<std::ops::RangeInclusive<u32>> =
            Vec::with_capacity(self.vanished.len());
        for r in self.vanished.drain(..) {
            match merged.last_mut() {
                Some(last) if *r.start() <= last.end().saturating_add(1) => {
                    if r.end() > last.end() {
                        *last = *last.start()..=*r.end();
                    }
                }
                _ => merged.push(r),
            }
        }
        self.vanished = merged;
    }
}

/// A flag as IMAP writes it.
fn flag_name(f: Flag<'_>) -> String {
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.into_owned(),
    }
}

pub(super) fn flags_of(item: &async_imap::types::Fetch) -> Vec<String> {
    item.flags().map(flag_name).collect()
}

impl ImapSession {
    /// Whether QRESYNC was enabled at login (its VANISHED can be asked for).
    pub fn qresync(&self) -> bool {
        self.qresync
    }

    /// `UID FETCH set query` on the selected folder, each response handed to `each`. False when
    /// the server refuses the command (NO or BAD): a check learns nothing then and waits for a
    /// later sync, rather than failing a sync whose ingest went well.
    async fn each_fetched(
        &mut self,
        set: String,
        query: &str,
        what: &'static str,
        mut each: impl FnMut(&async_imap::types::Fetch),
    ) -> Result<bool, SyncError> {
        let address = self.address.clone();
        let limit = self.timeout;
        let mut stream = step(
            &address,
            what,
            limit,
            self.session.uid_fetch(set, query),
            |e| lost(&address, e),
        )
        .await?;
        loop {
            match tokio::time::timeout(limit, stream.next()).await {
                Err(_) => {
                    return Err(SyncError::Net(crate::net::NetError::Timeout {
                        address: address.clone(),
                        step: what,
                        seconds: limit.as_secs().max(1),
                    }));
                }
                Ok(None) => return Ok(true),
                Ok(Some(Ok(item))) => each(&item),
                Ok(Some(Err(E::No(reply) | E::Bad(reply)))) => {
                    tracing::warn!(
                        mailbox = %address,
                        step = what,
                        reply = %super::server_text(&reply),
                        "the server refused a question about changes; asked again at a later sync"
                    );
                    return Ok(false);
                }
                Ok(Some(Err(e))) => return Err(lost(&address, e)),
            }
        }
    }

    /// `UID FETCH 1:up_to (UID FLAGS) (CHANGEDSINCE modseq [VANISHED])` on the selected folder.
    /// None when the server refuses the command (its CONDSTORE is not what it said).
    pub async fn changed_since(
        &mut self,
        up_to: u32,
        modseq: u64,
        vanished: bool,
    ) -> Result<Option<Changes>, SyncError> {
        if up_to == 0 {
            return Ok(Some(Changes::default()));
        }
        while self.session.unsolicited_responses.try_recv().is_ok() {}
        let modifier = if vanished && self.qresync {
            format!("(CHANGEDSINCE {modseq} VANISHED)")
        } else {
            format!("(CHANGEDSINCE {modseq})")
        };
        let query = format!("(UID FLAGS) {modifier}");
        let mut out = Changes::default();
        let answered = self
            .each_fetched(format!("1:{up_to}"), &query, "asking for changes", |item| {
                if let Some(uid) = item.uid.filter(|u| *u <= up_to) {
                    out.flags.push((uid, flags_of(item)));
                }
            })
            .await?;
        if !answered {
            return Ok(None);
        }
        // VANISHED (EARLIER) is not a FETCH: async-imap hands it on as unsolicited.
        while let Ok(r) = self.session.unsolicited_responses.try_recv() {
            if let UnsolicitedResponse::Other(data) = r
                && let Response::Vanished { uids, .. } = data.parsed()
            {
                out.vanished.extend(uids.iter().cloned());
            }
        }
        out.merge_vanished();
        Ok(Some(out))
    }

    /// The flags of every message up to `up_to` in the selected folder (a range, not the
    /// tracked UIDs one by one: a scattered set can outgrow a server's command line). None when
    /// the server refuses.
    pub async fn flags(
        &mut self,
        up_to: u32,
    ) -> Result<Option<Vec<(u32, Vec<String>)>>, SyncError> {
        let mut out = Vec::new();
        if up_to == 0 {
            return Ok(Some(out));
        }
        let answered = self
            .each_fetched(
                format!("1:{up_to}"),
                "(UID FLAGS)",
                "comparing flags",
                |item| {
                    if let Some(uid) = item.uid.filter(|u| *u <= up_to) {
                        out.push((uid, flags_of(item)));
                    }
                },
            )
            .await?;
        Ok(answered.then_some(out))
    }

    /// The sequence number of `uid` in the selected folder (None inside: it is gone); None when
    /// the server refuses.
    pub async fn sequence_of(&mut self, uid: u32) -> Result<Option<Option<u32>>, SyncError> {
        let mut seq = None;
        let answered = self
            .each_fetched(uid.to_string(), "(UID)", "counting messages", |item| {
                if item.uid == Some(uid) {
                    seq = Some(item.message);
                }
            })
            .await?;
        Ok(answered.then_some(seq))
    }

    /// Every UID from `first` up in the selected folder, sorted: `UID FETCH first:* (UID)`, one
    /// response a message (a `UID SEARCH` answer is one line, which the guard holds to 1 MiB: a
    /// folder of 150,000 emails would not fit). A server answers `n:*` with its highest UID even
    /// below n, which is dropped. None when the server refuses.
    pub async fn uids_from(&mut self, first: u32) -> Result<Option<Vec<u32>>, SyncError> {
        let mut uids = Vec::new();
        let answered = self
            .each_fetched(
                format!("{}:*", first.max(1)),
                "(UID)",
                "listing UIDs",
                |item| {
                    if let Some(uid) = item.uid.filter(|u| *u >= first) {
                        uids.push(uid);
                    }
                },
            )
            .await?;
        uids.sort_unstable();
        uids.dedup();
        Ok(answered.then_some(uids))
    }
}

#[cfg(test)]
mod tests {
    use super::Changes;

    #[test]
    fn vanished_ranges_in_any_order_answer_by_uid() {
        let mut c = Changes {
            flags: Vec::new(),
            vanished: vec![9..=12, 1..=3, 2..=5, 20..=20, 13..=14],
        };
        c.merge_vanished();
        assert_eq!(c.vanished, vec![1..=5, 9..=14, 20..=20]);
        for (uid, gone) in [
            (1, true),
            (5, true),
            (6, false),
            (8, false),
            (9, true),
            (14, true),
            (15, false),
            (20, true),
            (21, false),
            (0, false),
        ] {
            assert_eq!(c.is_vanished(uid), gone, "{uid}");
        }
        let mut hostile = Changes {
            flags: Vec::new(),
            vanished: vec![1..=u32::MAX],
        };
        hostile.merge_vanished();
        assert!(hostile.is_vanished(u32::MAX) && hostile.is_vanished(1));
    }

    proptest::proptest! {
        /// Whatever ranges a server sends (reversed, overlapping, at the ends of u32), merged
        /// membership is plain membership, and merging never panics.
        #[test]
        fn merged_ranges_answer_as_the_ranges_do(
            raw in proptest::collection::vec((proptest::num::u32::ANY, proptest::num::u32::ANY), 0..40),
            probes in proptest::collection::vec(proptest::num::u32::ANY, 0..40),
        ) {
            let ranges: Vec<std::ops::RangeInclusive<u32>> =
                raw.iter().map(|(a, b)| *a.min(b)..=*a.max(b)).collect();
            let mut c = Changes { flags: Vec::new(), vanished: ranges.clone() };
            c.merge_vanished();
            let near: Vec<u32> = ranges
                .iter()
                .flat_map(|r| [*r.start(), *r.end(), r.start().saturating_sub(1), r.end().saturating_add(1)])
                .chain(probes)
                .collect();
            for uid in near {
                proptest::prop_assert_eq!(c.is_vanished(uid), ranges.iter().any(|r| r.contains(&uid)), "{}", uid);
            }
        }
    }
}
