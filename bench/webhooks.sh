#!/usr/bin/env bash
# Webhooks at the ingest rate, same run as mbsync: delivery rate, commit-to-receipt latency
# (p50/p99) and the ingest ratio against mbsync with a webhook on.
# Usage: bench/webhooks.sh [COUNT] [ROUNDS]     (defaults: 10000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps isync time python3 ca-certificates
cargo build --locked --release --bin sidesync --example bench_webhooks
exec target/release/examples/bench_webhooks "${1:-10000}" "${2:-3}"
