#!/usr/bin/env bash
# IDLE latency: N mailboxes on IDLE (polling once a day), emails delivered at a steady rate,
# delivery → activity in the API, p50/p99, and the memory of sidesync and dovecot.
# Usage: bench/idle.sh [MAILBOXES] [EMAILS_PER_SECOND] [SECONDS]   (defaults: 1000 20 30)
# BENCH_HIBERNATE=1 lets dovecot's imap-hibernate take the idle sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps ca-certificates
cargo build --locked --release --bin sidesync --example bench_idle
ulimit -n 65536 2>/dev/null || true
exec target/release/examples/bench_idle "${1:-1000}" "${2:-20}" "${3:-30}"
