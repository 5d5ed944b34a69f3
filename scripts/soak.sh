#!/usr/bin/env bash
# The fault soak (tests/it/soak.rs): N pushes and whole releases, each with a fault drawn from
# the test proxy's catalogue (5xx, 429 with Retry-After, resets mid-body, stale reads, slow
# responses) or a crash at a named point, then a clean rerun and a run that must have nothing
# to do; the registry and every meta.json are checked after each. Prints
# "N runs, N converged, N lost". Seeded and reproducible.
#
#   scripts/soak.sh            200 runs, seed 1
#   scripts/soak.sh 500 7      500 runs, seed 7
#
# CI runs a short soak (6 runs) as part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
REPRISE_SOAK_N=${1:-200} REPRISE_SOAK_SEED=${2:-1} \
    cargo test --locked --release --features fail-points --test it \
    soak::the_fault_soak_converges -- --ignored --nocapture 2>&1 |
    grep -E "runs, .* converged|^test result|panicked|^run [0-9]+:"
