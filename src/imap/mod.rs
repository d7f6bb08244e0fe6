//! An IMAP client session for incoming sync, on top of async-imap, over the connection layer.
//!
//! Every network step runs under the mailbox's connection timeout. Mailboxes are opened with
//! EXAMINE (read-only) and bodies fetched with BODY.PEEK[], so the server's \Seen flags never change.

mod auth;
pub mod changes;
pub mod guard;
mod starttls;
mod uidset;

use std::time::Duration;

use async_imap::imap_proto::{Capability, Response, ResponseCode};
use async_imap::{Client, Session};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::config::TlsMode;
use crate::engine::error::SyncError;
use crate::net::{self, MailStream, NetError, StepError};
use crate::tracking::plan::{FolderStatus, ListedMessage};
use crate::tracking::sent_folder::ListedFolder;

pub use crate::net::{Login, Target};
pub use uidset::uid_set;

/// One fetched email.
pub struct FetchedMessage {
    pub uid: u32,
    pub raw: Vec<u8>,
    /// Its flags when fetched: the baseline later changes are compared with.
    pub flags: Vec<String>,
}

/// The stream under async-imap: every byte the server sends passes the [`guard`] first.
type ImapStream = guard::Guarded<MailStream>;

pub struct ImapSession {
    session: Session<ImapStream>,
    address: String,
    timeout: Duration,
    /// Raised for a body fetch to what its listed sizes allow, lowered again after it.
    literal_limit: guard::LiteralLimit,
    /// QRESYNC is enabled: expunges can be asked for with VANISHED (see `changes`).
    qresync: bool,
}

/// A read that failed: a guard violation is the server's fault and says so, as does an answer
/// that does not parse; anything else is a lost connection.
fn read_failed(address: &str, e: &std::io::Error) -> SyncError {
    match guard::violation_of(e) {
        Some(v) => SyncError::ProtocolViolation {
            address: address.to_string(),
            detail: v.to_string(),
        },
        None if unparsable(e) => SyncError::Protocol {
            address: address.to_string(),
            detail: "an answer that does not parse as IMAP4rev1".into(),
        },
        None => SyncError::ConnectionLost {
            address: address.to_string(),
        },
    }
}

/// async-imap reports an answer imap-proto cannot parse as an `Other` error "… during parsing of
/// …" (with the server's bytes, which are not repeated here).
fn unparsable(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().contains("during parsing of")
}

/// Before login, an answer that does not parse means the server does not speak IMAP4rev1 (a
/// capability list without IMAP4rev1 is one): no retry will change that.
fn not_imap(address: &str) -> SyncError {
    SyncError::Unsupported(format!(
        "{address} does not answer as an IMAP4rev1 server: it is not an IMAP server sidesync \
         can use (check the profile's server type and port)"
    ))
}

/// async-imap renders a NO/BAD reply as the Debug of its parts
/// (`code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")`): keep the server's text.
pub(crate) fn server_text(reply: &str) -> String {
    if let Some(start) = reply.find("info: Some(\"") {
        let rest = &reply[start + "info: Some(\"".len()..];
        if let Some(end) = rest.rfind("\")") {
            return rest[..end].replace("\\\"", "\"");
        }
    }
    reply.to_string()
}

fn lost(address: &str, e: async_imap::error::Error) -> SyncError {
    use async_imap::error::Error as E;
    match e {
        E::Io(e) => read_failed(address, &e),
        E::ConnectionLost => SyncError::ConnectionLost {
            address: address.to_string(),
        },
        E::No(reply) | E::Bad(reply) => SyncError::Protocol {
            address: address.to_string(),
            detail: server_text(&reply),
        },
        other => SyncError::Protocol {
            address: address.to_string(),
            detail: other.to_string(),
        },
    }
}

/// A folder that will not open: NO is `folder_missing` (permanent), anything else a lost link.
fn folder_error(folder: &str, address: &str, e: async_imap::error::Error) -> SyncError {
    match e {
        async_imap::error::Error::No(reply) => SyncError::FolderMissing {
            folder: folder.to_string(),
            reply: server_text(&reply),
        },
        other => lost(address, other),
    }
}

