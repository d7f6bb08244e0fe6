//! The tracking look-ups over the store's index tables, for a read transaction (the header
//! pre-screen) and for the writer's own transaction (the decision at commit) alike.

use redb::{ReadTransaction, ReadableTable};

use super::tokens::{TOKEN_ACTIVITIES, activities_of};
use super::{ACTIVITIES, Activity, CONTACTS, EMAIL_INDEX, SUBJECT_INDEX, StoreError, decode};
use crate::tracking::decision::{Directory, Lookups, MailboxInfo, Tracked};
use crate::tracking::subject::subject_hash;
use crate::tracking::token_match::TokenCandidate;

/// How many activities of one subject smart matching looks at, newest first.
const SUBJECT_CANDIDATES: usize = 32;

/// Look-ups over any open tables (read-only or the writer's).
pub(crate) struct TableLookups<'a, E, T, S, A, C> {
    pub email: &'a E,
    pub tokens: &'a T,
    pub subjects: &'a S,
    pub activities: &'a A,
    pub contacts: &'a C,
    pub directory: &'a Directory,
}

impl<E, T, S, A, C> TableLookups<'_, E, T, S, A, C>
where
    A: ReadableTable<u64, &'static [u8]>,
{
    fn activity(&self, id: u64) -> Option<Activity> {
        let v = self.activities.get(id).ok()??;
        decode::<Activity>("activity", v.value()).ok()
    }

    fn tracked_by_id(&self, id: u64) -> Option<Tracked> {
        self.activity(id).map(|a| tracked(&a))
    }
}

pub(crate) fn tracked(a: &Activity) -> Tracked {
    Tracked {
        activity: a.id,
        conversation: if a.conversation == 0 {
            a.id
        } else {
            a.conversation
        },
        regarding: a.regarding.clone(),
        fingerprint: a.fingerprint,
    }
}

// A failed read in a look-up counts as "not found": the decision then tracks a new activity
// rather than lose one, and the commit that follows reports a broken store anyway.
impl<E, T, S, A, C> Lookups for TableLookups<'_, E, T, S, A, C>
where
    E: ReadableTable<&'static str, u64>,
    T: ReadableTable<(&'static str, u64), ()>,
    S: ReadableTable<(u64, u64), ()>,
    A: ReadableTable<u64, &'static [u8]>,
    C: ReadableTable<&'static str, &'static [u8]>,
{
    fn tracked(&self, key: &str) -> Option<Tracked> {
        let id = self.email.get(key).ok()??.value();
        self.tracked_by_id(id)
    }

    fn by_token(&self, token: &str) -> Vec<TokenCandidate> {
        activities_of(self.tokens, token)
            .into_iter()
            .filter_map(|id| self.activity(id))
            .map(|a| TokenCandidate {
                tracked: tracked(&a),
                subject_hash: subject_hash(a.headers.subject.as_deref().unwrap_or_default()),
            })
            .collect()
    }

    fn by_subject(&self, hash: u64) -> Vec<(Tracked, Vec<String>)> {
        let Ok(rows) = self.subjects.range((hash, 0)..=(hash, u64::MAX)) else {
            return Vec::new();
        };
        rows.rev()
            .take(SUBJECT_CANDIDATES)
            .filter_map(|r| r.ok())
            .filter_map(|(k, _)| self.activity(k.value().1))
            .map(|a| {
                let addresses = a.parties.iter().map(|p| p.address.clone()).collect();
                (tracked(&a), addresses)
            })
            .collect()
    }

    fn contact_records(&self, address: &str) -> Vec<String> {
        self.contacts
            .get(address)
            .ok()
            .flatten()
            .and_then(|v| decode::<Vec<String>>("contact", v.value()).ok())
            .unwrap_or_default()
    }

    fn mailbox(&self, address: &str) -> Option<MailboxInfo> {
        self.directory.mailboxes.get(address).copied()
    }
}

/// The index tables of a read transaction.
pub(crate) struct ReadTables {
    email: redb::ReadOnlyTable<&'static str, u64>,
    tokens: redb::ReadOnlyTable<(&'static str, u64), ()>,
    subjects: redb::ReadOnlyTable<(u64, u64), ()>,
    activities: redb::ReadOnlyTable<u64, &'static [u8]>,
    contacts: redb::ReadOnlyTable<&'static str, &'static [u8]>,
}

type ReadLookups<'a> = TableLookups<
    'a,
    redb::ReadOnlyTable<&'static str, u64>,
    redb::ReadOnlyTable<(&'static str, u64), ()>,
    redb::ReadOnlyTable<(u64, u64), ()>,
    redb::ReadOnlyTable<u64, &'static [u8]>,
    redb::ReadOnlyTable<&'static str, &'static [u8]>,
>;

impl ReadTables {
    pub fn open(txn: &ReadTransaction) -> Result<ReadTables, StoreError> {
        Ok(ReadTables {
            email: txn.open_table(EMAIL_INDEX)?,
            tokens: txn.open_table(TOKEN_ACTIVITIES)?,
            subjects: txn.open_table(SUBJECT_INDEX)?,
            activities: txn.open_table(ACTIVITIES)?,
            contacts: txn.open_table(CONTACTS)?,
        })
    }

    pub fn lookups<'a>(&'a self, directory: &'a Directory) -> ReadLookups<'a> {
        TableLookups {
            email: &self.email,
            tokens: &self.tokens,
            subjects: &self.subjects,
            activities: &self.activities,
            contacts: &self.contacts,
            directory,
        }
    }
}
