#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make setup`: Debian's wrk (load
# generator), Apache 2.4 and mod_auth_openidc (a peer to compare with).
# Idempotent: does nothing when they are present.
set -euo pipefail
pkgs=(wrk apache2 libapache2-mod-auth-openidc)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup-bench: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages start a system-wide Apache on port 80 where an init system
# runs; the bench runs its own instance on a loopback port and never uses it.
