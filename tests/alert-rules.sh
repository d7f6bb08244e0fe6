#!/usr/bin/env bash
# The example Prometheus alert rules (appliance/prometheus-alerts.yml) checked and unit-tested
# with promtool (Debian package prometheus): not part of the regular tests, which only check
# that the rules name metrics /metrics has (tests/status_http.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages prometheus
promtool check rules appliance/prometheus-alerts.yml
cd tests/prometheus && promtool test rules alert-rules-test.yml
