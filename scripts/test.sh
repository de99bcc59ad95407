#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (golden tests need ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
