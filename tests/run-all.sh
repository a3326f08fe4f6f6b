#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test (unit and integration).
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${TLSTAP_BUILD:-$source_dir/build}
bash "$source_dir/tests/install-deps.sh"
bash "$source_dir/tests/build.sh"
cd "$build_dir"
ctest --output-on-failure -j2 --timeout 900
