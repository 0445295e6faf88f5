#!/usr/bin/env bash
# Installs Binaryen's wasm-opt (npm package `binaryen`, pinned with its
# integrity hash in scripts/binaryen/package-lock.json) into .tools/binaryen,
# through scripts/setup-node.sh (instant when already there). Prints the path
# of the wasm-opt script; everything else goes to standard error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup-binaryen: $tool is needed to optimise the wasm module (install Node.js," \
             "or build with SESAME_WASM_OPT=0 for an unoptimised module)" >&2
        exit 1
    fi
done
bash "$root/scripts/setup-node.sh" scripts/binaryen .tools/binaryen >&2
echo "$root/.tools/binaryen/node_modules/binaryen/bin/wasm-opt"
