#!/usr/bin/env bash
# A static binary (musl, static-pie) for machines other than Debian: needs the Rust target
# (`rustup target add x86_64-unknown-linux-musl`) and musl-tools (ring's and zstd's C parts).
# Writes target/x86_64-unknown-linux-musl/release/sidesync (stripped).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages musl-tools
rustup target list --installed | grep -q x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --locked --release --target x86_64-unknown-linux-musl
bin=target/x86_64-unknown-linux-musl/release/sidesync
file "$bin"
"$bin" --version
