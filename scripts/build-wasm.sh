#!/usr/bin/env bash
# Builds dist/sesame.wasm for wasm32-wasip1.
#
#   scripts/build-wasm.sh                           dist/sesame.wasm
#   scripts/build-wasm.sh CRATE_DIR LIB_NAME OUT [EXPORTS]
#                                                   another crate of the project
#                                                   (e.g. bench/noop-filter), its
#                                                   cdylib LIB_NAME.wasm copied to OUT;
#                                                   EXPORTS: "sesame" (the default for
#                                                   dist/sesame.wasm) or "all" (the
#                                                   default otherwise), see below
#
# Two routes, chosen automatically and remembered in .tools/wasm-route
# (SESAME_WASM_ROUTE=debian|rustup forces one):
#
# debian (preferred): Debian's rustc 1.96 (rustc-web) with its own std sources,
#   wasm-ld from lld-22 and wasi-libc, installed with apt-get when missing. std
#   is compiled with the module (-Zbuild-std, through RUSTC_BOOTSTRAP=1), which
#   allows the release settings that only apply to code compiled from source:
#   a panic stops the VM at once (-Cpanic=immediate-abort) instead of formatting
#   a message, and no source locations are kept (-Zlocation-detail=none). The
#   module was 634 KB instead of 741 KB when this was written, for the same
#   work per request (bench/vm-bench.mjs). A panic is a bug in either build:
#   Envoy logs the VM's failure (a wasm trap) and, failing closed by default,
#   refuses the request; this build's log does not carry the panic's message.
# rustup (fallback, e.g. no apt-get): the rustup target wasm32-wasip1 and its
#   prebuilt std, panic = "abort" (a panic's message is logged at critical).
#
# SESAME_TARGET_DIR (default: target/) is where cargo builds: the Debian route
# in its debian/ subdirectory, rustup's in it directly. Only the test that
# rebuilds the module in a copy of the build directory sets it
# (tests/integration/test_release.py).
#
# Both routes build the library as a cdylib only (`cargo rustc --crate-type
# cdylib`). Cargo.toml also declares it an rlib, for the native tests, the
# fuzz targets and the bench tools; with both crate types, cargo leaves out the
# profile's link-time optimisation (`lto = true`), which cannot apply to an
# rlib. With it, the module was 595 KB instead of 628 KB, and a request with a
# session took about 14% less time in V8 (bench/vm-bench.mjs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
crate_dir="${1:-.}"
lib_name="${2:-sesame}"
out_path="${3:-dist/sesame.wasm}"
if [ $# -ge 3 ]; then exports="${4:-all}"; else exports=sesame; fi
case "$exports" in sesame|all) ;; *) echo "build-wasm: EXPORTS is sesame or all, not $exports" >&2; exit 2 ;; esac
manifest="$crate_dir/Cargo.toml"
[ -f "$manifest" ] || { echo "build-wasm: no $manifest" >&2; exit 2; }
target_root="${SESAME_TARGET_DIR:-$root/target}"
mkdir -p .tools dist "$(dirname "$out_path")"
route_file=.tools/wasm-route
debian_pkgs=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)

have_rustup_target() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1
}

debian_ready() {
  dpkg -s "${debian_pkgs[@]}" >/dev/null 2>&1 && [ -x /usr/lib/llvm-22/bin/wasm-ld ] \
    && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ]
}

install_debian_route() {
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "build-wasm: installing Debian's wasm toolchain (${debian_pkgs[*]})" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || return 1
    sudo="sudo -n"
  fi
  $sudo apt-get update -qq >&2 || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${debian_pkgs[@]}" >/dev/null || return 1
  debian_ready
}

rustup_route_possible() {
  have_rustup_target || { command -v rustup >/dev/null 2>&1 && timeout 25 rustup target add wasm32-wasip1 >/dev/null 2>&1; }
}

# A remembered "rustup-fallback" means the Debian toolchain could not be
# installed here before: apt-get is not tried again on every build (delete
# .tools/wasm-route to retry).
route="${SESAME_WASM_ROUTE:-}"
remembered=""
[ -f "$route_file" ] && remembered=$(cat "$route_file")
if [ -z "$route" ]; then
  if debian_ready; then
    route=debian
  elif [ "$remembered" = rustup-fallback ] && have_rustup_target; then
    route=rustup
  elif install_debian_route; then
    route=debian
  elif rustup_route_possible; then
    route=rustup
    echo "build-wasm: Debian's toolchain is not available; building with rustup's prebuilt std" \
         "(a larger module: see scripts/build-wasm.sh)" >&2
    echo rustup-fallback > "$route_file"
  else
    echo "build-wasm: no way to build for wasm32-wasip1: neither Debian's rustc-web route nor" \
         "rustup's wasm32-wasip1 target could be installed" >&2
    exit 1
  fi
fi
[ "$route" = debian ] && echo debian > "$route_file"

if [ "$route" = rustup ]; then
  cargo rustc --release --target wasm32-wasip1 --lib --crate-type cdylib \
    --manifest-path "$manifest" --target-dir "$target_root"
  out="$target_root/wasm32-wasip1/release/$lib_name.wasm"
