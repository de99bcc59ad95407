#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp; clang, ASan + UBSan, in build-fuzz) and
# runs each for SECONDS (default 60) on a copy of its committed corpus, one after another on one
# core. Prints per harness the executions run and any finding (crash, invariant violation,
# sanitizer report, timeout, out-of-memory), copied to build-fuzz/findings/<harness>/; exits
# non-zero if there is any. The committed corpus is never changed (add a finding to it by hand,
# see docs/fuzzing.md).
#   scripts/fuzz.sh [SECONDS] [HARNESS...]       e.g. scripts/fuzz.sh 600 fuzz_png
# Extra libFuzzer flags: SDPAL_FUZZ_FLAGS (e.g. "-ignore_crashes=1 -fork=1" to go on past a
# finding). Installs clang-14 and its runtime (Debian packages) when missing.
# SDPAL_FUZZ_FINDINGS_FAIL=0: findings are reported (and kept under build-fuzz/findings/) but do
# not fail the script; a failed build still does. CI runs it so: a new finding of a random search
# is a bug to fix, not a reason to hold back unrelated work, while the corpus replay tests
# (ctest fuzz_corpus:*) fail on any regression of a finding once it is in the corpus.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
secs="${1:-60}"
shift $(($# > 0 ? 1 : 0))

scripts/deps.sh || exit 1
pkgs=(clang-14 libclang-rt-14-dev libomp-14-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" || exit 1
fi

if [ $# -gt 0 ]; then
  harnesses=("$@")
else
  harnesses=()
  for f in tests/fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$f" .cpp)"); done
fi

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CC=clang-14 cmake -S . -B build-fuzz -DSDPAL_FUZZ=ON -DSDPAL_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_COMPILER=clang++-14 "${launcher[@]}" >/dev/null || exit 1
cmake --build build-fuzz -j"$(nproc)" --target "${harnesses[@]}" || exit 1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
status=0
summary=()
for h in "${harnesses[@]}"; do
  rm -rf "build-fuzz/findings/$h"  # findings of an earlier run
  mkdir -p "$work/$h/artifacts"
  mkdir -p "$work/$h/corpus"
  cp -r "tests/fuzz/corpus/$h/." "$work/$h/corpus/" 2>/dev/null ||
    echo "=== fuzz: $h has no seed corpus (tests/fuzz/corpus/$h/): starting from nothing"
  echo "=== fuzz: $h for ${secs} s"
  # -timeout: seconds per input (a hang is a finding); -rss_limit_mb: memory out of proportion.
  # shellcheck disable=SC2086
  build-fuzz/"$h" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2560 \
    -print_final_stats=1 -artifact_prefix="$work/$h/artifacts/" ${SDPAL_FUZZ_FLAGS:-} \
    "$work/$h/corpus" >"$work/$h/log" 2>&1
  rc=$?
  # The final stats; with -fork=1 (no final stats) the last progress line's "#<executions>".
  execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$work/$h/log" | grep -o '[0-9]*$' |
          awk '{s += $1} END {print s + 0}')
  [ "$execs" = 0 ] && execs=$(grep -aoE '^#[0-9]+' "$work/$h/log" | tr -d '#' | sort -n | tail -n1)
  found=$(find "$work/$h/artifacts" -type f | sort)
  if [ -n "$found" ] || [ $rc -ne 0 ]; then
    status=1
    mkdir -p "build-fuzz/findings/$h"
    cp "$work/$h/artifacts/"* "build-fuzz/findings/$h/" 2>/dev/null
    cp "$work/$h/log" "build-fuzz/findings/$h/log"
    grep -E 'ERROR|invariant violated|SUMMARY|Test unit written' "$work/$h/log" | head -n 20
    line=$(printf '%-24s %12s execs  FINDING (exit %d): %s' "$h" "$execs" "$rc" \
           "$(echo "$found" | xargs -r -n1 basename | tr '\n' ' ')")
    line="$line -> build-fuzz/findings/$h/"
  else
    line=$(printf '%-24s %12s execs  ok' "$h" "$execs")
  fi
  echo "=== fuzz: $line"
  summary+=("$line")
done
echo "=== fuzz summary (${secs} s each):"
printf '  %s\n' "${summary[@]}"
if [ "$status" -ne 0 ] && [ "${SDPAL_FUZZ_FINDINGS_FAIL:-1}" = 0 ]; then
  echo "=== fuzz: findings above (kept in build-fuzz/findings/); not failing (SDPAL_FUZZ_FINDINGS_FAIL=0)"
  exit 0
fi
exit $status
