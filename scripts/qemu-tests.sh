#!/usr/bin/env bash
# Runs CI's emulated test subset under user-mode qemu: the kernel tests on small shapes, the
# tiny-sd1/tiny-sd2 golden tests and one short demo generation.
#   scripts/qemu-tests.sh x86           # build/ under qemu-x86_64 -cpu max: AVX2, no AVX-512, so
#                                       # an AVX-512 instruction executed anywhere dies (SIGILL)
#   scripts/qemu-tests.sh x86-v2        # kernel tests only, -cpu Westmere (x86-64-v2, no AVX):
#                                       # level baseline, Highway SSE4
#   scripts/qemu-tests.sh aarch64       # build-aarch64/ (scripts/cross-aarch64.sh) under
#                                       # qemu-aarch64 (-cpu max: level neon-dotprod)
#   scripts/qemu-tests.sh aarch64-neon  # kernel tests only, -cpu cortex-a53 (no dot product): neon
# Needs the build done (scripts/test.sh or scripts/build.sh; scripts/cross-aarch64.sh). qemu is
# 100-900x slower than the host, hence the filters. Exits non-zero if any step fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
arch="${1:-}"
case "$arch" in
  x86) build=build; emu=(qemu-x86_64 -cpu max); want_level="avx2"; full=1 ;;
  x86-v2) build=build; emu=(qemu-x86_64 -cpu Westmere); want_level="baseline"; full=0 ;;
  aarch64) build="build-aarch64"; emu=(qemu-aarch64); want_level="neon-dotprod"; full=1 ;;
  aarch64-neon) build="build-aarch64"; emu=(qemu-aarch64 -cpu cortex-a53); want_level="neon"; full=0 ;;
  *) echo "usage: $0 x86|x86-v2|aarch64|aarch64-neon" >&2; exit 2 ;;
esac
if ! command -v "${emu[0]}" >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user || exit 2
fi

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
if ! grep -q "^kernel level: ${want_level} " "$tmp/version"; then
  echo "qemu-$arch: expected kernel level ${want_level}*" >&2
  failed+=("version")
fi

# Kernel tests. The filters leave out the cases sized for the host (seconds natively, so many
# minutes under qemu) and those that start build/sdpal as a child process (*Cli*: the child would
# run outside the emulator); each kernel keeps its small, odd-size and tail cases.
declare -A skip=(
  [test_packed_gemm]='PackedGemm.FusedLutEqualsExpandThenGemmExactly:PackedConv.FusedLutEqualsExpandThenConvExactly:PackedGemm.FixtureUNetSameOutputFusedOnOrOff'
  [test_int8]='Int8Conv2d.MatchesDequantisedAndStaysWithinQuantisationError:Int8Files.TinySd1CalibratedInt8StaysCloseToFp32:Int8Files.CalibrationOfAnotherModelIsRefused'
  [test_palettize]='Palettize.IndicesAreNearestLutEntries:Palettize.SameResultForAnyThreadCount:Palettize.ErrorFallsAsBitsRise'
  [test_kmeans]='KMeans1D.EqualsPlainDynamicProgramme:KMeans1D.LargeInputIsConsistentAndNoWorseThanLloyd'
  [test_tome]='ToMeUNet.GenerateAppliesItsOwnSetting'
)
for t in test_core test_activation test_flash_attention test_gemm test_packed_gemm test_int8 \
         test_palettize test_kmeans test_compressed_format test_tome; do
  run "$t" "$build/$t" --gtest_filter="-*Cli*:${skip[$t]:-}"
done
if [ "$full" = 1 ]; then
  # Golden tests on the tiny SD 1.x / 2.x fixtures (../shared/fixtures): each component, and the
  # whole txt2img pipeline through the library API. The CLI variants are left out: they start
  # build/sdpal as a child process, which would run outside the emulator.
  # (ModelGolden /0 and /1 are tiny-sd1 and tiny-sd2; one scheduler case each for the pipeline.)
  run "golden: models" "$build/test_models" \
    --gtest_filter='Fixtures/ModelGolden.*/0:Fixtures/ModelGolden.*/1:Fixtures/Fp16Golden.*/0'
  pipe='Fixtures/Pipeline.MatchesDiffusers'
  run "golden: pipeline" "$build/test_pipeline" \
    --gtest_filter="$pipe/tiny_sd1_pipeline_dpmpp_2m:$pipe/tiny_sd2_pipeline_euler"

  # One short generation with the built-in demo model.
  run "demo: generate" "$build/sdpal" generate -q --prompt "a photo of a sneaker" --steps 2 \
    --width 64 --height 64 --seed 1 --output "$tmp/demo.png"
  if [ ! -s "$tmp/demo.png" ]; then
    echo "qemu-$arch: demo wrote no image" >&2
    failed+=("demo: image")
  fi
fi

echo "qemu-$arch summary:"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "qemu-$arch: FAILED: ${failed[*]}"
  exit 1
fi
echo "qemu-$arch: all passed"
