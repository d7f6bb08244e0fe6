#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages dovecot-imapd dovecot-pop3d dovecot-submissiond postfix openssl procps util-linux systemd ca-certificates chromium chromium-driver fonts-dejavu-core python3-venv
# A clean CI clone builds once: incremental caches would only take disk there.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
# The Debian package booted under systemd in a container (tests/boot-unit.sh).
bash tests/boot-unit.sh
# Supply chain: licences, duplicate crates and sources (deny.toml), and advisories
# (scripts/advisories.sh: the current RustSec database, else the offline snapshot, else skipped).
if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0.20'; then
    cargo install --locked cargo-deny --version 0.20.2
fi
cargo deny --log-level error check licenses bans sources
bash scripts/advisories.sh
