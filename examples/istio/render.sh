#!/usr/bin/env bash
# Renders the Istio manifests of the Playground behind Sésame for one
# ProConnect environment, with the deploy-time values, on standard output:
#
#   examples/istio/render.sh production  | kubectl apply -f -
#   examples/istio/render.sh integration | kubectl diff -f -
#
# The values come from the environment (README.md, "Deploy"):
#
#   SESAME_REGISTRY           where the image is, e.g. registry.example.gouv.fr/sesame
#                             (the url is oci://<SESAME_REGISTRY>/sesame@sha256:<digest>)
#   SESAME_IMAGE_DIGEST       the image's digest, as `make release` prints it
#   SESAME_WASM_SHA256        the module's sha256, as `make release` prints it
#   PLAYGROUND_HOST           the Playground's public host name, e.g. playground.example.gouv.fr
#   PROCONNECT_CLIENT_ID      the ProConnect client of this environment
#   PROCONNECT_CLIENT_SECRET
#   SESAME_COOKIE_SECRET      openssl rand -base64 32, once; keep it (a new one signs everybody out)
#   PLAYGROUND_IMAGE          the Playground's image, built for https://<PLAYGROUND_HOST>
#                             (default: ghcr.io/etalab-ia/opengatellm/playground:latest)
#
# Digests are 64 hexadecimal digits, with or without `sha256:`. The
# placeholders are substituted in a private copy of base/ and overlays/ (each
# inside a double-quoted YAML string, escaped for it), then `kubectl
# kustomize` builds the overlay: nothing is written beside this script, and
# nothing but standard output holds the secrets.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prog="render.sh"

die() { echo "$prog: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $prog integration|production"
overlay="$1"
[[ -f "$here/overlays/$overlay/kustomization.yaml" ]] \
    || die "no overlay '$overlay' (integration or production)"

: "${KUBECTL:=kubectl}"
command -v "$KUBECTL" >/dev/null || die "needs kubectl (or KUBECTL=/path/to/kubectl)"
command -v envsubst >/dev/null || die "needs envsubst (Debian: apt-get install gettext-base)"

VARS=(SESAME_REGISTRY SESAME_IMAGE_DIGEST SESAME_WASM_SHA256 PLAYGROUND_HOST
      PROCONNECT_CLIENT_ID PROCONNECT_CLIENT_SECRET SESAME_COOKIE_SECRET PLAYGROUND_IMAGE)
: "${PLAYGROUND_IMAGE:=ghcr.io/etalab-ia/opengatellm/playground:latest}"

missing=()
for name in "${VARS[@]}"; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
done
((${#missing[@]} == 0)) || die "set ${missing[*]} (see the head of this script)"

# Values checked for their shape; what Sésame itself checks (the cookie
# secret's length once decoded...) it reports in the sidecar's log.
SESAME_IMAGE_DIGEST="${SESAME_IMAGE_DIGEST#sha256:}"
SESAME_WASM_SHA256="${SESAME_WASM_SHA256#sha256:}"
[[ "$SESAME_IMAGE_DIGEST" =~ ^[0-9a-f]{64}$ ]] \
    || die "SESAME_IMAGE_DIGEST must be 64 lowercase hexadecimal digits (sha256:... accepted)"
[[ "$SESAME_WASM_SHA256" =~ ^[0-9a-f]{64}$ ]] \
    || die "SESAME_WASM_SHA256 must be 64 lowercase hexadecimal digits (sha256:... accepted)"
[[ "$SESAME_REGISTRY" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)?$ ]] \
    || die "SESAME_REGISTRY must be a registry host and path, without scheme, tag or trailing /, e.g. registry.example.gouv.fr/sesame"
[[ "$PLAYGROUND_HOST" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] \
    || die "PLAYGROUND_HOST must be a host name only (no scheme, port or path)"
[[ "$PLAYGROUND_IMAGE" =~ ^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$ ]] \
    || die "PLAYGROUND_IMAGE must be an image reference (registry/repository:tag or @sha256:...)"
[[ "$SESAME_COOKIE_SECRET" =~ ^[A-Za-z0-9+/_-]{43,}=*$ ]] \
    || die "SESAME_COOKIE_SECRET must be base64 of at least 32 random bytes (openssl rand -base64 32)"
for name in PROCONNECT_CLIENT_ID PROCONNECT_CLIENT_SECRET; do
    [[ "${!name}" != *[[:cntrl:]]* ]] || die "$name holds a control character"
done

# Each placeholder sits inside a double-quoted YAML string: escape \ and ".
for name in "${VARS[@]}"; do
    value="${!name}"
    value="${value//\\/\\\\}"
    value="${value//\"/\\\"}"
    export "$name=$value"
done

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$here/base" "$here/overlays" "$work/"
format="$(printf '${%s} ' "${VARS[@]}")"
while IFS= read -r -d '' file; do
    envsubst "$format" <"$file" >"$file.rendered"
    mv "$file.rendered" "$file"
done < <(find "$work" -name '*.yaml' -print0)

"$KUBECTL" kustomize "$work/overlays/$overlay"
