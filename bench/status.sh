#!/usr/bin/env bash
# The status listener at 10,000 mailboxes: latency of /, /status, /metrics, /healthz beside a static
# copy of the page served by python3 -m http.server, same run.
# Usage: bench/status.sh [MAILBOXES] [REQUESTS]     (defaults: 10000 30)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages python3
cargo build --locked --release --bin sidesync --example bench_status
exec target/release/examples/bench_status "${1:-10000}" "${2:-30}"