/// Runs one IMAP step under the timeout, mapping failures with `on_error`.
async fn step<T>(
    address: &str,
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
    on_error: impl FnOnce(async_imap::error::Error) -> SyncError,
) -> Result<T, SyncError> {
    match net::step(address, what, limit, fut).await {
        Ok(v) => Ok(v),
        Err(StepError::Failed(e)) => Err(on_error(e)),
        Err(StepError::TimedOut(e)) => Err(SyncError::Net(e)),
    }
}

/// What a move to Undeliverable did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveOutcome {
    Moved,
    /// The server has neither MOVE nor UIDPLUS: the email was copied and left where it was.
    CopiedOnly,
}

impl ImapSession {
    /// Connects, negotiates TLS as configured, and logs in.
    pub async fn open(target: &Target<'_>, login: &Login<'_>) -> Result<ImapSession, SyncError> {
        let address = format!("{}:{}", target.host, target.port);
        let limit = target.timeout;
        let stream = net::open_stream(target).await?;
        // STARTTLS is negotiated on sidesync's own reader: no pre-TLS byte reaches async-imap.
        let stream = match target.tls {
            TlsMode::StartTls => {
                let plain = starttls::negotiate(stream, &address, limit).await?;
                net::start_tls(plain, target, limit).await?
            }
            TlsMode::Implicit | TlsMode::None => stream,
        };
        let (stream, literal_limit) = guard::Guarded::new(stream);
        let mut client = Client::new(stream);
        // After STARTTLS there is no greeting; capabilities before TLS cannot be trusted
        // (RFC 3501 §6.2.1), so they are asked again.
        let caps = match target.tls {
            TlsMode::StartTls => None,
            TlsMode::Implicit | TlsMode::None => {
                read_greeting(&mut client, &address, limit).await?
            }
        };
        let caps = match caps {
            Some(c) => c,
            None => capabilities(&mut client, &address, limit).await?,
        };
        if !caps.iter().any(|c| c == "IMAP4REV1" || c == "IMAP4REV2") {
            return Err(not_imap(&address));
        }
        let mut session = auth::login(
            client,
            &caps,
            target.auth,
            login,
            (target.host, target.port),
            limit,
        )
        .await?;
        // CONDSTORE makes EXAMINE report HIGHESTMODSEQ (RFC 7162); QRESYNC (which implies it)
        // also lets a fetch name the UIDs expunged since a mod-sequence. ENABLE must come before
        // any folder is selected; servers often announce both only after login, so both are
        // asked for and the ENABLED answer says which the server took. A server without them
        // just says no.
        let mut qresync = false;
        if caps.iter().any(|c| c == "ENABLE" || c == "CONDSTORE") {
            while session.unsolicited_responses.try_recv().is_ok() {}
            let enabled = tokio::time::timeout(
                limit,
                session.run_command_and_check_ok("ENABLE CONDSTORE QRESYNC"),
            )
            .await;
            if matches!(enabled, Ok(Ok(()))) {
                while let Ok(r) = session.unsolicited_responses.try_recv() {
                    if let async_imap::types::UnsolicitedResponse::Other(data) = r
                        && let Response::Capabilities(list) = data.parsed()
                    {
                        qresync |= list.iter().any(
                            |c| matches!(c, Capability::Atom(a) if a.eq_ignore_ascii_case("QRESYNC")),
                        );
                    }
                }
            }
        }
        Ok(ImapSession {
            session,
            address,
            timeout: limit,
            literal_limit,
            qresync,
        })
    }

