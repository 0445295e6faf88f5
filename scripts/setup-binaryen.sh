#!/usr/bin/env bash
# Installs Binaryen's wasm-opt (npm package `binaryen`, pinned with its
# integrity hash in scripts/binaryen/package-lock.json) into .tools/binaryen.
# Prints the path of the wasm-opt script. Re-runs are instant: npm is skipped
# when the stamp matches the sha256 of the lock file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/scripts/binaryen"
dir="$root/.tools/binaryen"
stamp="$dir/.sesame-setup.sha256"
bin="$dir/node_modules/binaryen/bin/wasm-opt"

want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$bin" ]]; then
    echo "$bin"
    exit 0
fi
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup-binaryen: $tool is needed to optimise the wasm module (install Node.js," \
             "or build with SESAME_WASM_OPT=0 for an unoptimised module)" >&2
        exit 1
    fi
done
mkdir -p "$dir"
cp "$src/package.json" "$src/package-lock.json" "$dir/"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    echo "setup-binaryen: 'npm ci' failed in .tools/binaryen:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
echo "$want" >"$stamp"
echo "setup-binaryen: installed $(node -p "require('$dir/node_modules/binaryen/package.json').version" 2>/dev/null || echo binaryen) into .tools/binaryen" >&2
echo "$bin"
