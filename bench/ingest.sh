#!/usr/bin/env bash
# Initial ingest of a 10,000-email mailbox over TLS: sidesync vs mbsync vs a bare client, same run.
# Usage: bench/ingest.sh [COUNT] [ROUNDS]     (defaults: 10000 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps isync time python3 ca-certificates
cargo build --locked --release --bin sidesync --example bench_ingest
exec target/release/examples/bench_ingest "${1:-10000}" "${2:-5}"
