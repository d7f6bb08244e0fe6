//! The guard's grammar, case by case: what passes, and each trick that once got past it.

use super::*;

fn scan(bytes: &[u8]) -> Result<(), Violation> {
    ResponseScanner::new(1000).feed(bytes)
}

/// Feeds `bytes` one at a time and returns where each response ended, and the violation.
fn ends(bytes: &[u8]) -> (Vec<usize>, Option<Violation>) {
    let mut s = ResponseScanner::new(1000);
    let mut out = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let before = s.responses_completed();
        if let Err(v) = s.feed(std::slice::from_ref(b)) {
            return (out, Some(v));
        }
        if s.responses_completed() > before {
            out.push(i + 1);
        }
    }
    (out, None)
}

#[test]
fn ordinary_responses_pass() {
    let mut s = ResponseScanner::new(1000);
    for response in [
        &b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n"[..],
        b"* 1 FETCH (UID 5 BODY[] {13}\r\nhello (((((\r\n)\r\n",
        b"* 2 FETCH (FLAGS (\\Seen $Forwarded \\*) UID 7 MODSEQ (12345))\r\n",
        b"* 3 FETCH (UID 8 RFC822.SIZE 2000 INTERNALDATE \"01-Jan-2026 10:00:00 +0000\")\r\n",
        b"* 4 FETCH (UID 9 BODY[HEADER] NIL BODY[]<0> \"x\" RFC822.TEXT {0}\r\n)\r\n",
        b"* 5 FETCH (EMAILID (M6d99ac3275bb4e) THREADID NIL X-GM-MSGID 1278455344230334865)\r\n",
        b"* 6 FETCH (SAVEDATE \"01-Jan-2025 12:00:00 +0000\" PREVIEW {3}\r\nabc X-FOO (a b c) Y z)\r\n",
        b"* LIST (\\HasNoChildren) \"/\" {4}\r\nSent\r\n",
        b"* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4)\r\n",
        b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n",
        b"* SEARCH 1 2 3\r\n",
        b"* 3 EXISTS\r\n",
        b"+ idling\r\n",
        b"+ \r\n",
        b"a1 OK [READ-ONLY] done {in braces}\r\n",
        b"a2 NO [TRYCREATE] no such folder\r\n",
    ] {
        s.feed(response)
            .unwrap_or_else(|v| panic!("{:?}: {v}", String::from_utf8_lossy(response)));
        assert!(s.at_start(), "{:?}", String::from_utf8_lossy(response));
        assert_eq!(s.depth(), 0);
    }
}

#[test]
fn bytes_split_anywhere_give_the_same_answer() {
    let response =
        b"* 1 FETCH (UID 5 BODY[] {7}\r\n(((((\r\n)\r\n* LIST () \"/\" {2}\r\nab\r\na OK x\r\n";
    let (whole, failed) = ends(response);
    assert_eq!(failed, None);
    assert_eq!(whole.len(), 3);
    for cut in 0..response.len() {
        let mut s = ResponseScanner::new(1000);
        s.feed(&response[..cut]).expect("first part");
        s.feed(&response[cut..]).expect("second part");
        assert_eq!(s.responses_completed(), 3, "cut at {cut}");
        assert!(s.at_start(), "cut at {cut}");
    }
}

/// The trick that aborted the appliance: `{N}` CRLF at the end of status text is plain text to
/// imap-proto, so whatever followed was parsed while the old guard skipped it as a literal.
#[test]
fn a_literal_at_the_end_of_status_text_is_refused() {
    let hidden = format!("* 1 FETCH (BODYSTRUCTURE {}\r\n", "(".repeat(500));
    for head in [
        "* OK hello {#}",
        "* NO [ALERT] x {#}",
        "* BAD {#}",
        "* BYE {#}",
        "* PREAUTH {#}",
        "* OKAY {#}",
        "* ok [BADCHARSET ({#}",
        "a1 OK done {#}",
        "+ {#}",
        "+{#}",
    ] {
        let bytes = format!(
            "{}\r\n{hidden}",
            head.replace('#', &hidden.len().to_string())
        );
        let (ends, failed) = ends(bytes.as_bytes());
        assert_eq!(failed, Some(Violation::LiteralInText), "{head}");
        assert!(ends.is_empty(), "{head}");
    }
    // Braces elsewhere in status text are text.
    assert_eq!(scan(b"* OK {5} is not at the end\r\n"), Ok(()));
    assert_eq!(scan(b"* OK {x}\r\n"), Ok(()));
}

