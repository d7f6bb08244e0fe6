//! In-place upgrades of a store written by an older sidesync, run inside the transaction that
//! opens it: all or nothing, so a crash mid-upgrade leaves the old store as it was.

use redb::{ReadableTable, WriteTransaction};

use super::{
    ACTIVITIES, ACTIVITY_RAW, Activity, CONVERSATIONS, Direction, EMAIL_INDEX, MESSAGE_INDEX_V1,
    META, SUBJECT_INDEX, StoreError, TOKEN_INDEX, decode, encode, rawcodec,
};
use crate::tracking::decision::{Method, fingerprint, message_id_key};
use crate::tracking::message::dedup_key;
use crate::tracking::parties::parties;
use crate::tracking::subject::subject_hash;

/// Version 1 → 2. Every activity is kept (two activities that version 1 made of one email seen
/// by two mailboxes stay two; the first one owns the key). Each gets its mailbox list, key,
/// fingerprint, parties (without records: contacts did not exist), and a conversation from its
/// In-Reply-To and References among the activities before it; the global indexes are built and the
/// per-mailbox Message-ID index is dropped.
pub(super) fn from_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut acts = txn.open_table(ACTIVITIES)?;
    let raws = txn.open_table(ACTIVITY_RAW)?;
    let mut email = txn.open_table(EMAIL_INDEX)?;
    let mut tokens = txn.open_table(TOKEN_INDEX)?;
    let mut subjects = txn.open_table(SUBJECT_INDEX)?;
    let mut conversations = txn.open_table(CONVERSATIONS)?;
    let mut ids = Vec::new();
    for row in acts.iter()? {
        ids.push(row?.0.value());
    }
    for id in ids {
        let Some(v) = acts.get(id)? else { continue };
        let mut a: Activity = decode("activity", v.value())?;
        drop(v);
        a.mailboxes = vec![a.mailbox.clone()];
        a.fingerprint = fingerprint(&a.headers);
        a.key = match &a.headers.message_id {
            Some(mid) => message_id_key(mid),
            None => match raws.get(id)? {
                Some(r) => rawcodec::decode(r.value())
                    .map(|raw| dedup_key(&a.headers, &raw))
                    .map_err(|source| StoreError::Decompress { id, source })?,
                None => format!("activity:{id}"),
            },
        };
        a.parties = parties(&a.headers, |_| None);
        let parent = a
            .headers
            .in_reply_to
            .iter()
            .map(|m| (m, Method::InReplyTo))
            .chain(
                a.headers
                    .references
                    .iter()
                    .rev()
                    .map(|m| (m, Method::References)),
            )
            .find_map(|(m, method)| {
                let pid = email.get(message_id_key(m).as_str()).ok()??.value();
                Some((pid, method))
            });
        a.conversation = id;
        if let Some((pid, method)) = parent
            && let Some(p) = acts.get(pid)?
        {
            let p: Activity = decode("activity", p.value())?;
            a.conversation = if p.conversation == 0 {
                pid
            } else {
                p.conversation
            };
            a.correlation = Some(method);
        }
        if email.get(a.key.as_str())?.is_none() {
            email.insert(a.key.as_str(), id)?;
        }
        if a.direction == Direction::Outgoing
            && let Some(token) = a.headers.subject.as_deref().and_then(bracketed_token)
        {
            tokens.insert(token, id)?;
        }
        let hash = subject_hash(a.headers.subject.as_deref().unwrap_or_default());
        if hash != 0 {
            subjects.insert((hash, id), ())?;
        }
        conversations.insert((a.conversation, id), ())?;
        acts.insert(id, encode(&a).as_slice())?;
    }
    drop((acts, raws, email, tokens, subjects, conversations));
    txn.delete_table(MESSAGE_INDEX_V1)?;
    txn.open_table(META)?.insert("schema_version", 2)?;
    Ok(())
}

/// The token version 1 wrote at the end of an outgoing subject ("… [CRM:0001001001]"), whatever
/// prefix was configured then: brackets around a prefix, a colon and at least seven digits.
fn bracketed_token(subject: &str) -> Option<&str> {
    let start = subject.rfind('[')?;
    let inner = &subject[start + 1..];
    let inner = &inner[..inner.find(']')?];
    let (_, digits) = inner.rsplit_once(':')?;
    (digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(inner)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_1_tokens_are_found() {
        assert_eq!(
            super::bracketed_token("Quote [CRM:0001001001]"),
            Some("CRM:0001001001")
        );
        assert_eq!(super::bracketed_token("Quote [x]"), None);
        assert_eq!(super::bracketed_token("Quote [CRM:12]"), None);
    }
}
