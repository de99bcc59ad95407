#!/usr/bin/env bash
# Cross-builds sdpal for 64-bit ARM (aarch64, ARMv8-A) into ./build-aarch64 on a Debian 12 x86-64
# machine; the tests then run under qemu-aarch64 (scripts/qemu-tests.sh aarch64).
#   scripts/cross-aarch64.sh [cmake --build arguments, e.g. --target test_core]
# Installs (root or sudo): the cross compiler, qemu-user and the arm64 libraries via multiarch.
# oneDNN's arm64 -dev package cannot be installed beside the amd64 one (both ship
# dnnl_config.h), so it is unpacked into build-aarch64/sysroot instead.
set -euo pipefail
cd "$(dirname "$0")/.."
build="build-aarch64"
sysroot="$PWD/$build/sysroot"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
PKGS=(g++-aarch64-linux-gnu qemu-user cmake pkg-config nlohmann-json3-dev libcli11-dev
      libc6:arm64 libstdc++6:arm64 libgomp1:arm64 libspng-dev:arm64 libicu-dev:arm64
      libssl-dev:arm64 libcairo2-dev:arm64 libgtest-dev:arm64 libhwy-dev:arm64
      libcpp-httplib-dev:arm64 libjpeg62-turbo-dev:arm64)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
fi
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -e "$sysroot/usr/lib/aarch64-linux-gnu/libdnnl.so" ]; then
  mkdir -p "$build/debs" "$sysroot"
  (cd "$build/debs" && apt-get download -q libdnnl-dev:arm64 libdnnl2:arm64)
  for deb in "$build"/debs/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
fi

# Tests are listed when ctest runs (PRE_TEST), not after each link: that saves ~40 qemu starts.
# SDPAL_CMAKE_ARGS: extra configure arguments (CI passes none; locally e.g. a ccache launcher).
# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  -DSDPAL_AARCH64_SYSROOT="$sysroot" -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST \
  ${SDPAL_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" "$@"
