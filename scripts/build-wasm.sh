#!/usr/bin/env bash
# Builds dist/sesame.wasm for wasm32-wasip1.
#
#   scripts/build-wasm.sh                           dist/sesame.wasm
#   scripts/build-wasm.sh CRATE_DIR LIB_NAME OUT    another crate of the project
#                                                   (e.g. bench/noop-filter), its
#                                                   cdylib LIB_NAME.wasm copied to OUT
#
# Route 1: the rustup target wasm32-wasip1 (installed, or installable now).
# Route 2: an air-gapped machine with a Debian mirror: Debian's rustc 1.96 with
#          its own std sources (-Zbuild-std), wasm-ld from lld-22, and wasi-libc.
# The route is chosen automatically and remembered in .tools/wasm-route;
# SESAME_WASM_ROUTE=rustup|debian forces one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
crate_dir="${1:-.}"
lib_name="${2:-sesame}"
out_path="${3:-dist/sesame.wasm}"
manifest="$crate_dir/Cargo.toml"
[ -f "$manifest" ] || { echo "build-wasm: no $manifest" >&2; exit 2; }
mkdir -p .tools dist "$(dirname "$out_path")"
route_file=.tools/wasm-route
debian_pkgs=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)

have_rustup_target() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1
}

debian_ready() {
  dpkg -s "${debian_pkgs[@]}" >/dev/null 2>&1 && [ -x /usr/lib/llvm-22/bin/wasm-ld ] && [ -x /usr/bin/cargo ]
}

install_debian_route() {
  echo "build-wasm: installing Debian's wasm toolchain (${debian_pkgs[*]})" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${debian_pkgs[@]}" >/dev/null
}

route="${SESAME_WASM_ROUTE:-}"
[ -z "$route" ] && [ -f "$route_file" ] && route=$(cat "$route_file")
if [ -n "${SESAME_WASM_ROUTE:-}" ]; then
  :
elif have_rustup_target; then
  route=rustup
elif [ "$route" != debian ]; then
  if command -v rustup >/dev/null 2>&1 && timeout 25 rustup target add wasm32-wasip1 >/dev/null 2>&1; then
    route=rustup
  else
    route=debian
  fi
fi
echo "$route" > "$route_file"

if [ "$route" = rustup ]; then
  cargo build --release --target wasm32-wasip1 --lib --manifest-path "$manifest" \
    --target-dir "$root/target"
  out="target/wasm32-wasip1/release/$lib_name.wasm"
else
  debian_ready || install_debian_route
  export PATH="/usr/bin:$PATH"
  export RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR="$root/target/debian"
  export CARGO_TARGET_WASM32_WASIP1_LINKER=/usr/lib/llvm-22/bin/wasm-ld
  export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi"
  /usr/bin/cargo build --release --target wasm32-wasip1 --lib --manifest-path "$manifest" \
    -Zbuild-std=std,panic_abort
  out="target/debian/wasm32-wasip1/release/$lib_name.wasm"
fi

# Binaryen's wasm-opt -Oz on the linked module: about 17% fewer bytes than
# rustc and LLVM leave, for the same work per request (bench/vm-bench.mjs).
# The features enabled are rustc's defaults for wasm32-wasip1, so the output
# needs nothing of the runtime that the input did not. The result is kept
# under the input's sha256: an unchanged module is not optimised twice.
# SESAME_WASM_OPT=0 copies the module as rustc wrote it.
if [ "${SESAME_WASM_OPT:-1}" = 0 ]; then
  cp "$out" "$out_path"
  opt_note="wasm-opt skipped"
else
  wasm_opt=$(bash scripts/setup-binaryen.sh)
  opt_flags=(-Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals
             --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types)
  key=$( (sha256sum < "$out"; echo "${opt_flags[*]}"; cat scripts/binaryen/package-lock.json) \
         | sha256sum | cut -c1-16)
  cache_dir="$(dirname "$out")/wasm-opt"
  cached="$cache_dir/$lib_name.$key.wasm"
  if [ ! -f "$cached" ]; then
    mkdir -p "$cache_dir"
    rm -f "$cache_dir/$lib_name".*.wasm
    node "$wasm_opt" "${opt_flags[@]}" "$out" -o "$cached.tmp"
    mv "$cached.tmp" "$cached"
  fi
  cp "$cached" "$out_path"
  opt_note="wasm-opt: $(stat -c %s "$out") -> $(stat -c %s "$out_path") bytes"
fi
echo "build-wasm: $out_path ($(stat -c %s "$out_path") bytes, route: $route, $opt_note)" >&2
