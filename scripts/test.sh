#!/usr/bin/env bash
# Builds and runs the whole CPU test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)"
ctest --preset default --timeout 1800 --label-exclude gpu "$@"
