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
# Each IDLE session is an imap process with an inotify instance; past the limit (128 by default)
# dovecot falls back to checking the mailbox every 30 s (mailbox_idle_check_interval).
if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 4096 ]; then
    sysctl -w fs.inotify.max_user_instances=4096 >/dev/null || echo "cannot raise fs.inotify.max_user_instances: IDLE latency will be up to 30 s" >&2
fi
exec target/release/examples/bench_idle "${1:-1000}" "${2:-20}" "${3:-30}"