    /// NOOP: whether a kept session still answers (the server may have logged it out).
    pub async fn alive(&mut self) -> bool {
        tokio::time::timeout(
            self.timeout.min(Duration::from_secs(10)),
            self.session.noop(),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// EXAMINE: opens the folder read-only and reports its UIDVALIDITY, UIDNEXT, EXISTS, HIGHESTMODSEQ.
    pub async fn examine(&mut self, folder: &str) -> Result<FolderStatus, SyncError> {
        folder_name_ok(folder)?;
        let address = self.address.clone();
        let mailbox = step(
            &address,
            "opening the folder",
            self.timeout,
            self.session.examine(folder),
            |e| folder_error(folder, &address, e),
        )
        .await?;
        Ok(FolderStatus {
            uidvalidity: mailbox.uid_validity,
            uidnext: mailbox.uid_next,
            exists: mailbox.exists,
            highest_modseq: mailbox.highest_modseq,
        })
    }

    /// Lists UID, size and INTERNALDATE of every message above `after_uid`.
    pub async fn list_after(&mut self, after_uid: u32) -> Result<Vec<ListedMessage>, SyncError> {
        let address = self.address.clone();
        let limit = self.timeout;
        let range = format!("{}:*", after_uid.saturating_add(1));
        let mut stream = step(
            &address,
            "listing messages",
            limit,
            self.session
                .uid_fetch(range, "(UID RFC822.SIZE INTERNALDATE)"),
            |e| lost(&address, e),
        )
        .await?;
        let mut out = Vec::new();
        while let Some(item) = next_item(&mut stream, &address, "listing messages", limit).await? {
            if let (Some(uid), Some(size)) = (item.uid, item.size) {
                out.push(ListedMessage {
                    uid,
                    size,
                    received: item.internal_date().map(|d| d.timestamp()),
                });
            }
        }
        Ok(out)
    }

    /// Fetches the full raw bodies of `uids` with BODY.PEEK[] (no flag changes). A body literal
    /// larger than `largest_expected` is a protocol violation (the server listed smaller sizes).
    pub async fn fetch_bodies(
        &mut self,
        uids: &[u32],
        largest_expected: u64,
    ) -> Result<Vec<FetchedMessage>, SyncError> {
        self.fetch_part(uids, largest_expected, false).await
    }

    /// Fetches only the header blocks of `uids` with BODY.PEEK[HEADER]: the tracking decision
    /// reads them before any body is fetched.
    pub async fn fetch_headers(
        &mut self,
        uids: &[u32],
        largest_expected: u64,
    ) -> Result<Vec<FetchedMessage>, SyncError> {
        self.fetch_part(uids, largest_expected, true).await
    }

    async fn fetch_part(
        &mut self,
        uids: &[u32],
        largest_expected: u64,
        header_only: bool,
    ) -> Result<Vec<FetchedMessage>, SyncError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let address = self.address.clone();
        let limit = self.timeout;
        self.literal_limit.set(largest_expected);
        let query = if header_only {
            "(UID FLAGS BODY.PEEK[HEADER])"
        } else {
            "(UID FLAGS BODY.PEEK[])"
        };
        let fetched = async {
            let mut stream = step(
                &address,
                "fetching messages",
                limit,
                self.session.uid_fetch(uid_set(uids), query),
                |e| lost(&address, e),
            )
            .await?;
            let mut out = Vec::with_capacity(uids.len());
            while let Some(item) =
                next_item(&mut stream, &address, "fetching messages", limit).await?
            {
                let part = if header_only {
                    item.header()
                } else {
                    item.body()
                };
                // Unsolicited FETCH responses (flag changes) carry no body: skip them.
                if let (Some(uid), Some(part)) = (item.uid, part) {
                    out.push(FetchedMessage {
                        uid,
                        raw: part.to_vec(),
                        flags: changes::flags_of(&item),
                    });
                }
            }
            Ok(out)
        }
        .await;
        self.literal_limit.set(guard::DEFAULT_LITERAL_LIMIT);
        fetched
    }

    /// Whether the server offers `capability` (asked after login).
    pub async fn offers(&mut self, capability: &str) -> Result<bool, SyncError> {
        Ok(self.capabilities().await?.has_str(capability))
    }

    /// NOTIFY (RFC 5465): from now on the server also tells of new and expunged messages in
    /// `folders` (as STATUS) on this connection, beside those of the selected folder, so one IDLE
    /// watches them all. False when the server does not offer NOTIFY, refuses it, or a folder's
    /// name cannot be sent as a quoted string: the caller watches those folders otherwise.
    pub async fn notify_folders(&mut self, folders: &[String]) -> Result<bool, SyncError> {
        if folders.is_empty() || !self.offers("NOTIFY").await? {
            return Ok(false);
        }
        let Some(command) = notify_command(folders) else {
            return Ok(false);
        };
        let address = self.address.clone();
        let asked = net::step(
            &address,
            "asking for NOTIFY",
            self.timeout,
            self.session.run_command_and_check_ok(&command),
        )
        .await;
        match asked {
            Ok(()) => Ok(true),
            Err(StepError::Failed(
                async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_),
            )) => Ok(false),
            Err(StepError::Failed(e)) => Err(lost(&address, e)),
            Err(StepError::TimedOut(e)) => Err(SyncError::Net(e)),
        }
    }

