#!/usr/bin/env python3
"""Run the Sésame demo: three identity providers, the demo upstream and
Envoy with Sésame, on fixed loopback ports, until Ctrl-C.

Run by `make demo`, after the wasm build and the setup scripts.  Envoy runs
envoy/demo.yaml as it is (admin on 127.0.0.1:9901); its plugin configuration
is examples/demo-config.json, a `providers` list of three, whose issuers,
endpoints and callbacks (/oauth2/callback/<id>) match the ports below (this
script checks both files first), and whose client ids and secrets are given
to the local providers:

* `agents`: the local OpenID provider (tests/provider/server.mjs) in
  ProConnect mode, issuer http://127.0.0.1:9000/api/v2, on ProConnect's
  button;
* `staff`: a second instance of it, issuer http://127.0.0.1:9001, its own
  client and keys ("Personnel");
* `osm`: the OpenStreetMap-like OAuth 2.0 server (tests/oauth2/server.mjs)
  on 9002, which signs its current user in without a form
  ("OpenStreetMap (test)").

Sésame's sign-in page offers the three; each has its own Envoy cluster
(`idp_cluster`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AGENTS_PORT = 9000
STAFF_PORT = 9001
OSM_PORT = 9002
UPSTREAM_PORT = 9100
ENVOY_PORT = 10000
AGENTS_ISSUER_PATH = "/api/v2"  # as ProConnect's issuer https://<host>/api/v2
APP_URL = f"http://127.0.0.1:{ENVOY_PORT}"
CONFIG_FILE = ROOT / "examples" / "demo-config.json"
# The providers the demo configuration must list: id -> kind.
PROVIDER_KINDS = {"agents": "proconnect", "staff": "oidc", "osm": "oauth2"}
# The users of tests/provider/server.mjs (both OpenID providers).
USERS = (
    "alice.martin@numerique.gouv.fr",
    "bob.durand@interieur.gouv.fr",
    "eve@example.com",
)
# tests/oauth2/server.mjs signs its current user in at once, without a form.
OSM_USER = 'mapper (id 4242, "Carto Mapper")'

ENVOY_FILE = ROOT / "envoy" / "demo.yaml"
ADMIN_PORT = 9901
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402
from harness import Envoy, HarnessError, OAuth2Server, Provider, Upstream  # noqa: E402


def fail(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr)
    sys.exit(1)


def callback(provider_id: str) -> str:
    return f"{APP_URL}/oauth2/callback/{provider_id}"


def demo_providers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entries of the configuration's `providers`, by id."""
    entries = config.get("providers")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        fail(f"{CONFIG_FILE} must have a `providers` list of objects")
    by_id = {e.get("id"): e for e in entries}
    if set(by_id) != set(PROVIDER_KINDS) or len(entries) != len(PROVIDER_KINDS):
        fail(f"{CONFIG_FILE}: `providers` must list the ids {', '.join(PROVIDER_KINDS)} once each")
    for provider_id, kind in PROVIDER_KINDS.items():
        entry = by_id[provider_id]
        if entry.get("provider", "oidc") != kind:
            fail(f"{CONFIG_FILE}: provider {provider_id!r} must be of kind {kind!r}")
        if not isinstance(entry.get("idp_cluster"), str):
            fail(f"{CONFIG_FILE}: provider {provider_id!r} needs an `idp_cluster`")
    return by_id


def check_prerequisites() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The demo configuration and its providers by id, once the tools are
    there, the configuration is the demo's and its ports are free."""
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
    entries = demo_providers(config)
    busy = [
        f"{port} ({what})"
        for port, what in (
            (AGENTS_PORT, "OpenID provider, agents"),
            (STAFF_PORT, "OpenID provider, staff"),
            (OSM_PORT, "OAuth 2.0 server"),
            (UPSTREAM_PORT, "upstream"),
            (ENVOY_PORT, "Envoy"),
            (ADMIN_PORT, "Envoy's admin"),
        )
        if not harness.port_is_free(port)
    ]
    if busy:
        fail(
            "port(s) already in use on 127.0.0.1: " + ", ".join(busy)
            + ". Stop what listens there (see `ss -ltnp`) and try again."
        )
    return config, entries


