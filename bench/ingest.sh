#!/usr/bin/env bash
# Initial ingest of a 10,000-email mailbox over TLS, same run: IMAPS (sidesync vs mbsync vs a bare
# client) and POP3S (sidesync vs fetchmail vs getmail6).
# Usage: bench/ingest.sh [COUNT] [ROUNDS] [imap|pop3|all|sent]     (defaults: 10000 5 all)
# sent: sidesync alone, INBOX with and without a Sent folder of COUNT/4 emails (track_sent).
# The corpus is real text and files (tests/support/realmail.rs); BENCH_CORPUS=generated for the old one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps isync fetchmail getmail6 util-linux time python3 ca-certificates gzip libtasn1-doc python3-pip
cargo build --locked --release --bin sidesync --example bench_ingest
exec target/release/examples/bench_ingest "${1:-10000}" "${2:-5}" "${3:-all}"
