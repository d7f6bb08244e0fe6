"""Exercises every operation of docs/openapi.json through the client openapi-python-client
generated from it (package `sidesync_api_client`), against a running sidesync that
tests/openapi_client.rs set up; checks each answer's status and that it parses into the
documented model, and that the model gives back the JSON it was read from.

Usage: exercise.py CONTEXT.json REPORT.json
  CONTEXT: {"base_url", "token", "read_token", "user", "held", "webhook"}
  REPORT: {"operations": [operationId...]}: what was called; the Rust test compares it with the
  document's operationIds, so a new operation must be called here too.
       exercise.py webhooks BODIES.json REPORT.json
  BODIES: the event bodies a webhook receiver took; each is parsed with its type's model.
  REPORT: {"webhook_events": [type...]}: the types parsed.
A failed check raises (exit status 1, the traceback says which).
"""

import json
import sys
import time

from sidesync_api_client import AuthenticatedClient, Client
from sidesync_api_client import models
from sidesync_api_client.api.activities import (
    get_activity,
    get_activity_raw,
    list_activities,
    set_activity_regarding,
)
from sidesync_api_client.api.alerts import list_alerts
from sidesync_api_client.api.contacts import put_contacts
from sidesync_api_client.api.documentation import get_openapi_document
from sidesync_api_client.api.events import list_events
from sidesync_api_client.api.mailboxes import (
    approve_mailbox,
    get_mailbox_test,
    list_mailbox_failures,
    list_mailboxes,
    retry_mailbox_failure,
    start_mailbox_test,
)
from sidesync_api_client.api.outbox import (
    cancel_outbox_email,
    get_outbox_email,
    list_outbox,
    queue_outbox_email,
    resend_outbox_email,
)
from sidesync_api_client.api.status import get_status
from sidesync_api_client.api.webhooks import (
    list_dead_letters,
    list_webhooks,
    redeliver_dead_letter,
)

CALLED = set()

# A model with additionalProperties false gives back exactly what it read; these are
# read as free objects (their to_dict is the whole document or an empty body).
NOT_ROUND_TRIPPED = {"getOpenapiDocument", "getActivityRaw"}


def operation_id(module):
    """The operationId a generated module is named after (snake_case of it)."""
    first, *rest = module.__name__.rsplit(".", 1)[1].split("_")
    return first + "".join(w.capitalize() for w in rest)


def call(module, status, model, **kwargs):
    """Calls `module` and checks the status and the parsed model; returns the parsed answer."""
    oid = operation_id(module)
    CALLED.add(oid)
    answer = module.sync_detailed(**kwargs)
    code = int(answer.status_code)
    assert code == status, f"{oid}: HTTP {code}, not {status}: {answer.content[:500]!r}"
    parsed = answer.parsed
    assert isinstance(parsed, model), f"{oid}: {type(parsed).__name__}, not {model.__name__}"
    if model is not bytes and oid not in NOT_ROUND_TRIPPED:
        given = json.loads(answer.content)
        again = parsed.to_dict()
        assert again == given, f"{oid}: the model lost or changed members:\n{given}\n{again}"
    return parsed


