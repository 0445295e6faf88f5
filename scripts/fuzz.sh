#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after the other, each for
# FUZZ_SECONDS (default 60), and fails if any of them finds a crash.
#
#   FUZZ_SECONDS=20 scripts/fuzz.sh              every target, 20 s each
#   scripts/fuzz.sh request token                 some targets only
#   FUZZ_ARGS="-only_ascii=1" scripts/fuzz.sh     more libFuzzer options
#   FUZZ_SANITIZER=none scripts/fuzz.sh           without AddressSanitizer:
#       about 6 times more runs per second; the core has no unsafe code, ASan
#       (the default) only adds checks on the unsafe code of dependencies
#
# New inputs go to fuzz/corpus/<target>/ (not committed); the committed seeds
# are in fuzz/seeds/<target>/. A crash is saved under fuzz/artifacts/<target>/
# and replays with `cargo fuzz run <target> <file>` (RUSTC_BOOTSTRAP=1 set).
#
# cargo fuzz passes nightly-only flags to rustc. RUSTC_BOOTSTRAP=1 lets the
# stable rustup toolchain accept them (its rust-std ships the sanitizer
# runtimes), so no nightly toolchain is needed; a nightly one works as well.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup-fuzz.sh
export RUSTC_BOOTSTRAP=1
cargo_fuzz=(.tools/cargo-fuzz/bin/cargo-fuzz fuzz)
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
# One build directory per sanitizer, so that switching does not rebuild.
build_opts=(--sanitizer "$sanitizer")
[ "$sanitizer" = address ] || build_opts+=(--target-dir "fuzz/target/sanitizer-$sanitizer")
all_targets=(session_cookie request token config access_document)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

start=$(date +%s)
"${cargo_fuzz[@]}" build "${build_opts[@]}"
echo "fuzz: targets built in $(( $(date +%s) - start )) s" >&2

failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/target/fuzz-$t.log"
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  echo "fuzz: $t for ${seconds} s" >&2
  # shellcheck disable=SC2086
  if "${cargo_fuzz[@]}" run "${build_opts[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
      "${dict[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    echo "fuzz: $t: no crash in ${runs:-?} runs (${speed:-?} execs/s)" >&2
  else
    failed+=("$t")
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to" "$log" | head -8 >&2 || true
    echo "fuzz: $t FAILED (full log: $log)" >&2
  fi
done

echo "fuzz: done in $(( $(date +%s) - start )) s" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes found in: ${failed[*]}" >&2
  exit 1
fi