    /// IDLE (RFC 2177) on the selected folder until the server tells of a change (true) or
    /// `max` passes without a word from it (false), then DONE. Every step but the wait itself
    /// is bounded by the connection timeout; the wait is bounded by `max`.
    /// `interrupt` ending also ends the wait (a sync wants the connection).
    pub async fn idle(
        self,
        max: Duration,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> Result<(ImapSession, bool), SyncError> {
        let ImapSession {
            session,
            address,
            timeout,
            literal_limit,
            qresync,
        } = self;
        // Changes the server reports outside the wait itself (after IDLE was sent but before
        // its go-ahead, or after DONE) land in the unsolicited channel: they count too, or an
        // email arriving at that moment would wait for the next poll.
        let unsolicited = session.unsolicited_responses.clone();
        let mut handle = session.idle();
        step(&address, "starting IDLE", timeout, handle.init(), |e| {
            lost(&address, e)
        })
        .await?;
        let mut changed = false;
        while unsolicited.try_recv().is_ok() {
            changed = true;
        }
        if !changed {
            let (wait, stop) = handle.wait_with_timeout(max);
            let mut wait = std::pin::pin!(wait);
            let waited = tokio::select! {
                r = &mut wait => r,
                () = interrupt => {
                    // Dropping the stop source ends the wait at once (ManualInterrupt).
                    drop(stop);
                    wait.await
                }
            };
            changed = match waited {
                Ok(async_imap::extensions::idle::IdleResponse::NewData(_)) => true,
                Ok(_) => false,
                Err(e) => return Err(lost(&address, e)),
            };
        }
        let session = step(&address, "ending IDLE", timeout, handle.done(), |e| {
            lost(&address, e)
        })
        .await?;
        while unsolicited.try_recv().is_ok() {
            changed = true;
        }
        Ok((
            ImapSession {
                session,
                address,
                timeout,
                literal_limit,
                qresync,
            },
            changed,
        ))
    }

    /// CAPABILITY after login (MOVE and UIDPLUS are often announced only then).
    async fn capabilities(&mut self) -> Result<async_imap::types::Capabilities, SyncError> {
        let address = self.address.clone();
        step(
            &address,
            "asking for capabilities",
            self.timeout,
            self.session.capabilities(),
            |e| lost(&address, e),
        )
        .await
    }

    /// Moves `uids` of `folder` (if its UIDVALIDITY is still `uidvalidity`) to `target`, creating
    /// it when missing: UID MOVE where offered, else UID COPY, \Deleted and UID EXPUNGE of exactly
    /// those UIDs (UIDPLUS), else only a copy (a plain EXPUNGE could remove the user's own
    /// deleted mail). Returns how it went, or None when the folder changed UIDVALIDITY.
    pub async fn move_messages(
        &mut self,
        folder: &str,
        uidvalidity: u32,
        uids: &[u32],
        target: &str,
    ) -> Result<Option<MoveOutcome>, SyncError> {
        folder_name_ok(folder)?;
        folder_name_ok(target)?;
        let address = self.address.clone();
        let limit = self.timeout;
        let caps = self.capabilities().await?;
        let (has_move, has_uidplus) = (caps.has_str("MOVE"), caps.has_str("UIDPLUS"));
        // CREATE of an existing folder is a NO: fine either way, SELECT/MOVE say what matters.
        let _ = net::step(
            &address,
            "creating a folder",
            limit,
            self.session.create(target),
        )
        .await;
        let mailbox = step(
            &address,
            "opening the folder for a move",
            limit,
            self.session.select(folder),
            |e| folder_error(folder, &address, e),
        )
        .await?;
        if mailbox.uid_validity != Some(uidvalidity) {
            return Ok(None);
        }
        let set = uid_set(uids);
        let refused = |what: &'static str| {
            let address = address.clone();
            move |e: async_imap::error::Error| match e {
                async_imap::error::Error::No(reply) | async_imap::error::Error::Bad(reply) => {
                    SyncError::Protocol {
                        address: address.clone(),
                        detail: format!("{what}: {}", server_text(&reply)),
                    }
                }
                other => lost(&address, other),
            }
        };
        if has_move {
            step(
                &address,
                "moving messages",
                limit,
                self.session.uid_mv(&set, target),
                refused("UID MOVE"),
            )
            .await?;
            return Ok(Some(MoveOutcome::Moved));
        }
        step(
            &address,
            "copying messages",
            limit,
            self.session.uid_copy(&set, target),
            refused("UID COPY"),
        )
        .await?;
        if !has_uidplus {
            return Ok(Some(MoveOutcome::CopiedOnly));
        }
        self.expunge_uids(&set).await?;
        Ok(Some(MoveOutcome::Moved))
    }

