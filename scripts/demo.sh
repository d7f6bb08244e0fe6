#!/usr/bin/env bash
# The demo: a private dovecot with sample mailboxes, sidesync syncing them, and its status endpoint.
# Interactive: runs until Ctrl-C. Without a terminal: exits once every mailbox has synced.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps ca-certificates
cargo build --locked --release --bin sidesync --example demo
exec target/release/examples/demo "$@"
