#!/usr/bin/env bash
# Scale: N mailboxes (a static passwd-file in dovecot, IMAPS on loopback), 1,000 of them (or all,
# when fewer) holding 3 emails, polling every minute. Reports the first sync of all N (Test &
# Enable included) beside a bare client logging in to every mailbox once (the floor, same run),
# steady-state CPU and RSS of sidesync and of dovecot, polls completed per minute, and errors.
# Usage: bench/scale.sh [MAILBOXES] [STEADY_SECONDS] [POLLING_INTERVAL]  (defaults: 10000 180 1m)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps ca-certificates python3
cargo build --locked --release --bin sidesync --example bench_scale
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec timeout 3600 target/release/examples/bench_scale "${1:-10000}" "${2:-180}" "${3:-1m}"
