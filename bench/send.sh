#!/usr/bin/env bash
# Sending: sidesync vs postfix's smtp-source into smtp-sink, concurrency 1 and 10, same run.
# Usage: bench/send.sh [COUNT] [SIZE] [ROUNDS]     (defaults: 10000 10240 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps time ca-certificates
cargo build --locked --release --bin sidesync --example bench_send
exec target/release/examples/bench_send "${1:-10000}" "${2:-10240}" "${3:-5}"
