//! In-place upgrades of a store written by an older sidesync, run inside the transaction that
//! opens it: all or nothing, so a crash mid-upgrade leaves the old store as it was.

use redb::{ReadableTable, WriteTransaction};

use super::tokens::TOKEN_ACTIVITIES;
use super::{
    ACTIVITIES, ACTIVITY_RAW, Activity, CONVERSATIONS, Direction, EMAIL_INDEX, MESSAGE_INDEX_V1,
    META, SUBJECT_INDEX, StoreError, TOKEN_INDEX_V2, decode, encode, rawcodec,
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
    let mut tokens = txn.open_table(TOKEN_INDEX_V2)?;
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

/// Version 2 → 3 (issue 26): version 2 kept only the newest activity per token, and its tokens
/// wrapped, so an old token could name several emails. Every outgoing activity's token (read
/// back from its subject) goes into `token_activities` with every activity that carried it, plus
/// every row of the old index (a subject cut by hand would lose its token); the old index goes.
/// New tokens never take one of these: the allocator passes over any token already indexed.
pub(super) fn from_v2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let acts = txn.open_table(ACTIVITIES)?;
    let old = txn.open_table(TOKEN_INDEX_V2)?;
    let mut tokens = txn.open_table(TOKEN_ACTIVITIES)?;
    for row in old.iter()? {
        let (token, id) = row?;
        tokens.insert((token.value(), id.value()), ())?;
    }
    for row in acts.iter()? {
        let (id, v) = row?;
        let a: Activity = decode("activity", v.value())?;
        if a.direction == Direction::Outgoing
            && let Some(token) = a.headers.subject.as_deref().and_then(bracketed_token)
        {
            tokens.insert((token, id.value()), ())?;
        }
    }
    drop((acts, old, tokens));
    txn.delete_table(TOKEN_INDEX_V2)?;
    txn.open_table(META)?.insert("schema_version", 3)?;
    Ok(())
}

/// The token an older version wrote at the end of an outgoing subject ("… [CRM:0001001001]"),
/// whatever prefix was configured then: brackets around a prefix of 1 to 20 characters (as
/// Dynamics allows) and at least seven digits.
fn bracketed_token(subject: &str) -> Option<&str> {
    let start = subject.rfind('[')?;
    let inner = &subject[start + 1..];
    let inner = &inner[..inner.find(']')?];
    let prefix = inner.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = inner.len() - prefix.len();
    let prefix_chars = prefix.chars().count();
    (digits >= 7 && (1..=20).contains(&prefix_chars)).then_some(inner)
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
        assert_eq!(
            super::bracketed_token("Re: [CRM:0001001001] Quote [Case#000200012000345]"),
            Some("Case#000200012000345"),
            "a prefix without a colon, the last bracket"
        );
        assert_eq!(
            super::bracketed_token("Quote [0001001001]"),
            None,
            "no prefix"
        );
    }
}
