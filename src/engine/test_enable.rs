//! Test & Enable (M4): connect, authenticate and open INBOX for incoming; connect, authenticate
//! and try the envelope sender (MAIL FROM, then RSET: nothing is sent) for outgoing. Every step is
//! recorded in a transcript with the credentials masked.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;

use super::JobContext;
use super::caught::caught;
use super::error::SyncError;
use super::incoming::IncomingSession;
use crate::config::identity;
use crate::config::{IncomingDelivery, Mailbox, OutgoingDelivery, Profile};
use crate::net::Recorder;
use crate::secret::Secret;
use crate::smtp::{SmtpLogin, SmtpSession, plain_blob};
use crate::store::{DirectionTest, Enablement, RunStatus, TestRecord};

/// Every form in which a credential can cross the wire, for the transcript to mask.
fn secrets(username: &str, password: &Secret, authzid: Option<&str>) -> Vec<String> {
    let p = password.expose();
    let quoted = p.replace('\\', "\\\\").replace('"', "\\\"");
    let login = SmtpLogin {
        username,
        password,
        authzid,
        bearer: false,
    };
    vec![
        p.to_string(),
        quoted,
        STANDARD.encode(p),
        (*plain_blob(&login)).clone(),
    ]
}

fn outcome(result: Result<(), SyncError>, recorder: &Recorder) -> DirectionTest {
    match result {
        Ok(()) => DirectionTest {
            status: RunStatus::Success,
            code: None,
            reason: None,
            transient: false,
            transcript: recorder.render(),
        },
        Err(e) => DirectionTest {
            status: RunStatus::Failure,
            code: Some(e.code().to_string()),
            reason: Some(e.to_string()),
            transient: e.is_transient(),
            transcript: recorder.render(),
        },
    }
}

fn not_run(reason: &str) -> DirectionTest {
    DirectionTest {
        status: RunStatus::NotRun,
        code: None,
        reason: Some(reason.to_string()),
        transient: false,
        transcript: String::new(),
    }
}

async fn test_incoming(ctx: &JobContext, profile: &Profile, mailbox: &Mailbox) -> DirectionTest {
    if mailbox.incoming_delivery != IncomingDelivery::ServerSideSync {
        return not_run("incoming delivery is not server-side sync");
    }
    let recorder = match profile.oauth {
        // The token step records itself and masks what it fetched.
        Some(_) => Recorder::new(Vec::new()),
        None => {
            let (username, password, authzid) = identity(&profile.incoming, mailbox);
            let Some(password) = password else {
                return not_run("the mailbox has no password");
            };
            Recorder::new(secrets(username, password, authzid))
        }
    };
    // A panic in the test is its failure (internal_error), not a lost answer.
    let result = caught(async {
        let permit = ctx.acquire(profile, mailbox, &profile.incoming).await;
        let mut session =
            IncomingSession::open(ctx, profile, mailbox, Some(recorder.clone())).await?;
        let probed = session.probe().await;
        match (probed, session, permit) {
            // The first sync comes right after a passed test: it runs on this session instead
            // of logging in again.
            (Ok(()), IncomingSession::Imap(s), Some(permit)) => {
                recorder.finish();
                super::incoming::keep(
                    ctx,
                    profile,
                    mailbox,
                    s,
                    permit,
                    super::kept_sessions::HANDOFF,
                )
                .await;
                Ok(())
            }
            (probed, session, _) => {
                session.close().await;
                probed
            }
        }
    })
    .await
    .and_then(|r| r);
    outcome(result, &recorder)
}

async fn test_outgoing(ctx: &JobContext, profile: &Profile, mailbox: &Mailbox) -> DirectionTest {
    if mailbox.outgoing_delivery != OutgoingDelivery::ServerSideSync {
        return not_run("outgoing delivery is none");
    }
    let Some(endpoint) = &profile.outgoing else {
        return not_run("the profile has no outgoing server");
    };
    let recorder = match profile.oauth {
        Some(_) => Recorder::new(Vec::new()),
        None => {
            let (username, password, authzid) = identity(endpoint, mailbox);
            let Some(password) = password else {
                return not_run("the mailbox has no password");
            };
            Recorder::new(secrets(username, password, authzid))
        }
    };
    // A panic in the test is its failure (internal_error), not a lost answer.
    let result = caught(async {
        use super::credentials::{credentials, renewed, token_refused};
        let limit = profile.timeout_mailbox_connection_after;
        let creds = credentials(ctx, profile, endpoint, mailbox, Some(&recorder)).await?;
        let target = ctx.target(profile, endpoint, Some(recorder.clone()))?;
        let _permit = ctx.acquire(profile, mailbox, endpoint).await;
        let mut opened = SmtpSession::open(&target, Some(&creds.login())).await;
        if creds.is_bearer()
            && matches!(opened, Err(SyncError::AuthRejected { .. }))
            && let Some(fresh) =
                renewed(ctx, profile, endpoint, mailbox, &creds, Some(&recorder)).await?
        {
            opened = SmtpSession::open(&target, Some(&fresh.login()))
                .await
                .map_err(token_refused);
        }
        let mut session = opened?;
        let checked = session.check_sender(&mailbox.email_address, limit).await;
        session.quit(limit).await;
        checked
    })
    .await
    .and_then(|r| r);
    outcome(result, &recorder)
}

/// Tests both directions. The caller records the result and the enablements that follow.
pub async fn run(ctx: &JobContext, profile: &Profile, mailbox: &Mailbox) -> TestRecord {
    let started_at = Utc::now();
    let started = Instant::now();
    let (incoming, outgoing) = tokio::join!(
        test_incoming(ctx, profile, mailbox),
        test_outgoing(ctx, profile, mailbox)
    );
    TestRecord {
        mailbox: mailbox.email_address.clone(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        incoming,
        outgoing,
    }
}

/// The enablement a direction gets from its test: on when it passed, off with the reason when it
/// failed for good. A transient failure (server down, timeout) or a direction that does not apply
/// leaves what was there: an appliance booting while its mail server restarts must not disable
/// every mailbox; the scheduler retries those with backoff.
pub fn enablement(test: &DirectionTest, previous: &Enablement) -> Enablement {
    match test.status {
        RunStatus::Success => Enablement::Enabled,
        RunStatus::Failure if test.transient => previous.clone(),
        RunStatus::NotRun => previous.clone(),
        RunStatus::Failure => Enablement::Disabled {
            code: test.code.clone().unwrap_or_default(),
            reason: test.reason.clone().unwrap_or_default(),
            at: Utc::now(),
        },
    }
}
