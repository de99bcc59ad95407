#!/usr/bin/env bash
# Runs CI's emulated test subset: the kernel tests on small shapes, the tiny-sd1/tiny-sd2 golden
# tests and one short demo generation, under user-mode qemu.
#   scripts/qemu-tests.sh x86       # build/ under qemu-x86_64 -cpu max: AVX2, no AVX-512, so an
#                                   # AVX-512 instruction executed anywhere dies with SIGILL
#   scripts/qemu-tests.sh aarch64   # build-aarch64/ (scripts/cross-aarch64.sh) under qemu-aarch64
# Needs the build done (scripts/test.sh or scripts/build.sh; scripts/cross-aarch64.sh). qemu is
# 100-900x slower than the host, hence the filters. Exits non-zero if any step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
arch="${1:-}"
case "$arch" in
  x86) build=build; emu=(qemu-x86_64 -cpu max); want_level="avx2" ;;
  aarch64) build=build-aarch64; emu=(qemu-aarch64); want_level="neon" ;;
  *) echo "usage: $0 x86|aarch64" >&2; exit 2 ;;
esac
command -v "${emu[0]}" >/dev/null || { echo "${emu[0]} missing: apt-get install qemu-user" >&2; exit 2; }

# OMP_WAIT_POLICY set: sdpal does not re-exec itself to set it, which under qemu-user would
# start the new image natively, outside the emulator.
export OMP_WAIT_POLICY=passive
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
step_timeout="${SDPAL_QEMU_TIMEOUT:-1500}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=()
summary=()

# run NAME CMD...: runs CMD under the emulator with a timeout, records its time and status.
run() {
  local name="$1" t0 rc
  shift
  t0=$(date +%s)
  timeout "$step_timeout" "${emu[@]}" "$@" >"$tmp/log" 2>&1
  rc=$?
  local line
  line=$(printf '%-28s %5ss  %s' "$name" "$(($(date +%s) - t0))" \
         "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")
  if [ $rc -ne 0 ] || grep -q "^\[  SKIPPED \]" "$tmp/log"; then
    tail -40 "$tmp/log"
  fi
  echo "qemu-$arch: $line"
  summary+=("$line")
  [ $rc -eq 0 ] || failed+=("$name")
}

# The level this emulated CPU gets: proves detection sees the emulated CPU, not the host's.
"${emu[@]}" "$build/sdpal" --version | tee "$tmp/version"
if ! grep -q "^kernel level: ${want_level}" "$tmp/version"; then
  echo "qemu-$arch: expected kernel level ${want_level}*" >&2
  failed+=("version")
fi

# Kernel tests. Filters leave out the cases sized for the host (qemu takes minutes on them); each
# kernel keeps its odd-size, tail and NaN/inf cases.
declare -A filter=(
  [test_core]='*'
  [test_activation]='*'
  [test_flash_attention]='*'
  [test_gemm]='*'
  [test_packed_gemm]='*'
  [test_int8]='*'
  [test_palettize]='*'
  [test_kmeans]='*'
  [test_compressed_format]='*'
  [test_tome]='*'
)
for t in test_core test_activation test_flash_attention test_gemm test_packed_gemm test_int8 \
         test_palettize test_kmeans test_compressed_format test_tome; do
  run "$t" "$build/$t" --gtest_filter="${filter[$t]}"
done

# Golden tests on the tiny SD 1.x / 2.x fixtures (../shared/fixtures): each component, and the
# whole txt2img pipeline through the library API. The CLI variants are left out: they start
# build/sdpal as a child process, which would run outside the emulator.
run "golden: models" "$build/test_models" --gtest_filter='Fixtures/ModelGolden.*/tiny_sd*'
run "golden: pipeline" "$build/test_pipeline" \
  --gtest_filter='Fixtures/Pipeline.MatchesDiffusers/tiny_sd*'

# One short generation with the built-in demo model.
run "demo: generate" "$build/sdpal" generate -q --prompt "a photo of a sneaker" --steps 2 \
  --width 64 --height 64 --seed 1 --output "$tmp/demo.png"
if [ ! -s "$tmp/demo.png" ]; then
  echo "qemu-$arch: demo wrote no image" >&2
  failed+=("demo: image")
fi

echo "qemu-$arch summary:"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "qemu-$arch: FAILED: ${failed[*]}"
  exit 1
fi
echo "qemu-$arch: all passed"
