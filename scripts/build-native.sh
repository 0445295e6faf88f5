#!/usr/bin/env bash
# Builds dist/libsesame.so: Sésame as an Envoy dynamic module (`make native`).
#
# The same crate as the wasm build, for the machine's own target, with the
# `native` feature (the module's hooks and its calls into Envoy) and the
# `native` profile (full optimisation, panics unwound and caught in each
# hook). Built as a cdylib alone, so that link-time optimisation applies.
# Offline: no dependency beyond the wasm build's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="${1:-dist/libsesame.so}"
target_root="${SESAME_TARGET_DIR:-$root/target}"
mkdir -p "$(dirname "$out")"
cargo rustc --quiet --profile native --features native --lib --crate-type cdylib \
  --target-dir "$target_root"
built="$target_root/native/libsesame.so"
[ -f "$built" ] || { echo "build-native: $built was not built" >&2; exit 1; }
# Replaced by a rename: an Envoy running the previous file keeps it mapped.
cp "$built" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "build-native: $out ($(stat -c %s "$out") bytes)"
