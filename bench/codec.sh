#!/usr/bin/env bash
# The raw-MIME codec per zstd level on the real-text corpus beside the generated one.
# Usage: bench/codec.sh [EMAILS]     (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages gzip libtasn1-doc python3-pip
cargo build --locked --release --example bench_codec
exec target/release/examples/bench_codec "${1:-2000}"
