#!/usr/bin/env bash
# Install the Node dependencies of the test provider and upstream (tests/).
# Uses `npm ci` when tests/package-lock.json exists, `npm install` otherwise.
# Re-runs are instant: npm is skipped when the stamp in tests/node_modules
# matches the sha256 of package.json + package-lock.json.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/tests"
stamp="$dir/node_modules/.sesame-setup.sha256"

if [[ ! -f "$dir/package.json" ]]; then
    echo "setup-node: no tests/package.json, nothing to do"
    exit 0
fi

digest() {
    local files=("$dir/package.json")
    if [[ -f "$dir/package-lock.json" ]]; then
        files+=("$dir/package-lock.json")
    fi
    cat "${files[@]}" | sha256sum | cut -d' ' -f1
}

want="$(digest)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-node: tests/node_modules is up to date"
    exit 0
fi

if [[ -f "$dir/package-lock.json" ]]; then
    cmd=(npm ci)
else
    cmd=(npm install)
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! (cd "$dir" && "${cmd[@]}" --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    echo "setup-node: '${cmd[*]}' failed in tests/:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
# `npm install` may have just written package-lock.json: hash again.
mkdir -p "$dir/node_modules"
digest >"$stamp"
echo "setup-node: ran '${cmd[*]}' in tests/ ($(ls "$dir/node_modules" | wc -l) top-level packages)"
