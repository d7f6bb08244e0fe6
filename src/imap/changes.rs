//! What changed on the server since the last check (see `tracking::server_state`): the flags of
//! emails (CONDSTORE's CHANGEDSINCE, or all of them), the UIDs expunged (QRESYNC's VANISHED, or
//! a comparison of UIDs). Each asks the selected folder; none changes anything.

use async_imap::error::Error as E;
use async_imap::imap_proto::Response;
use async_imap::types::{Flag, UnsolicitedResponse};
use futures::StreamExt;

use super::{ImapSession, lost, next_item, step, uid_set};
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
    pub fn is_vanished(&self, uid: u32) -> bool {
        self.vanished.iter().any(|r| r.contains(&uid))
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
        let address = self.address.clone();
        let limit = self.timeout;
        while self.session.unsolicited_responses.try_recv().is_ok() {}
        let modifier = if vanished && self.qresync {
            format!("(CHANGEDSINCE {modseq} VANISHED)")
        } else {
            format!("(CHANGEDSINCE {modseq})")
        };
        let query = format!("(UID FLAGS) {modifier}");
        let mut out = Changes::default();
        {
            let mut stream = step(
                &address,
                "asking for changes",
                limit,
                self.session.uid_fetch(format!("1:{up_to}"), &query),
                |e| lost(&address, e),
            )
            .await?;
            loop {
                let item = match tokio::time::timeout(limit, stream.next()).await {
                    Err(_) => {
                        return Err(SyncError::Net(crate::net::NetError::Timeout {
                            address: address.clone(),
                            step: "asking for changes",
                            seconds: limit.as_secs().max(1),
                        }));
                    }
                    Ok(None) => break,
                    Ok(Some(Ok(item))) => item,
                    // Its CONDSTORE is not what it said: the check waits for a later sync.
                    Ok(Some(Err(E::No(reply) | E::Bad(reply)))) => {
                        tracing::warn!(
                            mailbox = %address,
                            reply = %super::server_text(&reply),
                            "the server refused CHANGEDSINCE"
                        );
                        return Ok(None);
                    }
                    Ok(Some(Err(e))) => return Err(lost(&address, e)),
                };
                if let Some(uid) = item.uid.filter(|u| *u <= up_to) {
                    out.flags.push((uid, flags_of(&item)));
                }
            }
        }
        // VANISHED (EARLIER) is not a FETCH: async-imap hands it on as unsolicited.
        while let Ok(r) = self.session.unsolicited_responses.try_recv() {
            if let UnsolicitedResponse::Other(data) = r
                && let Response::Vanished { uids, .. } = data.parsed()
            {
                out.vanished.extend(uids.iter().cloned());
            }
        }
        Ok(Some(out))
    }

    /// The flags of `uids` in the selected folder.
    pub async fn flags(&mut self, uids: &[u32]) -> Result<Vec<(u32, Vec<String>)>, SyncError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let address = self.address.clone();
        let limit = self.timeout;
        let mut stream = step(
            &address,
            "comparing flags",
            limit,
            self.session.uid_fetch(uid_set(uids), "(UID FLAGS)"),
            |e| lost(&address, e),
        )
        .await?;
        let mut out = Vec::with_capacity(uids.len());
        while let Some(item) = next_item(&mut stream, &address, "comparing flags", limit).await? {
            if let Some(uid) = item.uid {
                out.push((uid, flags_of(&item)));
            }
        }
        Ok(out)
    }

    /// The sequence number of `uid` in the selected folder; None when it is gone.
    pub async fn sequence_of(&mut self, uid: u32) -> Result<Option<u32>, SyncError> {
        let address = self.address.clone();
        let limit = self.timeout;
        let mut stream = step(
            &address,
            "counting messages",
            limit,
            self.session.uid_fetch(uid.to_string(), "(UID)"),
            |e| lost(&address, e),
        )
        .await?;
        let mut seq = None;
        while let Some(item) = next_item(&mut stream, &address, "counting messages", limit).await? {
            if item.uid == Some(uid) {
                seq = Some(item.message);
            }
        }
        Ok(seq)
    }

    /// Every UID from `first` up in the selected folder, sorted (`UID SEARCH UID first:*`; a
    /// server answers `n:*` with its highest UID even below n, which is dropped).
    pub async fn uids_from(&mut self, first: u32) -> Result<Vec<u32>, SyncError> {
        let address = self.address.clone();
        let limit = self.timeout;
        let found = step(
            &address,
            "listing UIDs",
            limit,
            self.session.uid_search(format!("UID {}:*", first.max(1))),
            |e| lost(&address, e),
        )
        .await?;
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u >= first).collect();
        uids.sort_unstable();
        Ok(uids)
    }
}
