#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps util-linux systemd ca-certificates chromium chromium-driver fonts-dejavu-core
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