def envoy_file_problems(bootstrap: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """How envoy/demo.yaml (parsed) differs from what the demo runs: its
    plugin configuration must be examples/demo-config.json, its ports the
    demo's, and each provider's cluster must lead to that provider."""
    problems = []

    def port_of(address: dict[str, Any]) -> Any:
        return address.get("socket_address", {}).get("port_value")

    if port_of(bootstrap.get("admin", {}).get("address", {})) != ADMIN_PORT:
        problems.append(f"the admin port is not {ADMIN_PORT}")
    resources = bootstrap.get("static_resources", {})
    listeners = resources.get("listeners", [])
    if [port_of(l.get("address", {})) for l in listeners] != [ENVOY_PORT]:
        problems.append(f"the listener is not on port {ENVOY_PORT}")
    values = [
        f["typed_config"]["config"]["configuration"]["value"]
        for l in listeners
        for chain in l.get("filter_chains", [])
        for hcm in chain.get("filters", [])
        for f in hcm.get("typed_config", {}).get("http_filters", [])
        if f.get("name") == "envoy.filters.http.wasm"
    ]
    if len(values) != 1 or json.loads(values[0]) != config:
        problems.append(f"its plugin configuration is not {CONFIG_FILE.relative_to(ROOT)}")
    clusters = {
        c.get("name"): port_of(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"])
        for c in resources.get("clusters", [])
    }
    wanted = {"upstream": UPSTREAM_PORT}
    ports = {"agents": AGENTS_PORT, "staff": STAFF_PORT, "osm": OSM_PORT}
    for entry in config.get("providers", []):
        wanted[entry.get("idp_cluster")] = ports.get(entry.get("id"))
    if clusters != wanted:
        problems.append(f"its clusters are {clusters}, the demo's {wanted}")
    return problems


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C and SIGTERM both stop the demo cleanly (and SIGINT works even if
    # inherited as ignored, as for a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    # Logs of this demo run, instead of the tests' target/test-logs/.
    os.environ.setdefault(
        "SESAME_LOG_DIR",
        str(ROOT / "target" / "demo-logs" / time.strftime("%Y%m%d-%H%M%S")),
    )
    config, entries = check_prerequisites()
    try:
        from ruamel.yaml import YAML

        bootstrap = YAML(typ="safe").load(ENVOY_FILE.read_text())
    except Exception as e:  # noqa: BLE001 - any reason the file cannot be read
        fail(f"cannot read {ENVOY_FILE}: {e}")
    problems = envoy_file_problems(bootstrap, config)
    if problems:
        fail(f"{ENVOY_FILE.relative_to(ROOT)} is not the demo's: " + "; ".join(problems))
    agents_cfg, staff_cfg, osm_cfg = entries["agents"], entries["staff"], entries["osm"]

    # Where the OpenID providers may send people back after signing out
    # (Sésame's default post_logout_redirect_uri is APP_URL/oauth2/signed_out).
    post_logout = [APP_URL + "/", APP_URL + "/oauth2/signed_out"]
    extra = config.get("post_logout_redirect_uri")
    if isinstance(extra, str) and extra not in post_logout:
        post_logout.append(extra)

    agents = Provider(
        redirect_uris=[callback("agents")],
        post_logout_redirect_uris=post_logout,
        port=AGENTS_PORT,
        keys_file=ROOT / "target" / "demo-provider-keys.json",
        client_id=agents_cfg.get("client_id"),
        client_secret=agents_cfg.get("client_secret"),
        proconnect=True,
        issuer_path=AGENTS_ISSUER_PATH,
    )
    staff = Provider(
        redirect_uris=[callback("staff")],
        post_logout_redirect_uris=post_logout,
        port=STAFF_PORT,
        keys_file=ROOT / "target" / "demo-staff-provider-keys.json",
        client_id=staff_cfg.get("client_id"),
        client_secret=staff_cfg.get("client_secret"),
        auth_method=staff_cfg.get("token_endpoint_auth_method"),
        # As ProConnect does (and the agents' provider, in ProConnect mode):
        # signing out ends the provider's session at once, without asking.
        logout_confirmation=False,
    )
    osm = OAuth2Server(
        [callback("osm")],
        port=OSM_PORT,
        client_id=osm_cfg.get("client_id"),
        client_secret=osm_cfg.get("client_secret"),
        enforce_pkce=True,
    )
    expected = {
        "agents": {"issuer": agents.issuer, "redirect_uri": callback("agents")},
        "staff": {"issuer": staff.issuer, "redirect_uri": callback("staff")},
        "osm": {
            "redirect_uri": callback("osm"),
            "authorization_endpoint": osm.authorization_endpoint,
            "token_endpoint": osm.token_endpoint,
            "userinfo_endpoint": osm.userinfo_endpoint,
        },
    }
    for provider_id, keys in expected.items():
        for key, value in keys.items():
            if entries[provider_id].get(key) != value:
                fail(f"{CONFIG_FILE.relative_to(ROOT)}: providers {provider_id!r} needs "
                     f"{key} {value!r} (the demo's server)")

    upstream = Upstream(port=UPSTREAM_PORT)
    # Envoy runs envoy/demo.yaml as it is (checked above against the ports
    # and the configuration used here).
    envoy = Envoy(None, ENVOY_PORT, UPSTREAM_PORT, bootstrap_file=ENVOY_FILE)
    components = [agents, staff, osm, upstream, envoy]

    try:
        print("demo: starting the identity providers, the upstream and Envoy...")
        for component in components:
            component.start()

        def label(entry: dict[str, Any], default: str) -> str:
            return entry.get("label") or default

        agents_label = label(agents_cfg, "ProConnect")
        staff_label = label(staff_cfg, f"127.0.0.1:{STAFF_PORT}")
        osm_label = label(osm_cfg, f"127.0.0.1:{OSM_PORT}")
        domains = config.get("allowed_email_domains") or []
        emails = config.get("allowed_emails") or []

        def verdict(user: str) -> str:
            domain = user.rpartition("@")[2]
            if user in emails or any(fnmatchcase(domain, d) for d in domains):
                return "admitted"
            return f"refused (the demo admits {', '.join(domains + emails)} only)"

        users = "\n".join(f"    {user:<32} {verdict(user)}" for user in USERS)
        print(f"""
Sésame demo is running:
  Envoy + Sésame    {envoy.url}   (admin {envoy.admin_url})
  upstream          http://127.0.0.1:{UPSTREAM_PORT}   (tests/upstream/server.mjs)
  providers on Sésame's sign-in page (id, label, issuer or server):
    agents  {agents_label:<22} {agents.issuer}   (tests/provider/server.mjs, ProConnect mode)
    staff   {staff_label:<22} {staff.issuer}   (tests/provider/server.mjs)
    osm     {osm_label:<22} {osm.origin}   (tests/oauth2/server.mjs, OAuth 2.0)

Open {APP_URL}/ in a browser, choose a provider on Sésame's sign-in page,
and sign in:
  {agents_label} (agents) and {staff_label} (staff): pick a test user, no password:
{users}
  {osm_label} (osm): no form, it signs in its current user
    {OSM_USER}, admitted (allow_all_users)

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