def wait(what, check, limit=60):
    """Waits for `check` to give something other than None, with a deadline."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = check()
        if got is not None:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def main():
    ctx = json.load(open(sys.argv[1]))
    base = ctx["base_url"]
    admin = AuthenticatedClient(base_url=base, token=ctx["token"], timeout=60)
    reader = AuthenticatedClient(base_url=base, token=ctx["read_token"], timeout=60)
    anonymous = Client(base_url=base, timeout=60)
    user, held, hook = ctx["user"], ctx["held"], ctx["webhook"]

    # The document: no token needed.
    doc = call(get_openapi_document, 200, models.GetOpenapiDocumentResponse200, client=anonymous)
    assert doc.openapi == "3.1.0"
    # The overview: free from loopback.
    status = call(get_status, 200, models.Status, client=anonymous)
    assert any(m.email_address == user for m in status.mailboxes), status.mailboxes

    # 401 without a token, 403 beyond a read token's scope: problem+json, parsed.
    p = call(list_activities, 401, models.Problem, client=anonymous)
    assert p.type_ == "urn:sidesync:problem:unauthorized", p
    p = call(approve_mailbox, 403, models.Problem, client=reader, address=user,
             body=models.ApproveMailboxBody())
    assert p.type_ == "urn:sidesync:problem:forbidden", p

    # Activities: a page, the next, one, its raw MIME, what it is regarding; contacts.
    page = call(list_activities, 200, models.ActivityPage, client=admin, limit=2)
    assert len(page.activities) == 2 and page.next_cursor, page
    call(list_activities, 200, models.ActivityPage, client=admin, cursor=page.next_cursor)
    p = call(list_activities, 400, models.Problem, client=admin, automatic="noise")
    assert "automatic" in p.detail, p
    everything = call(list_activities, 200, models.ActivityPage, client=admin, limit=100)
    reply = next(a for a in everything.activities if a.message_id == "second@example.net")
    one = call(get_activity, 200, models.ActivityDetail, client=admin, id=str(reply.id))
    assert len(one.correlation.related_activities) == 1, one.correlation
    call(get_activity, 404, models.Problem, client=admin, id="999999")
    raw = call(get_activity_raw, 200, bytes, client=admin, id=str(reply.id))
    assert b"Message-ID: <second@example.net>" in raw, raw[:200]
    regarding = call(set_activity_regarding, 200, models.Regarding, client=admin,
                     id=str(reply.id),
                     body=models.SetActivityRegardingBody(regarding="account:7"))
    assert regarding.regarding == "account:7", regarding
    contacts = call(put_contacts, 200, models.ContactsResult, client=admin,
                    body=models.ContactsRequest(upsert=[
                        models.ContactEntry(address="a@example.net", records="contact:1"),
                        models.ContactEntry(address="b@example.net", records=["contact:2"]),
                    ]))
    assert contacts.upserted == 2, contacts
    call(put_contacts, 400, models.Problem, client=admin,
         body=models.ContactsRequest(delete=["not an address"]))

    # Mailboxes: list, approve, Test & Enable, failures.
    mailboxes = call(list_mailboxes, 200, models.MailboxPage, client=admin, limit=10)
    assert mailboxes.total == 3, mailboxes.total
    approved = call(approve_mailbox, 200, models.Approved, client=admin, address=user,
                    body=models.ApproveMailboxBody(approval="approved"))
    assert approved.approval == "approved", approved
    call(approve_mailbox, 404, models.Problem, client=admin, address="nobody@example.com",
         body=models.ApproveMailboxBody())
    call(start_mailbox_test, 202, models.TestRunning, client=admin, address=user)

    def test_done():
        answer = get_mailbox_test.sync_detailed(address=user, client=admin)
        return answer if int(answer.status_code) == 200 else None

    wait("the Test & Enable result", test_done)
    done = call(get_mailbox_test, 200, models.TestDone, client=admin, address=user)
    assert done.mailbox == user, done
    failures = call(list_mailbox_failures, 200, models.Failures, client=admin, address=user)
    assert failures.email_address == user, failures
    p = call(retry_mailbox_failure, 404, models.Problem, client=admin, address=user,
             key="nothing")
    assert p.type_ == "urn:sidesync:problem:not-found", p

    # Alerts: the broken mailbox's.
    alerts = call(list_alerts, 200, models.AlertPage, client=admin, limit=50)
    assert alerts.alerts, alerts

    # The outbox: one email sent through the SMTP server, one held (its mailbox is not
    # approved) and cancelled; resending needs a failed one (409 otherwise).
    email = models.OutboxEmailRequest(
        from_=user, to=["x@example.net"], subject="through the client", text="t",
        attachments=[models.OutboxAttachment(filename="a.txt", content_type="text/plain",
                                             content_base64="aGVsbG8=")])
    sent = call(queue_outbox_email, 202, models.Queued, client=admin, body=email,
                idempotency_key="client-1")

    def sent_status():
        answer = get_outbox_email.sync_detailed(id=str(sent.id), client=admin)
        return answer if answer.parsed.status == models.OutboxStatus.SENT else None

    wait("the email sent", sent_status)
    email = models.OutboxEmailRequest(from_=held, to=["y@example.net"], subject="held", text="t")
    queued = call(queue_outbox_email, 202, models.Queued, client=admin, body=email)
    p = call(queue_outbox_email, 400, models.Problem, client=admin,
             body=models.OutboxEmailRequest(from_=user, to=["y@example.net\r\nBcc: z@x"]))
    assert "to[0]" in p.detail, p
    outbox = call(list_outbox, 200, models.OutboxPage, client=admin, limit=10)
    assert {e.id for e in outbox.outbox} >= {sent.id, queued.id}, outbox
    got = call(get_outbox_email, 200, models.Outbox, client=admin, id=str(sent.id))
    assert got.status == models.OutboxStatus.SENT and got.sent_at, got
    cancelled = call(cancel_outbox_email, 200, models.Outbox, client=admin, id=str(queued.id))
    assert cancelled.status == models.OutboxStatus.CANCELLED, cancelled
    p = call(resend_outbox_email, 409, models.Problem, client=admin, id=str(queued.id))
    assert p.outbox_status == "cancelled", p

    # The feed, parsed into each event type's model.
    events = call(list_events, 200, models.EventPage, client=admin, after=0, limit=500)
    kinds = {e.type_.value for e in events.events}
    assert {"activity.created", "activity.updated", "outbox.status_changed",
            "mailbox.state_changed", "alert.raised"} <= kinds, kinds
    for e in events.events:
        expected = EVENT_MODELS[e.type_.value]
        assert isinstance(e, expected), f"{e.type_.value} parsed as {type(e).__name__}"
    call(list_events, 400, models.Problem, client=admin, after=-1)

    # Webhooks, dead letters (the receiver refuses), redelivery.
    hooks = call(list_webhooks, 200, models.Webhooks, client=admin)
    assert hook in {w.name for w in hooks.webhooks}, hooks

    def dead():
        answer = list_dead_letters.sync_detailed(name=hook, client=admin)
        return answer if answer.parsed.dead_letters else None

    wait("a dead letter", dead)
    letters = call(list_dead_letters, 200, models.DeadLetterPage, client=admin, name=hook)
    seq = letters.dead_letters[0].event.seq
    again = call(redeliver_dead_letter, 202, models.Redeliver, client=admin, name=hook,
                 seq=str(seq))
    assert again.seq == seq and again.webhook == hook, again
    call(list_dead_letters, 404, models.Problem, client=admin, name="nowhere")

    json.dump({"operations": sorted(CALLED)}, open(sys.argv[2], "w"))


EVENT_MODELS = {
    "activity.created": models.ActivityCreatedEvent,
    "activity.updated": models.ActivityUpdatedEvent,
    "outbox.status_changed": models.OutboxStatusChangedEvent,
    "outbox.bounced": models.OutboxBouncedEvent,
    "mailbox.state_changed": models.MailboxStateChangedEvent,
    "alert.raised": models.AlertRaisedEvent,
}


def webhooks(bodies_file, report_file):
    """Parses each webhook body delivered (the `webhooks` section's schemas) into its model."""
    parsed = set()
    for body in json.load(open(bodies_file)):
        model = EVENT_MODELS[body["type"]]
        event = model.from_dict(body)
        assert event.to_dict() == body, f"{body['type']}: {body}\n{event.to_dict()}"
        parsed.add(body["type"])
    json.dump({"webhook_events": sorted(parsed)}, open(report_file, "w"))


if __name__ == "__main__":
    if sys.argv[1] == "webhooks":
        webhooks(sys.argv[2], sys.argv[3])
    else:
        main()