    /// Deletes exactly `uids` of `folder` (if its UIDVALIDITY is still `uidvalidity`): \Deleted,
    /// then UID EXPUNGE. Without UIDPLUS nothing is deleted (a plain EXPUNGE could remove the
    /// user's own deleted mail): returns false.
    pub async fn delete_messages(
        &mut self,
        folder: &str,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<bool, SyncError> {
        if uids.is_empty() {
            return Ok(true);
        }
        folder_name_ok(folder)?;
        let address = self.address.clone();
        let limit = self.timeout;
        let caps = self.capabilities().await?;
        if !caps.has_str("UIDPLUS") {
            return Ok(false);
        }
        let mailbox = step(
            &address,
            "opening the folder to delete",
            limit,
            self.session.select(folder),
            |e| lost(&address, e),
        )
        .await?;
        if mailbox.uid_validity != Some(uidvalidity) {
            return Ok(false);
        }
        self.expunge_uids(&uid_set(uids)).await?;
        Ok(true)
    }

    /// \Deleted on exactly `set`, then UID EXPUNGE of exactly `set` (UIDPLUS).
    async fn expunge_uids(&mut self, set: &str) -> Result<(), SyncError> {
        let address = self.address.clone();
        let limit = self.timeout;
        let refused = |what: &'static str| {
            let address = address.clone();
            move |e: async_imap::error::Error| match e {
                async_imap::error::Error::No(reply) | async_imap::error::Error::Bad(reply) => {
                    SyncError::Protocol {
                        address: address.clone(),
                        detail: format!("{what}: {}", server_text(&reply)),
                    }
                }
                other => lost(&address, other),
            }
        };
        {
            let mut stored = step(
                &address,
                "flagging messages",
                limit,
                self.session.uid_store(set, "+FLAGS.SILENT (\\Deleted)"),
                refused("UID STORE"),
            )
            .await?;
            while next_item(&mut stored, &address, "flagging messages", limit)
                .await?
                .is_some()
            {}
        }
        let expunged = step(
            &address,
            "expunging messages",
            limit,
            self.session.uid_expunge(set),
            refused("UID EXPUNGE"),
        )
        .await?;
        let drained = net::step(&address, "expunging messages", limit, async {
            let mut expunged = std::pin::pin!(expunged);
            while let Some(r) = expunged.next().await {
                r?;
            }
            Ok::<(), async_imap::error::Error>(())
        })
        .await;
        match drained {
            Ok(()) => Ok(()),
            Err(StepError::Failed(e)) => Err(refused("UID EXPUNGE")(e)),
            Err(StepError::TimedOut(e)) => Err(SyncError::Net(e)),
        }
    }

