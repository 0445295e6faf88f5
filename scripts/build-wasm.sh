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
cp "$out" "$out_path"
echo "build-wasm: $out_path ($(stat -c %s "$out_path") bytes, route: $route)" >&2
