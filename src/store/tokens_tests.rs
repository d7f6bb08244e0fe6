//! Tracking tokens in the store (issue 26): allocation in the writer's transaction, the check
//! that turns a raced claim away, and old tokens still resolving after the upgrade to version 3.

use super::tokens::{TOKEN_ACTIVITIES, TOKEN_MAILBOXES};
use super::*;
use crate::tracking::token::TokenFormat;
use crate::tracking::token_alloc::TokenClaim;

fn email(mailbox: &str, subject: &str, token: Option<QueuedToken>) -> QueuedEmail {
    let raw = format!(
        "Message-ID: <{}@x>\r\nFrom: {mailbox}\r\nTo: c@y.org\r\nSubject: {subject}\r\n\r\nhi\r\n",
        subject.len() * 7919 + mailbox.len()
    );
    QueuedEmail {
        mailbox: mailbox.into(),
        headers: crate::tracking::message::parse_headers(raw.as_bytes()),
        raw_encoded: zstd::encode_all(raw.as_bytes(), 1).expect("compress"),
        size: raw.len() as u64,
        recipients: vec!["c@y.org".into()],
        token,
        regarding: None,
        directory: std::sync::Arc::default(),
        idempotency: None,
    }
}

fn claim(store: &Store, mailbox: &str) -> QueuedToken {
    let format = TokenFormat::default();
    let claim = store
        .next_token(mailbox, &format, None)
        .expect("read")
        .expect("a token");
    QueuedToken {
        claim,
        format,
        shard: None,
    }
}

fn queued_id(e: Enqueued) -> u64 {
    match e {
        Enqueued::Queued { id, .. } => id,
        Enqueued::TokenMoved => panic!("the token moved"),
    }
}

/// Each mailbox gets its own user number the first time it sends, and its own counter; a claim
/// another email took first is turned away with nothing written.
#[test]
fn counters_are_per_mailbox_and_allocated_at_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let a1 = claim(&store, "a@x.org");
    assert_eq!(a1.claim.token, "CRM:0001001001");
    // Read before a1 commits: the same claim, as two parallel API calls would get.
    let raced = claim(&store, "a@x.org");
    let id1 = queued_id(
        writer
            .enqueue_blocking(email("a@x.org", "one", Some(a1)))
            .expect("queue"),
    );
    let before = store.activity_count().expect("count");
    assert_eq!(
        writer
            .enqueue_blocking(email("a@x.org", "raced", Some(raced)))
            .expect("queue"),
        Enqueued::TokenMoved
    );
    assert_eq!(
        store.activity_count().expect("count"),
        before,
        "nothing written"
    );
    let a2 = claim(&store, "a@x.org");
    assert_eq!(a2.claim.token, "CRM:0001001002");
    let b1 = claim(&store, "b@x.org");
    assert_eq!(b1.claim.token, "CRM:0001002001", "b is user 2, counter 1");
    let id2 = queued_id(
        writer
            .enqueue_blocking(email("a@x.org", "two", Some(a2)))
            .expect("queue"),
    );
    let id3 = queued_id(
        writer
            .enqueue_blocking(email("b@x.org", "three", Some(b1)))
            .expect("queue"),
    );
    assert_eq!(
        store.activities_by_token("CRM:0001001001").expect("read"),
        vec![id1]
    );
    assert_eq!(
        store.activities_by_token("CRM:0001001002").expect("read"),
        vec![id2]
    );
    assert_eq!(
        store.activities_by_token("CRM:0001002001").expect("read"),
        vec![id3]
    );
    writer.shutdown();
    drop(store);
    // Kept across a restart: the numbers are the store's, not the process's or the config's.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(claim(&store, "a@x.org").claim.token, "CRM:0001001003");
    assert_eq!(claim(&store, "c@x.org").claim.token, "CRM:0001003001");
}

/// A version 2 store whose wrapped counter gave the 1st and the 1,001st email one token: after
/// the upgrade both are indexed (version 2 kept only the newest), a new email never gets that
/// token, and a reply's token resolves through `token_match` to the email it answers.
#[test]
fn a_version_2_store_keeps_every_old_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = "CRM:0001001001";
    let (id_old, id_new) = {
        let store = Store::open(dir.path()).expect("open");
        let writer = store.start_writer();
        let mut ids = Vec::new();
        for subject in ["Invoice", "Renewal"] {
            let e = email("a@x.org", &format!("{subject} [{old}]"), None);
            ids.push(queued_id(writer.enqueue_blocking(e).expect("queue")));
        }
        writer.shutdown();
        // Back to version 2's shape: its index named only the newest, and had no counters.
        let txn = store.db().begin_write().expect("write");
        txn.delete_table(TOKEN_ACTIVITIES).expect("drop");
        txn.delete_table(TOKEN_MAILBOXES).expect("drop");
        txn.open_table(TOKEN_INDEX_V2)
            .expect("v2 index")
            .insert(old, ids[1])
            .expect("insert");
        txn.open_table(META)
            .expect("meta")
            .insert("schema_version", 2)
            .expect("version");
        txn.commit().expect("commit");
        (ids[0], ids[1])
    };
    let store = Store::open(dir.path()).expect("upgrade");
    assert_eq!(store.schema_version().expect("version"), 3);
    assert_eq!(
        store.activities_by_token(old).expect("read"),
        vec![id_new, id_old],
        "both, newest first"
    );
    // Resolution of the old token by the reply's subject.
    let txn = store.db().begin_read().expect("read");
    let tables = index::ReadTables::open(&txn).expect("tables");
    let directory = crate::tracking::decision::Directory::default();
    let look = tables.lookups(&directory);
    let resolve = |subject: &str| {
        use crate::tracking::decision::Lookups;
        crate::tracking::token_match::resolve(
            &look.by_token(old),
            crate::tracking::subject::subject_hash(subject),
        )
        .map(|t| t.activity)
    };
    assert_eq!(resolve(&format!("Re: Invoice [{old}]")), Some(id_old));
    assert_eq!(resolve(&format!("Re: Renewal [{old}]")), Some(id_new));
    // The new allocator passes over every old token: user 1's first would have been it.
    let next: TokenClaim = store
        .next_token("a@x.org", &TokenFormat::default(), None)
        .expect("read")
        .expect("a token");
    assert_eq!(next.token, "CRM:0001001002");
}
