#!/usr/bin/env bash
# Builds the Debian package: the release binary (stripped; debug info dropped), the man page and
# shell completions generated from the CLI, then cargo-deb (installed when missing). Prints the
# path of the .deb on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked cargo-deb >&2
fi
# Release without debug info: the package ships a 10-odd MB binary, not 79 MB.
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --locked --release >&2
mkdir -p target/assets
bin=target/release/sidesync
rm -rf target/assets/man && mkdir -p target/assets/man
"$bin" man --dir target/assets/man
gzip -9nf target/assets/man/*.1 target/assets/man/*.5
"$bin" completions bash --dynamic > target/assets/sidesync.bash
"$bin" completions zsh > target/assets/_sidesync
"$bin" completions fish > target/assets/sidesync.fish
cargo deb --no-build --no-strip --output target/debian/ >&2
ls -t target/debian/*.deb | head -1
