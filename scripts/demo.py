#!/usr/bin/env python3
"""Run the Sésame demo: the local OpenID provider, the demo upstream and
Envoy with Sésame, on fixed loopback ports, until Ctrl-C.

Run by `make demo`, after the wasm build and the setup scripts.  The plugin
configuration is examples/demo-config.json, with `issuer` and `redirect_uri`
set to match the ports below.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_PORT = 9000
UPSTREAM_PORT = 9100
ENVOY_PORT = 10000
ISSUER = f"http://127.0.0.1:{PROVIDER_PORT}"
APP_URL = f"http://127.0.0.1:{ENVOY_PORT}"
REDIRECT_URI = f"{APP_URL}/oauth2/callback"
CONFIG_FILE = ROOT / "examples" / "demo-config.json"
USERS = (
    "alice.martin@numerique.gouv.fr",
    "bob.durand@interieur.gouv.fr",
    "eve@example.com",
)

# Logs of this demo run, instead of the tests' target/test-logs/.
os.environ.setdefault(
    "SESAME_LOG_DIR",
    str(ROOT / "target" / "demo-logs" / time.strftime("%Y%m%d-%H%M%S")),
)
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402
from harness import Envoy, HarnessError, Provider, Upstream  # noqa: E402


def fail(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr)
    sys.exit(1)


def check_prerequisites() -> dict:
    if not harness.ENVOY_BIN.exists():
        fail(f"{harness.ENVOY_BIN} is missing: run scripts/setup-python.sh")
    if not harness.DEFAULT_WASM.exists():
        fail(f"{harness.DEFAULT_WASM} is missing: build it (make demo does)")
    if not (ROOT / "tests" / "node_modules").is_dir():
        fail("tests/node_modules is missing: run scripts/setup-node.sh")
    try:
        config = json.loads(CONFIG_FILE.read_text())
    except (OSError, ValueError) as e:
        fail(f"cannot read the demo configuration {CONFIG_FILE}: {e}")
    if not isinstance(config, dict):
        fail(f"{CONFIG_FILE} must hold a JSON object")
    busy = [
        f"{port} ({what})"
        for port, what in (
            (PROVIDER_PORT, "OpenID provider"),
            (UPSTREAM_PORT, "upstream"),
            (ENVOY_PORT, "Envoy"),
        )
        if not harness.port_is_free(port)
    ]
    if busy:
        fail(
            "port(s) already in use on 127.0.0.1: " + ", ".join(busy)
            + ". Stop what listens there (see `ss -ltnp`) and try again."
        )
    return config


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C and SIGTERM both stop the demo cleanly (and SIGINT works even if
    # inherited as ignored, as for a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    config = check_prerequisites()
    config["issuer"] = ISSUER
    config["redirect_uri"] = REDIRECT_URI

    post_logout = [APP_URL + "/", APP_URL + "/oauth2/signed_out"]
    extra = config.get("post_logout_redirect_uri")
    if isinstance(extra, str) and extra not in post_logout:
        post_logout.append(extra)

    provider = Provider(
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=post_logout,
        port=PROVIDER_PORT,
        keys_file=ROOT / "target" / "demo-provider-keys.json",
        client_id=config.get("client_id"),
        client_secret=config.get("client_secret"),
    )
    upstream = Upstream(port=UPSTREAM_PORT)
    envoy = Envoy(config, ENVOY_PORT, UPSTREAM_PORT, PROVIDER_PORT)
    components = [provider, upstream, envoy]

    try:
        print("demo: starting the OpenID provider, the upstream and Envoy...")
        for component in components:
            component.start()

        users = "\n".join(f"  {user}" for user in USERS)
        print(f"""
Sésame demo is running:
  OpenID provider   {provider.issuer}   (tests/provider/server.mjs)
  upstream          http://127.0.0.1:{UPSTREAM_PORT}   (tests/upstream/server.mjs)
  Envoy + Sésame    {envoy.url}   (admin {envoy.admin_url})

Open {APP_URL}/ in a browser and sign in as one of the test users:
{users}

Logs: {harness.log_dir()}
Press Ctrl-C to stop.
""", flush=True)

        while True:
            for component in components:
                if not component.running:
                    print(
                        f"demo: {component.name} stopped unexpectedly; "
                        f"see {component.log_path}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\ndemo: stopping...", flush=True)
        return 0
    except HarnessError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C
        for component in reversed(components):
            component.stop()


if __name__ == "__main__":
    sys.exit(main())
