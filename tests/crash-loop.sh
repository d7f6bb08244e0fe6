#!/usr/bin/env bash
# The long crash loop: tests/crash_loop.rs with CYCLES SIGKILL-and-restart cycles (default 100)
# during IMAP and POP3 ingest (deletion on) and sending. Bounded: about 5 minutes at 100 cycles.
# Usage: tests/crash-loop.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps
start=$(date +%s)
CRASH_CYCLES="${1:-100}" timeout 600 cargo test --locked --test crash_loop -- --nocapture 2>&1 |
  grep -E "crash loop|duplicates|test result|panicked|assert"
echo "crash loop: ${1:-100} cycles in $(( $(date +%s) - start )) s"
