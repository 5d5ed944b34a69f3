#!/usr/bin/env bash
# The whole test suite: installs the registry and skopeo if missing, then runs every unit
# and integration test. Each integration test starts its own registry on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --locked --all-targets "$@"
