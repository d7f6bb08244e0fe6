#!/usr/bin/env bash
# Supply chain: `cargo deny check advisories` against the RustSec database. Where GitHub answers,
# the current database; else the offline snapshot (../shared/advisory-db/ beside this checkout,
# or the copy in deny/), its date printed and `maximum-db-staleness` raised for it on purpose;
# else it says plainly that the check was skipped. Exceptions live in deny.toml, each with its
# reason beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
if timeout 15 git ls-remote -q https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
    echo "advisories: against the current RustSec database (GitHub)"
    exec cargo deny --log-level error check advisories
fi
bundle=""
for candidate in ../shared/advisory-db/advisory-db.bundle deny/advisory-db.bundle; do
    if [ -f "$candidate" ]; then bundle=$candidate; break; fi
done
if [ -z "$bundle" ]; then
    echo "advisories: SKIPPED: GitHub is unreachable and no offline RustSec snapshot is here"
    exit 0
fi
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
# cargo-deny looks for the database under the folder name it derives from the default URL.
git -c init.defaultBranch=main clone -q "$bundle" "$db/advisory-db-3157b0e258782691"
when=$(git -C "$db/advisory-db-3157b0e258782691" log -1 --format=%cs)
echo "advisories: against the offline RustSec snapshot of $when ($bundle); GitHub is unreachable"
# The snapshot is older than cargo-deny's default 90 days on purpose: allow it, for this run only.
awk -v db="$db" '{ print } /^\[advisories\]/ { print "db-path = \"" db "\""; print "maximum-db-staleness = \"P3650D\"" }' \
    deny.toml > "$db/deny.toml"
# Offline, cargo-deny reads the crate graph from cargo's cache: every package of the lock file
# (other platforms' too) must be there first; the registries are reachable.
cargo fetch --locked --quiet
cargo deny --offline --log-level error --config "$db/deny.toml" check advisories
