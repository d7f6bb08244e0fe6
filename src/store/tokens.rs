//! The store's side of tracking tokens (issue 26): every token ever issued → its activity, and
//! each mailbox's user number and counter. The pure rules are `tracking::token_alloc` (which
//! token comes next) and `tracking::token_match` (which activity a found token names).
//!
//! Invariant: a token is in `token_activities` from the transaction that records its email, and
//! the counter that produced it is in `token_mailboxes` in that same transaction — so a crash
//! cannot hand a token out twice, and a token in a subject always resolves while its activity
//! exists.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{META, StoreError};
use crate::tracking::token::TokenFormat;
use crate::tracking::token_alloc::{MailboxTokens, TokenClaim, next_claim};

/// (token, activity id) → (): every token issued, each with the activities that carried it
/// (one since issue 26; several for a token an older version wrapped).
pub(crate) const TOKEN_ACTIVITIES: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("token_activities");
/// Lower-case mailbox address → (user number, last counter issued).
pub(crate) const TOKEN_MAILBOXES: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("token_mailboxes");
/// The `meta` key of the next user number to assign.
const NEXT_USER: &str = "next_token_user";

/// Whether any activity carried `token`.
pub(crate) fn is_taken<T>(tokens: &T, token: &str) -> bool
where
    T: ReadableTable<(&'static str, u64), ()>,
{
    // A failed read counts as taken: the allocator then passes the token over rather than
    // risk issuing it twice (the commit that follows reports the broken store anyway).
    tokens
        .range((token, 0)..=(token, u64::MAX))
        .map_or(true, |mut rows| rows.next().is_some())
}

/// The activities that carried `token`, newest first.
pub(crate) fn activities_of<T>(tokens: &T, token: &str) -> Vec<u64>
where
    T: ReadableTable<(&'static str, u64), ()>,
{
    let Ok(rows) = tokens.range((token, 0)..=(token, u64::MAX)) else {
        return Vec::new();
    };
    rows.rev()
        .filter_map(|r| r.ok())
        .map(|(k, _)| k.value().1)
        .collect()
}

/// The token the next email of `mailbox` gets, over any open tables (a read transaction for
/// the API's guess, the writer's own for the check at commit): both must agree.
pub(crate) fn claim_over<X, M, T>(
    meta: &X,
    mailboxes: &M,
    tokens: &T,
    mailbox: &str,
    format: &TokenFormat,
    shard: Option<u32>,
) -> Result<Option<TokenClaim>, StoreError>
where
    X: ReadableTable<&'static str, u64>,
    M: ReadableTable<&'static str, (u64, u64)>,
    T: ReadableTable<(&'static str, u64), ()>,
{
    let known = mailboxes.get(mailbox)?.map(|v| {
        let (user, last_counter) = v.value();
        MailboxTokens { user, last_counter }
    });
    let next_user = meta.get(NEXT_USER)?.map_or(1, |v| v.value());
    Ok(next_claim(format, shard, known, next_user, |t| {
        is_taken(tokens, t)
    }))
}

/// How a claim fared at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// Recorded: the email carries the token it was built with.
    Recorded,
    /// Another email of the mailbox took that token first (two queued at once): the email must
    /// be built again with the next one.
    Moved,
}

/// The token an email to queue was built with, and the format and shard that made it (the
/// writer checks the claim against its own transaction with them).
#[derive(Debug, Clone)]
pub struct QueuedToken {
    pub claim: TokenClaim,
    pub format: TokenFormat,
    pub shard: Option<u32>,
}

/// In the transaction that records the email, before anything else of it is written: checks
/// that the claim is still the mailbox's next token and records its counter and user number.
/// [`index_token`] adds the index row once the activity has its id.
pub(crate) fn record_claim(
    txn: &WriteTransaction,
    mailbox: &str,
    queued: &QueuedToken,
) -> Result<Claimed, StoreError> {
    let (expected, format, shard) = (&queued.claim, &queued.format, queued.shard);
    let mut meta = txn.open_table(META)?;
    let mut mailboxes = txn.open_table(TOKEN_MAILBOXES)?;
    let tokens = txn.open_table(TOKEN_ACTIVITIES)?;
    let now = claim_over(&meta, &mailboxes, &tokens, mailbox, format, shard)?;
    if now.as_ref() != Some(expected) {
        return Ok(Claimed::Moved);
    }
    let m = expected.mailbox;
    mailboxes.insert(mailbox, (m.user, m.last_counter))?;
    if expected.new_user {
        meta.insert(NEXT_USER, m.user + 1)?;
    }
    Ok(Claimed::Recorded)
}

/// The index row of a token the activity `id` carries.
pub(crate) fn index_token(txn: &WriteTransaction, token: &str, id: u64) -> Result<(), StoreError> {
    txn.open_table(TOKEN_ACTIVITIES)?.insert((token, id), ())?;
    Ok(())
}
