#!/usr/bin/env bash
# The web page of `sdpal serve` in a real headless browser (tests/browser/web_page.test.mjs):
# Debian's chromium driven by playwright-core, against `build/sdpal serve` on the demo model.
#   scripts/browser-test.sh [--screenshot PATH]     (default build/browser-test/screenshot.png,
#                                                    and ...-phone.png for the phone-sized view)
# Installs what is missing (needs root or sudo for apt): chromium, node and npm from Debian, and
# the npm packages of tests/browser (npm ci, from package-lock.json). Builds build/sdpal if it is
# not there. The exit status is the test's: 0 passed, 1 a check failed, 2 it could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "$@"
}

missing=()
# chromium, and a font for the page's text in the screenshots.
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser-test: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

if [ ! -x build/sdpal ]; then
  echo "browser-test: building build/sdpal"
  scripts/deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" --target sdpal
fi

# npm ci when the installed packages are missing or older than the lock file.
lock=tests/browser/package-lock.json
installed=tests/browser/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

exec node tests/browser/web_page.test.mjs "$@"
