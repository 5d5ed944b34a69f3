#!/usr/bin/env bash
# The whole test suite: installs the registry and skopeo if missing, then runs every unit
# and integration test, with the crash points compiled in (feature fail-points). Each
# integration test starts its own registry on 127.0.0.1. --workspace: the fixture generator
# (crates/fixtures) has unit tests of its own.
# Ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --workspace --all-targets --features fail-points "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