    /// LIST of every folder with its `\Sent` mark: `LIST "" "*" RETURN (SPECIAL-USE)` where the
    /// server offers SPECIAL-USE (RFC 6154), else a plain LIST, whose attributes some servers
    /// (dovecot) fill in all the same.
    pub async fn list_folders(&mut self) -> Result<Vec<ListedFolder>, SyncError> {
        use async_imap::imap_proto::NameAttribute;
        let special_use = self.offers("SPECIAL-USE").await?;
        let pattern = if special_use {
            "\"*\" RETURN (SPECIAL-USE)"
        } else {
            "\"*\""
        };
        let address = self.address.clone();
        let limit = self.timeout;
        let mut names = step(
            &address,
            "listing folders",
            limit,
            self.session.list(Some(""), Some(pattern)),
            |e| lost(&address, e),
        )
        .await?;
        let mut out = Vec::new();
        loop {
            let name = match tokio::time::timeout(limit, names.next()).await {
                Err(_) => {
                    return Err(SyncError::Net(NetError::Timeout {
                        address: address.clone(),
                        step: "listing folders",
                        seconds: limit.as_secs().max(1),
                    }));
                }
                Ok(None) => break,
                Ok(Some(Ok(n))) => n,
                Ok(Some(Err(e))) => return Err(lost(&address, e)),
            };
            let attributes = name.attributes();
            out.push(ListedFolder {
                name: name.name().to_string(),
                sent: attributes.contains(&NameAttribute::Sent),
                unselectable: attributes.iter().any(|a| match a {
                    NameAttribute::NoSelect => true,
                    NameAttribute::Extension(e) => e.eq_ignore_ascii_case("\\NonExistent"),
                    _ => false,
                }),
            });
        }
        Ok(out)
    }

    /// APPEND a message to `folder`, marked \Seen (a copy of what was sent, O5).
    pub async fn append(&mut self, folder: &str, raw: &[u8]) -> Result<(), SyncError> {
        folder_name_ok(folder)?;
        let address = self.address.clone();
        step(
            &address,
            "appending a copy",
            self.timeout,
            self.session.append(folder, Some("(\\Seen)"), None, raw),
            |e| match e {
                async_imap::error::Error::No(reply) => SyncError::FolderMissing {
                    folder: folder.to_string(),
                    reply: server_text(&reply),
                },
                other => lost(&address, other),
            },
        )
        .await
    }

    /// LOGOUT, best effort: the sync's outcome does not depend on it.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.session.logout()).await;
    }
}

/// `NOTIFY SET` for the selected folder and `folders`; None when a name is not plain printable
/// ASCII (a literal would be needed, and NOTIFY is only a shortcut).
/// A folder name goes into SELECT, EXAMINE, CREATE, MOVE and APPEND as a quoted string, which
/// cannot hold a line end: refused before it is sent.
fn folder_name_ok(folder: &str) -> Result<(), SyncError> {
    net::line::one_line("the IMAP folder name", folder).map_err(SyncError::from)
}

