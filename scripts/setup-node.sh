#!/usr/bin/env bash
# Installs the Node dependencies of a package.json (and its package-lock.json).
#
#   scripts/setup-node.sh            tests/: the test provider and upstream, in place
#   scripts/setup-node.sh SRC DEST   SRC's package files copied to DEST and
#                                    installed there (paths from the project root,
#                                    e.g. scripts/binaryen .tools/binaryen)
#
# Uses `npm ci` when a package-lock.json exists, `npm install` otherwise.
# Re-runs are instant: npm is skipped when the stamp in DEST/node_modules
# matches the sha256 of SRC's package.json + package-lock.json.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src_name="${1:-tests}"
dest_name="${2:-$src_name}"
src="$root/$src_name"
dest="$root/$dest_name"
stamp="$dest/node_modules/.sesame-setup.sha256"

if [[ ! -f "$src/package.json" ]]; then
    echo "setup-node: no $src_name/package.json, nothing to do"
    exit 0
fi

digest() {
    local files=("$src/package.json")
    if [[ -f "$src/package-lock.json" ]]; then
        files+=("$src/package-lock.json")
    fi
    cat "${files[@]}" | sha256sum | cut -d' ' -f1
}

want="$(digest)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-node: $dest_name/node_modules is up to date"
    exit 0
fi

if [[ "$src" != "$dest" ]]; then
    mkdir -p "$dest"
    rm -f "$dest/package-lock.json"
    cp "$src/package.json" "$dest/"
    if [[ -f "$src/package-lock.json" ]]; then
        cp "$src/package-lock.json" "$dest/"
    fi
fi
if [[ -f "$dest/package-lock.json" ]]; then
    cmd=(npm ci)
else
    cmd=(npm install)
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! (cd "$dest" && "${cmd[@]}" --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    echo "setup-node: '${cmd[*]}' failed in $dest_name/:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
# `npm install` may have just written package-lock.json: hash again.
mkdir -p "$dest/node_modules"
digest >"$stamp"
echo "setup-node: ran '${cmd[*]}' in $dest_name/ ($(ls "$dest/node_modules" | wc -l) top-level packages)"
