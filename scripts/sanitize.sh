#!/usr/bin/env bash
# Builds sdpal and its tests with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan) and
# runs the test suite under them. Passes only with zero reports: every report aborts its process
# (halt_on_error, -fno-sanitize-recover=all) and is also written to build-asan/sanitizer-reports,
# so that a report in a child process (tests run the sdpal CLI, some expecting it to fail) fails
# this script too. Extra arguments go to ctest (e.g. -R Png).
#
# The subset, to fit CI's time (SDPAL_SANITIZE_ALL=1 builds and runs the whole suite instead):
# the unit tests of core, kernels, formats and the pipeline pieces, the tiny-model golden tests
# (models, pipeline, tokenizer, schedulers, SDXL, LoRA), the hostile-input and fuzz regression
# tests, the mapped-file and write-error tests, and the server's request layer. Each test binary
# runs once, at the CPU's best kernel level (the qemu steps run the lower levels). Left out: the
# CLI-driven end-to-end suites (compress, analyze, bench, crash and server API tests), whose code
# the library tests above run in-process and which take many minutes under ASan.
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
TESTS=(test_core test_cpu test_activation test_gemm test_packed_gemm test_flash_attention
       test_int8 test_kmeans test_palettize test_safetensors test_png test_compressed_format
       test_checkpoint_keymap test_tokenizer test_infotext test_schedulers test_rng test_models
       test_pipeline test_sdxl test_prompt_syntax test_lora test_hostile_input
       test_fuzz_regressions test_file_mapping test_write_errors test_server_request)
rc=0
if [ "${SDPAL_SANITIZE_ALL:-0}" = 1 ]; then
  cmake --build build-asan -j"$(nproc)"
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" "$@" || rc=$?
else
  # sdpal itself too: some of these tests run the CLI.
  cmake --build build-asan -j"$(nproc)" --target sdpal "${TESTS[@]}"
  mkdir -p build-asan/test-logs
  # Two binaries at a time; each prints its log only when it fails.
  printf '%s\n' "${TESTS[@]}" | xargs -P"$(nproc)" -I{} sh -c \
    'if build-asan/{} --gtest_brief=1 > build-asan/test-logs/{}.log 2>&1; then echo "ok   {}";
     else echo "FAIL {}"; tail -n 40 build-asan/test-logs/{}.log; exit 1; fi' || rc=1
fi
if compgen -G "$reports/*" >/dev/null; then
  echo "=== sanitize: reports:"
  for f in "$reports"/*; do
    echo "--- $f"
    head -n 60 "$f"
  done
  exit 1
fi
exit $rc
