#!/bin/bash
# Builds the libFuzzer targets with clang, AddressSanitizer and UndefinedBehaviorSanitizer in a
# build dir of their own, then runs each for a bounded time on a copy of its seed corpus.
# Fails if any target crashes, leaks, trips a sanitizer or times out on an input.
#
#   TLSTAP_FUZZ_SECONDS  time per target (default 60)
#   TLSTAP_FUZZ_BUILD    build dir (default: build-fuzz in the source tree, which git ignores)
#   TLSTAP_FUZZ_JOBS     parallel compile jobs (default 2)
set -euo pipefail

source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${TLSTAP_FUZZ_BUILD:-$source_dir/build-fuzz}
seconds=${TLSTAP_FUZZ_SECONDS:-60}
jobs=${TLSTAP_FUZZ_JOBS:-2}
targets=(client-hello-fuzz options-fuzz flow-contract-fuzz)

# -fno-sanitize-recover: a UBSan finding is a crash, not a line in a log nobody reads.
mkdir -p "$build_dir"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
CC=clang CXX=clang++ cmake -S "$source_dir" -B "$build_dir" -DTLSTAP_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$sanitize" -DCMAKE_CXX_FLAGS="$sanitize" \
  -DCMAKE_EXE_LINKER_FLAGS="$sanitize" >"$build_dir/configure.log" 2>&1 ||
  { cat "$build_dir/configure.log"; exit 1; }
cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/tlstap-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for target in "${targets[@]}"; do
  name=${target%-fuzz}
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  cp "$source_dir/tests/fuzz/corpus/$name/"* "$work/$name/corpus/"
  # A ClientHello may take up to MAX_CLIENT_HELLO_BYTES (32768): let the fuzzer reach the cap.
  max_len=4096
  if [ "$target" = client-hello-fuzz ]; then max_len=33000; fi
  echo "== $target: ${seconds}s"
  if "$build_dir/tests/fuzz/$target" "$work/$name/corpus" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
      -print_final_stats=1 -artifact_prefix="$work/$name/artifacts/" \
      >"$work/$name/log" 2>&1; then
    grep -E '^(#[0-9]+.*DONE|stat::(number_of_executed_units|average_exec_per_sec))' \
      "$work/$name/log" || true
  else
    echo "!! $target failed; its log ends with:"
    tail -n 60 "$work/$name/log"
    for artifact in "$work/$name/artifacts/"*; do
      [ -e "$artifact" ] || continue
      mkdir -p "$build_dir/fuzz-artifacts"
      cp "$artifact" "$build_dir/fuzz-artifacts/"
      echo "!! input kept as $build_dir/fuzz-artifacts/$(basename "$artifact"); base64:"
      base64 "$artifact" | head -c 8192
      echo
    done
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all fuzz targets ran ${seconds}s each without a finding"
