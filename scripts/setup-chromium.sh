#!/usr/bin/env bash
# Make sure Debian's Chromium is installed (used headless by the browser
# tests through playwright-core) and print its path.
set -euo pipefail

chromium=/usr/bin/chromium
if [[ ! -x "$chromium" ]]; then
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo)
    fi
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! { "${sudo[@]}" apt-get update -qq &&
           "${sudo[@]}" apt-get install -y -qq chromium; } >"$log" 2>&1; then
        echo "setup-chromium: installing the 'chromium' package failed:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    if [[ ! -x "$chromium" ]]; then
        echo "setup-chromium: package installed but $chromium is missing" >&2
        exit 1
    fi
fi
echo "$chromium"
