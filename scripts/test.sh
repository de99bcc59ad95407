#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (golden tests need ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
# Test processes run side by side: threads must not spin-wait for a core another process holds.
export OMP_WAIT_POLICY=passive
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