fn notify_command(folders: &[String]) -> Option<String> {
    let mut names = Vec::with_capacity(folders.len());
    for f in folders {
        if f.is_empty() || !f.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return None;
        }
        names.push(format!(
            "\"{}\"",
            f.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    Some(format!(
        "NOTIFY SET (selected (MessageNew MessageExpunge)) (mailboxes ({}) (MessageNew MessageExpunge))",
        names.join(" ")
    ))
}

async fn next_item<S>(
    stream: &mut S,
    address: &str,
    what: &'static str,
    limit: Duration,
) -> Result<Option<async_imap::types::Fetch>, SyncError>
where
    S: futures::Stream<Item = Result<async_imap::types::Fetch, async_imap::error::Error>> + Unpin,
{
    match tokio::time::timeout(limit, stream.next()).await {
        Err(_) => Err(SyncError::Net(NetError::Timeout {
            address: address.to_string(),
            step: what,
            seconds: limit.as_secs().max(1),
        })),
        Ok(None) => Ok(None),
        Ok(Some(Ok(f))) => Ok(Some(f)),
        Ok(Some(Err(e))) => Err(lost(address, e)),
    }
}

/// Reads the server greeting; returns the capabilities when it announces them.
async fn read_greeting(
    client: &mut Client<ImapStream>,
    address: &str,
    limit: Duration,
) -> Result<Option<Vec<String>>, SyncError> {
    let greeting = match net::step(
        address,
        "waiting for the greeting",
        limit,
        client.read_response(),
    )
    .await
    {
        Ok(Some(g)) => g,
        Ok(None) => {
            return Err(SyncError::ConnectionLost {
                address: address.to_string(),
            });
        }
        Err(StepError::Failed(e)) if unparsable(&e) => return Err(not_imap(address)),
        Err(StepError::Failed(e)) => return Err(read_failed(address, &e)),
        Err(StepError::TimedOut(e)) => return Err(SyncError::Net(e)),
    };
    match greeting.parsed() {
        Response::Data { status, outcome } => {
            use async_imap::imap_proto::Status;
            match status {
                Status::Ok | Status::PreAuth => Ok(match &outcome.code {
                    Some(ResponseCode::Capabilities(c)) => Some(cap_names(c)),
                    _ => None,
                }),
                _ => Err(SyncError::ServerBusy {
                    address: address.to_string(),
                    reply: outcome.information.as_deref().unwrap_or("").to_string(),
                }),
            }
        }
        other => Err(SyncError::Protocol {
            address: address.to_string(),
            detail: format!("unexpected greeting {other:?}"),
        }),
    }
}

fn cap_names(caps: &[Capability<'_>]) -> Vec<String> {
    caps.iter()
        .map(|c| match c {
            Capability::Imap4rev1 => "IMAP4REV1".to_string(),
            Capability::Auth(m) => format!("AUTH={}", m.to_ascii_uppercase()),
            Capability::Atom(a) => a.to_ascii_uppercase(),
        })
        .collect()
}

/// CAPABILITY before login. async-imap offers it only on a logged-in session, so this writes the
/// command itself with a tag of its own and reads until that tag completes.
async fn capabilities(
    client: &mut Client<ImapStream>,
    address: &str,
    limit: Duration,
) -> Result<Vec<String>, SyncError> {
    const TAG: &str = "sscap";
    let write = async {
        let s = client.get_mut();
        s.write_all(format!("{TAG} CAPABILITY\r\n").as_bytes())
            .await?;
        s.flush().await
    };
    match net::step(address, "asking for capabilities", limit, write).await {
        Ok(()) => {}
        Err(StepError::Failed(_)) => {
            return Err(SyncError::ConnectionLost {
                address: address.to_string(),
            });
        }
        Err(StepError::TimedOut(e)) => return Err(SyncError::Net(e)),
    }
    let mut caps = Vec::new();
    loop {
        let resp = match net::step(
            address,
            "asking for capabilities",
            limit,
            client.read_response(),
        )
        .await
        {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(SyncError::ConnectionLost {
                    address: address.to_string(),
                });
            }
            Err(StepError::Failed(e)) if unparsable(&e) => return Err(not_imap(address)),
            Err(StepError::Failed(e)) => return Err(read_failed(address, &e)),
            Err(StepError::TimedOut(e)) => return Err(SyncError::Net(e)),
        };
        match resp.parsed() {
            Response::Capabilities(c) => caps.extend(cap_names(c)),
            Response::Done { tag, .. } if tag.0 == TAG => return Ok(caps),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{notify_command, server_text};

    #[test]
    fn notify_names_every_folder_quoted_or_none_at_all() {
        assert_eq!(
            notify_command(&["Projects".into(), "A \"b\" \\c".into()]).as_deref(),
            Some(
                "NOTIFY SET (selected (MessageNew MessageExpunge)) (mailboxes (\"Projects\" \
                 \"A \\\"b\\\" \\\\c\") (MessageNew MessageExpunge))"
            )
        );
        assert_eq!(notify_command(&["Caf\u{e9}".into()]), None);
        assert_eq!(notify_command(&["a\r\nb".into()]), None);
        assert_eq!(notify_command(&["".into()]), None);
    }

    #[test]
    fn keeps_the_servers_words() {
        assert_eq!(
            server_text(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_text("plain words"), "plain words");
    }
}