/// imap-proto reads an unknown FETCH item's `(…)` up to the first `)` and a token up to the next
/// space, CRLF and `{N}` included: literals and line ends there are refused.
#[test]
fn unknown_fetch_items_hide_nothing() {
    for bytes in [
        &b"* 1 FETCH (X-ANY (a {5}\r\n)\r\n* 1 FETCH (BODYSTRUCTURE ((((((\r\n"[..],
        b"* 1 FETCH (X-ANY (a \"b\")\r\n",
        b"* 1 FETCH (X-ANY (a (b))\r\n",
        b"* 1 FETCH (X-ANY a{5}\r\n)\r\n(((((\r\n",
        b"* 1 FETCH (X-ANY abc\r\n",
    ] {
        let result = scan(bytes);
        assert!(
            matches!(result, Err(Violation::Malformed { .. })),
            "{:?}: {result:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Items sidesync never asks for, recursive ones among them, are refused by name.
    for item in [
        "ENVELOPE (NIL)",
        "BODYSTRUCTURE (\"text\")",
        "BODY (\"text\")",
    ] {
        assert!(matches!(
            scan(format!("* 1 FETCH ({item})\r\n").as_bytes()),
            Err(Violation::UnexpectedFetchItem(_))
        ));
    }
    assert!(matches!(
        scan(b"* 1 FETCH (BINARY[1] {5}\r\n"),
        Err(Violation::UnexpectedFetchItem(_))
    ));
    // A typed item whose value is not in its form falls back in imap-proto: refused here.
    assert!(matches!(
        scan(b"* 1 FETCH (UID (1 {5}\r\n"),
        Err(Violation::Malformed { .. })
    ));
    assert!(matches!(
        scan(b"* 1 FETCH (FLAGS (\\Seen {5}\r\n"),
        Err(Violation::Malformed { .. })
    ));
}

#[test]
fn strict_data_responses_take_literals_only_after_a_delimiter() {
    assert!(matches!(
        scan(b"* LIST () \"/\" a{5}\r\nhello\r\n"),
        Err(Violation::Malformed { .. })
    ));
    assert!(matches!(
        scan(b"* LIST () \"/\" {5+}\r\nhello\r\n"),
        Err(Violation::Malformed { .. })
    ));
    assert!(matches!(
        scan(b"* LIST () \"/\" \"open\r\n"),
        Err(Violation::Malformed { .. })
    ));
    assert_eq!(scan(b"* LIST () \"/\" {5}\r\nhello\r\n"), Ok(()));
}

#[test]
fn deep_nesting_is_refused_as_greeting_or_inside_any_response() {
    let deep = "(".repeat(100_000);
    assert_eq!(
        scan(format!("* OK {deep}").as_bytes()),
        Err(Violation::TooDeep)
    );
    assert_eq!(
        scan(format!("* NAMESPACE {deep}").as_bytes()),
        Err(Violation::TooDeep)
    );
    // FETCH does not nest past its grammar at all.
    assert!(scan(format!("* 1 FETCH (FLAGS {deep}").as_bytes()).is_err());
    // At the limit it passes.
    let ok = format!("* ID {}{}\r\n", "(".repeat(64), ")".repeat(64));
    assert_eq!(scan(ok.as_bytes()), Ok(()));
}

#[test]
fn endless_lines_and_huge_literals_are_refused() {
    let mut s = ResponseScanner::new(1000);
    let chunk = vec![b'x'; 64 * 1024];
    let mut failed = None;
    for _ in 0..100 {
        if let Err(v) = s.feed(&chunk) {
            failed = Some(v);
            break;
        }
    }
    assert_eq!(failed, Some(Violation::LineTooLong));
    assert!(matches!(
        scan(b"* 1 FETCH (BODY[] {4294967296}\r\n"),
        Err(Violation::LiteralTooLarge { limit: 1000, .. })
    ));
    assert!(matches!(
        scan(b"* 1 FETCH (BODY[] {99999999999999999999999}\r\n"),
        Err(Violation::LiteralTooLarge { .. })
    ));
    assert_eq!(scan(b"* 1 FETCH (BODY[] {1000}\r\n"), Ok(()));
    // Outside a body the default limit holds, whatever the body limit is.
    let mut s = ResponseScanner::new(u64::MAX / 2);
    assert!(matches!(
        s.feed(format!("* LIST () \"/\" {{{}}}\r\n", DEFAULT_LITERAL_LIMIT + 1).as_bytes()),
        Err(Violation::LiteralTooLarge { .. })
    ));
}

#[test]
fn many_literals_in_one_response_are_refused() {
    let mut s = ResponseScanner::new(1000);
    s.feed(b"* 1 FETCH (UID 1").expect("head");
    let part = [b" X-A {1000}\r\n".as_slice(), &[b'a'; 1000]].concat();
    let mut failed = None;
    for _ in 0..10_000 {
        if let Err(v) = s.feed(&part) {
            failed = Some(v);
            break;
        }
    }
    assert!(matches!(failed, Some(Violation::ResponseTooLarge { .. })));
}

#[test]
fn untagged_responses_per_command_are_counted() {
    let mut s = ResponseScanner::new(1000);
    s.set_untagged(MAX_UNTAGGED - 1);
    s.feed(b"* 1 EXISTS\r\n").expect("at the limit");
    assert_eq!(s.feed(b"* 2 EXISTS\r\n"), Err(Violation::TooManyResponses));
    // It stays failed.
    assert_eq!(s.feed(b"a OK\r\n"), Err(Violation::TooManyResponses));
    let mut s = ResponseScanner::new(1000);
    s.set_untagged(MAX_UNTAGGED - 1);
    s.feed(b"* 1 EXISTS\r\na OK\r\n* 2 EXISTS\r\n")
        .expect("a tagged reply starts a new count");
}
