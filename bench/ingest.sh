#!/usr/bin/env bash
# Initial ingest of a 10,000-email mailbox over TLS, same run: IMAPS (sidesync vs mbsync vs a bare
# client) and POP3S (sidesync vs fetchmail vs getmail6).
# Usage: bench/ingest.sh [COUNT] [ROUNDS] [imap|pop3|all]     (defaults: 10000 5 all)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps isync fetchmail getmail6 util-linux time python3 ca-certificates
cargo build --locked --release --bin sidesync --example bench_ingest
exec target/release/examples/bench_ingest "${1:-10000}" "${2:-5}" "${3:-all}"
