#!/usr/bin/env bash
# Installs cargo-fuzz (crates.io) into .tools/cargo-fuzz and prints the command
# that runs it. Quick and silent when it is already there.
#
# Toolchain: cargo fuzz needs nightly-only compiler flags (-Zsanitizer,
# -Cpasses=sancov-module). No nightly toolchain is needed: the stable rustup
# toolchain accepts them with RUSTC_BOOTSTRAP=1 (scripts/fuzz.sh sets it), and
# its rust-std ships the AddressSanitizer runtime. libFuzzer itself is C++,
# compiled by libfuzzer-sys with the system C++ compiler (g++ or clang++).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

version=0.13.1
dir=.tools/cargo-fuzz
bin=$dir/bin/cargo-fuzz

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q " $version\$"; then
  exit 0
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "setup-fuzz: a C++ compiler is needed for libFuzzer (apt-get install g++)" >&2
  exit 1
fi
echo "setup-fuzz: installing cargo-fuzz $version into $dir" >&2
mkdir -p .tools
cargo install --locked --quiet --root "$dir" --version "$version" cargo-fuzz
"$bin" --version >&2
