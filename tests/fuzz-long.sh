#!/usr/bin/env bash
# A long fuzz session: the harness of tests/fuzz.rs with CASES generated cases per target
# (sessions a quarter of that), in a release build. Crashes are written to
# tests/proptest-regressions/fuzz.txt and replayed first by every later run (commit that file).
# Usage: tests/fuzz-long.sh [CASES]     (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
FUZZ_CASES="${1:-100000}" cargo test --locked --release --test fuzz -- --test-threads 2
echo "fuzz: ${1:-100000} cases per target, $(( $(date +%s) - start )) s, no crash"
