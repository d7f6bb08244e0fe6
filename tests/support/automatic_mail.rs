//! A realistic inbox with the automatic email real mailboxes get (about one in seven): mailing-list
//! posts, newsletters, out-of-office replies, bounces and notifications, shaped as the systems
//! that send them write them (Mailman, a newsletter service, Exchange and Gmail, Postfix and
//! Exchange bounces, Jira and cron). The rest are `mail::sample`'s person-to-person emails.

/// What an email of the inbox is, as the API is expected to flag it (`automatic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Person,
    List,
    Bulk,
    AutoReply,
    Bounce,
    AutoSubmitted,
}

impl Kind {
    /// The `automatic` value of its activity: null for a person's email.
    pub fn flag(self) -> serde_json::Value {
        match self {
            Kind::Person => serde_json::Value::Null,
            Kind::List => "list".into(),
            Kind::Bulk => "bulk".into(),
            Kind::AutoReply => "auto_reply".into(),
            Kind::Bounce => "bounce".into(),
            Kind::AutoSubmitted => "auto_submitted".into(),
        }
    }

    pub const AUTOMATIC: [Kind; 5] = [
        Kind::List,
        Kind::Bulk,
        Kind::AutoReply,
        Kind::Bounce,
        Kind::AutoSubmitted,
    ];
}

/// The kind of email number `n`: one in seven is automatic, the kinds in turn.
pub fn kind(n: usize) -> Kind {
    if n % 7 == 3 {
        Kind::AUTOMATIC[(n / 7) % Kind::AUTOMATIC.len()]
    } else {
        Kind::Person
    }
}

/// The Message-ID of email `n` of `mailbox`, when it has one.
pub fn message_id(mailbox: &str, n: usize) -> Option<String> {
    match kind(n) {
        Kind::Person if n % 37 == 36 => None,
        Kind::Person => Some(super::mail::message_id(mailbox, n)),
        _ => Some(format!(
            "<auto.{n}.{}@machines.test>",
            mailbox.replace('@', ".")
        )),
    }
}

/// Email number `n` of `mailbox`.
pub fn email(mailbox: &str, n: usize) -> Vec<u8> {
    let id = message_id(mailbox, n).unwrap_or_default();
    let date = format!(
        "Date: Tue, {} Sep 2025 {:02}:{:02}:00 +0200\r\n",
        1 + n % 28,
        n % 24,
        n % 60
    );
    let head = format!("Message-ID: {id}\r\n{date}");
    let text = match kind(n) {
        Kind::Person => return super::mail::sample(mailbox, n, 1_500),
        Kind::List => {
            // Mailman 3: List-Id, the list's own headers, and half the time Precedence: list.
            let precedence = if n.is_multiple_of(2) {
                "Precedence: list\r\n"
            } else {
                ""
            };
            format!(
                "{head}From: Dana Developer <dana{}@dev.example>\r\nTo: dev@lists.example.org\r\n\
                 Subject: [dev] Re: release {n} freeze\r\nList-Id: Developers <dev.lists.example.org>\r\n\
                 List-Post: <mailto:dev@lists.example.org>\r\n\
                 List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\n{precedence}\
                 Sender: dev-bounces@lists.example.org\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\nThe branch freezes on Friday.\r\n\
                 _______________________________________________\r\n\
                 dev mailing list -- dev@lists.example.org\r\n",
                n % 9
            )
        }
        Kind::Bulk => format!(
            // A newsletter service: one-click unsubscribe and Precedence: bulk.
            "{head}From: Contoso Deals <news@mail.contoso-shop.example>\r\nTo: {mailbox}\r\n\
             Subject: This week only: {n}% off\r\nPrecedence: bulk\r\n\
             List-Unsubscribe: <https://mail.contoso-shop.example/u/{n}>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"news-{n}\"\r\n\r\n\
             --news-{n}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOffers inside.\r\n\
             --news-{n}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <html><body><h1>Offers</h1></body></html>\r\n--news-{n}--\r\n"
        ),
        Kind::AutoReply if n.is_multiple_of(2) => format!(
            // Exchange: Auto-Submitted and its own suppression header.
            "{head}From: Erin Example <erin@fabrikam.example>\r\nTo: {mailbox}\r\n\
             Subject: Automatic reply: Invoice {n}\r\nAuto-Submitted: auto-replied\r\n\
             X-Auto-Response-Suppress: All\r\nIn-Reply-To: <invoice.{n}@example.com>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             I am out of the office until Monday.\r\n"
        ),
        Kind::AutoReply => format!(
            // A mail client's vacation rule that says so only in its subject.
            "{head}From: Frank <frank@gmail.example>\r\nTo: {mailbox}\r\n\
             Subject: Out of Office: Quarterly report {n}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nBack next week.\r\n"
        ),
        Kind::Bounce if n.is_multiple_of(2) => format!(
            // Postfix: a delivery status report from MAILER-DAEMON.
            "{head}From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\nTo: {mailbox}\r\n\
             Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"bounce-{n}\"\r\n\r\n--bounce-{n}\r\nContent-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\nI'm sorry to have to inform you that \
             your message could not be delivered.\r\n\r\n--bounce-{n}\r\n\
             Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; gone{n}@example.net\r\n\
             Action: failed\r\nStatus: 5.1.1\r\n\r\n--bounce-{n}\r\n\
             Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <sent.{n}@example.com>\r\n\
             Subject: Invoice {n}\r\n\r\n--bounce-{n}--\r\n"
        ),
        Kind::Bounce => format!(
            // Exchange: a non-delivery report from the postmaster, also a report.
            "{head}From: postmaster@outlook.example\r\nTo: {mailbox}\r\n\
             Subject: Undeliverable: Invoice {n}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"ndr-{n}\"\r\n\r\n\
             --ndr-{n}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDelivery has failed.\r\n\
             --ndr-{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;outlook.example\r\n\r\n\
             Final-Recipient: rfc822;nobody{n}@example.org\r\nAction: failed\r\nStatus: 5.4.1\r\n\
             \r\n--ndr-{n}--\r\n"
        ),
        Kind::AutoSubmitted if n.is_multiple_of(2) => format!(
            // Jira: Auto-Submitted, and Precedence: bulk besides.
            "{head}From: \"Jira (tracker)\" <jira@tracker.example>\r\nTo: {mailbox}\r\n\
             Subject: [JIRA] (OPS-{n}) Disk almost full\r\nAuto-Submitted: auto-generated\r\n\
             Precedence: bulk\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Alex created OPS-{n}.\r\n"
        ),
        Kind::AutoSubmitted => format!(
            // cron, through the local MTA.
            "{head}From: Cron Daemon <root@build.example>\r\nTo: {mailbox}\r\n\
             Subject: Cron <root@build> /usr/local/bin/backup\r\nAuto-Submitted: auto-generated\r\n\
             X-Cron-Env: <SHELL=/bin/sh>\r\n\r\nbackup: 1 file changed\r\n"
        ),
    };
    text.into_bytes()
}
