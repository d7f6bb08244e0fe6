//! The IMAP guard against imap-proto, side by side: grammar-aware IMAP responses with literals in
//! every position (status text, response codes, continuation requests, every FETCH item, unknown
//! items' lists and tokens, strict data responses), literal contents that are themselves
//! responses, honest and lying literal sizes, deep nesting. For each case the guard's framing of
//! what it lets through must be imap-proto's: every response imap-proto completes ends where the
//! guard ended one, and imap-proto never waits for more while the guard has seen a response end.
//! A guard that skips as literal what imap-proto parses (the bypass that once aborted the
//! appliance), or misses a literal imap-proto buffers, fails here.
//!
//! imap-proto runs on a thread with a large stack, so a case the guard would have let through
//! to a deep recursion is reported as a disagreement instead of aborting the harness.

use async_imap::imap_proto::Response;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sidesync::imap::guard::ResponseScanner;

/// Response heads, items and syntax, as servers (and attackers) write them.
const PIECES: &[&str] = &[
    "* OK ",
    "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ",
    "* NO [ALERT] ",
    "* BAD ",
    "* BYE ",
    "* PREAUTH ",
    "* OKAY ",
    "* ok [BADCHARSET (",
    "a1 OK ",
    "a2 NO [TRYCREATE] ",
    "+ ",
    "+",
    "* 1 FETCH (",
    "* 22 FETCH (",
    "* 1 fetch (",
    "* LIST (\\HasNoChildren) \"/\" ",
    "* STATUS ",
    "* SEARCH 1 2",
    "* NAMESPACE ((",
    "* ID (",
    "* 3 EXISTS",
    "* CAPABILITY IMAP4rev1",
    "UID 5",
    "FLAGS (\\Seen ",
    "RFC822.SIZE 10",
    "INTERNALDATE \"01-Jan-2026 10:00:00 +0000\"",
    "MODSEQ (5)",
    "BODY[] ",
    "BODY[HEADER] ",
    "BODY[]<0> ",
    "RFC822 ",
    "EMAILID (M1)",
    "THREADID NIL",
    "X-ANY (",
    "X-ANY a",
    "X-ANY ",
    "ENVELOPE (",
    "BODYSTRUCTURE (",
    "BODY (",
    "(",
    ")",
    " ",
    "\r\n",
    "NIL",
    "\"q\"",
    "\"a)b\"",
    "\"",
    "{",
    "}",
    "atom",
    "12",
    // Whole responses, so that cases get past the first one.
    "* 1 FETCH (UID 1 BODY[] {3}\r\nabc)\r\n",
    "* 2 FETCH (FLAGS (\\Seen) UID 2)\r\n",
    "a1 OK done\r\n",
    "* OK [UIDVALIDITY 7] ok\r\n",
    "* LIST () \"/\" {4}\r\nSent\r\n",
];

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
        1 => (0usize..600).prop_map(|n| vec![b'('; n]),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

/// Pieces, and literals (honest or lying about their size) whose content is more of them.
fn responses() -> impl Strategy<Value = Vec<u8>> {
    piece().prop_recursive(3, 96, 12, |inner| {
        prop_oneof![
            3 => proptest::collection::vec(inner.clone(), 1..12).prop_map(|v| v.concat()),
            2 => proptest::collection::vec(inner.clone(), 0..8).prop_map(|parts| {
                let content = parts.concat();
                [format!("{{{}}}\r\n", content.len()).into_bytes(), content].concat()
            }),
            1 => (proptest::collection::vec(inner, 0..8), 0usize..64).prop_map(|(parts, n)| {
                [format!("{{{n}}}\r\n").into_bytes(), parts.concat()].concat()
            }),
        ]
    })
}

/// Where the guard ends each response, and how many bytes it lets through (fed a byte at a
/// time, so the refused byte is exactly the first one withheld).
fn guard_framing(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut scanner = ResponseScanner::new(1 << 20);
    let mut ends = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let before = scanner.responses_completed();
        if scanner.feed(std::slice::from_ref(b)).is_err() {
            return (ends, i);
        }
        if scanner.responses_completed() > before {
            ends.push(i + 1);
        }
    }
    (ends, bytes.len())
}

/// imap-proto over what the guard let through, as async-imap drives it: response after
/// response until it needs more bytes or fails (a failure ends the session).
fn same_framing(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (ends, passed) = guard_framing(bytes);
    let seen = &bytes[..passed];
    let mut at = 0;
    loop {
        match Response::parse(&seen[at..]) {
            Ok((rest, _)) => {
                at = seen.len() - rest.len();
                prop_assert!(
                    ends.contains(&at),
                    "imap-proto ended a response at byte {at}, the guard at {ends:?}, in {:?}",
                    String::from_utf8_lossy(seen)
                );
            }
            Err(e) if e.is_incomplete() => {
                prop_assert!(
                    !ends.iter().any(|&end| end > at),
                    "imap-proto waits for more after byte {at}, the guard ended responses at \
                     {ends:?}, in {:?}",
                    String::from_utf8_lossy(seen)
                );
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

#[test]
fn the_guard_frames_imap_responses_as_imap_proto_does() {
    let run = || {
        for (path, bytes) in super::corpus("imap-grammar") {
            same_framing(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // A case costs microseconds: sixteen times the share of the other targets (1,024 by
        // default) finds the old guard's bypass in every run (20 of 20; bench/RESULTS.md).
        super::runner_of(super::cases(1).saturating_mul(16))
            .run(&responses(), |bytes| same_framing(&bytes))
            .map_err(|e| e.to_string())
    };
    let outcome = std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(run)
        .expect("thread")
        .join()
        .expect("the harness thread");
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