else
  debian_ready || install_debian_route || { echo "build-wasm: Debian's wasm toolchain could not be installed" >&2; exit 1; }
  export PATH="/usr/bin:$PATH"
  export RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR="$target_root/debian"
  if [ ! -d "$CARGO_TARGET_DIR/wasm32-wasip1/release" ]; then
    echo "build-wasm: first build: compiling Rust's standard library for wasm32-wasip1" \
         "with the module's settings (a few minutes; later builds take seconds)" >&2
  fi
  export CARGO_TARGET_WASM32_WASIP1_LINKER=/usr/lib/llvm-22/bin/wasm-ld
  export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi \
-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none --cfg sesame_size"
  # --cfg sesame_size: Sésame's code that runs at start-up or once per
  # sign-in, never on a request with a session or a remembered token (reading
  # the configuration and the provider's and access documents, the sign-in
  # and refresh flows, pages, refusals, audit lines), is compiled for size
  # (`#[cfg_attr(sesame_size, optimize(size))]` on each such function; see
  # src/lib.rs). The request paths stay at the profile's "s". The module was
  # 610 KB instead of 640 KB when this was written.
  # std's own crates at "s" like Sésame's code (the profile's "*" would put
  # them at "z"): its string and memory routines run on every request, and
  # "z" made a request with a session about 10% slower in V8. With link-time
  # optimisation, "z" also made the module larger (618 KB against 595 KB).
  std_opt=()
  for crate in core alloc std compiler_builtins; do
    std_opt+=(--config "profile.release.package.$crate.opt-level=\"s\"")
  done
  # std's `optimize_for_size` feature (beside cargo's default features): its
  # smaller algorithm where std has two, chiefly the stable slice sort (each
  # sorted type had its own 3-4 KB driftsort: the configuration's strings,
  # a regex's class ranges, punycode's code points; about 13 KB), and
  # integer formatting. The module was 563,409 bytes instead of 579,068;
  # bench/vm-bench.mjs saw no difference per request (best of 11 rounds,
  # five runs each: 643-687 against 648-892 ns on the public route,
  # 2555-2740 against 2608-2704 ns with a session): the sorts run when the
  # configuration is read, not on a request. The rustup route's prebuilt std
  # is as it was.
  /usr/bin/cargo rustc --release --target wasm32-wasip1 --lib --crate-type cdylib \
    --manifest-path "$manifest" -Zbuild-std=std,panic_abort \
    -Zbuild-std-features=panic-unwind,backtrace,default,optimize_for_size "${std_opt[@]}"
  out="$CARGO_TARGET_DIR/wasm32-wasip1/release/$lib_name.wasm"
fi

# Binaryen's wasm-opt -Oz on the linked module: about 17% fewer bytes than
# rustc and LLVM leave, for the same work per request (bench/vm-bench.mjs).
# The features enabled are rustc's defaults for wasm32-wasip1, so the output
# needs nothing of the runtime that the input did not. The result is kept
# under the input's sha256: an unchanged module is not optimised twice.
# SESAME_WASM_OPT=0 copies the module as rustc wrote it.
#
# With EXPORTS=sesame, the module stops exporting the proxy-wasm SDK's entry
# points for the callbacks Sésame leaves to the SDK's defaults (continue, do
# nothing). The SDK exports every callback of the ABI; Envoy calls each one
# the module exports, and skips the others as if they had continued. So a
# request no longer enters the VM for its access log, nor for each chunk of
# its response body (an answer streamed token by token is many chunks), and
# the code behind those entry points goes: 4.5 KB. The two entries a request
# with a one-chunk answer no longer makes are not a measurable part of Envoy's
# time (make bench's profile, setup 2e against setup 2: -0.0 and -0.8 µs in
# two runs); what this saves grows with the chunks of an answer.
# Implementing one of these callbacks means taking it out of this list:
# tests/integration/test_module.py fails otherwise.
sdk_default_callbacks=proxy_on_log,proxy_on_request_body,proxy_on_request_trailers
sdk_default_callbacks+=,proxy_on_response_body,proxy_on_response_trailers,proxy_on_grpc_*
sdk_default_callbacks+=,proxy_on_queue_ready,proxy_on_foreign_function,proxy_on_new_connection
sdk_default_callbacks+=,proxy_on_downstream_*,proxy_on_upstream_*
if [ "${SESAME_WASM_OPT:-1}" = 0 ]; then
  cp "$out" "$out_path"
  opt_note="wasm-opt skipped"
else
  wasm_opt=$(bash scripts/setup-binaryen.sh)
  opt_flags=()
  if [ "$exports" = sesame ]; then
    opt_flags+=(--remove-exports "--pass-arg=remove-exports@$sdk_default_callbacks")
  fi
  opt_flags+=(-Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals
              --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types)
  key=$( (sha256sum < "$out"; echo "${opt_flags[*]}"; cat scripts/binaryen/package-lock.json) \
         | sha256sum | cut -c1-16)
  cache_dir="$(dirname "$out")/wasm-opt"
  cached="$cache_dir/$lib_name.$exports.$key.wasm"
  if [ ! -f "$cached" ]; then
    mkdir -p "$cache_dir"
    rm -f "$cache_dir/$lib_name.$exports".*.wasm
    node "$wasm_opt" "${opt_flags[@]}" "$out" -o "$cached.tmp"
    mv "$cached.tmp" "$cached"
  fi
  cp "$cached" "$out_path"
  opt_note="wasm-opt: $(stat -c %s "$out") -> $(stat -c %s "$out_path") bytes"
fi
echo "build-wasm: $out_path ($(stat -c %s "$out_path") bytes, route: $route, $opt_note)" >&2
