#!/usr/bin/env bash
# Installs every dependency of dsv4 on a fresh Debian 12 machine (run as root or with sudo),
# then configures and builds. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libssl-dev
  python3-numpy python3-pytest
)
# Node.js may come from another source (its npm bundled); Debian's packages only when absent.
command -v node >/dev/null 2>&1 || DEBIAN_PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || DEBIAN_PACKAGES+=(npm)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# JavaScript test dependencies (independent tokenizer, official API SDKs), pinned by the lockfile.
if [ -f tools/js/package.json ]; then
  (cd tools/js && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi)
fi

cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)"
