#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test (unit and integration);
# then builds everything again with AddressSanitizer and UndefinedBehaviorSanitizer and runs the
# suite once more on that build (without the fuzzers, which have sanitizers of their own).
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${TLSTAP_BUILD:-$source_dir/build}
sanitize_dir=${TLSTAP_SANITIZE_BUILD:-$source_dir/build-sanitize}
bash "$source_dir/tests/install-deps.sh"

bash "$source_dir/tests/build.sh"
(cd "$build_dir" && ctest --output-on-failure -j2 --timeout 900)

if [ "${TLSTAP_SANITIZE_PASS:-1}" = 1 ]; then
  echo "== the same suite built with -fsanitize=address,undefined =="
  TLSTAP_BUILD=$sanitize_dir TLSTAP_CMAKE_ARGS=-DTLSTAP_SANITIZE=ON \
    bash "$source_dir/tests/build.sh"
  (cd "$sanitize_dir" && ctest --output-on-failure -j2 --timeout 900 -LE fuzz)
fi
