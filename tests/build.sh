#!/usr/bin/env bash
# Configures and builds tlstap into ./build (or $TLSTAP_BUILD); $TLSTAP_CMAKE_ARGS adds cache
# options (the sanitizer pass of tests/run-all.sh uses -DTLSTAP_SANITIZE=ON).
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${TLSTAP_BUILD:-$source_dir/build}
cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE="${TLSTAP_BUILD_TYPE:-RelWithDebInfo}" \
  ${TLSTAP_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
