#!/usr/bin/env bash
# Builds sdpal and its tests with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan) and
# runs the test suite under them. Passes only with zero reports: every report aborts its process
# (halt_on_error, -fno-sanitize-recover=all) and is also written to build-asan/sanitizer-reports,
# so that a report in a child process (tests run the sdpal CLI, some expecting it to fail) fails
# this script too. Extra arguments go to ctest (e.g. -R Png).
#
# The subset, to fit CI's time: every test (unit and golden) once, at the CPU's best kernel level.
# Left out: the reruns of the kernel tests at lower levels ("avx512:", "avx2:", "baseline:",
# "neon:"; the qemu steps run them, and they execute the same C++ as the best level, only other
# Highway targets), BenchCli (timing loops of code the pipeline tests run once; minutes under
# ASan), and three long end-to-end cases whose code other tests cover: compress at every setting
# (CompressCli.FixtureModelsAtEverySetting: each setting is also a unit test), the sharded analysis
# (Analyze.ShardsMergedEqualASingleRun: the unsharded analysis runs) and the 100-client load test
# (ServerUnderLoadAnswersEveryRequestOnce: every endpoint runs in ServerApi). SDPAL_SANITIZE_ALL=1 runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
reports="$PWD/build-asan/sanitizer-reports"
# Leak checking stays on everywhere; scripts/lsan.supp suppresses leaks inside uninstrumented
# libraries only, by library name (today: fontconfig's caches, never freed).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:log_path=$reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
export OMP_WAIT_POLICY=passive
mkdir -p "$reports"
rm -f "$reports"/*
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DSDPAL_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$(nproc)"
rc=0
exclude='^(avx512|avx2|baseline|neon):|^BenchCli\.|^CompressCli\.FixtureModelsAtEverySetting$|^Analyze\.ShardsMergedEqualASingleRun$|\.ServerUnderLoadAnswersEveryRequestOnce$'

if [ "${SDPAL_SANITIZE_ALL:-0}" = 1 ]; then exclude=''; fi
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" ${exclude:+-E "$exclude"} "$@" || rc=$?
if compgen -G "$reports/*" >/dev/null; then
  echo "=== sanitize: reports:"
  for f in "$reports"/*; do
    echo "--- $f"
    head -n 60 "$f"
  done
  exit 1
fi
exit $rc
