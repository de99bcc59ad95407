#!/usr/bin/env bash
# Installs sdpal's build dependencies from Debian 12's packages (needs root or sudo).
set -euo pipefail
PKGS=(build-essential cmake pkg-config libdnnl-dev nlohmann-json3-dev libcli11-dev libspng-dev
      libicu-dev libssl-dev libcairo2-dev libgtest-dev libbenchmark-dev libhwy-dev
      libcpp-httplib-dev libjpeg-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi
