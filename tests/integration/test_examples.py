"""Offline checks of the configurations the project ships as examples.

Nothing here talks to the network or starts a server; every check fails when
a file is broken:

* every ``envoy/*.yaml`` passes ``envoy --mode validate``, which also loads
  ``dist/sesame.wasm`` and makes Sésame check its plugin configuration
  (``access-log.yaml``, a piece of a connection manager, once pasted into
  the Playground's configuration).
  ``${VAR}`` placeholders are rendered first with test values (as ``envsubst``
  does at deploy time), ``REPLACE_ME`` secrets get test values, and the files
  a production configuration names (TLS certificate and key, CA bundle, the
  module under /etc/envoy) are pointed at a self-signed pair made here with
  openssl and at ``dist/sesame.wasm``;
* ``examples/compose/compose.yaml`` is valid for the Compose specification
  (``check-jsonschema --builtin-schema vendor.compose-spec``); its
  ``sesame-config`` script is run as Compose would run it (``$$`` -> ``$``,
  variables from ``.env.example``) to render ``envoy.yaml.template``, and the
  result passes ``envoy --mode validate``;
* ``examples/istio``: each overlay (integration, production), rendered as
  an operator renders it (``render.sh``, ``kubectl kustomize``), has a
  WasmPlugin whose ``pluginConfig`` uses only known Sésame keys, names the
  cluster Istio makes for the ServiceEntry that the DestinationRule sends
  over TLS, and is accepted by Sésame (validated in an Envoy bootstrap that
  has that cluster, with the EnvoyFilter's settings on the connection
  manager); test_istio.py checks the manifests against their schemas;
* every JSON plugin configuration embedded in the examples and the
  migration guide parses, and uses only keys from ``KNOWN_KEYS`` in
  ``src/core/config.rs``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

import istio_example

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVOY_BIN = REPO_ROOT / ".tools" / "venv" / "bin" / "envoy"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
WASM = REPO_ROOT / "dist" / "sesame.wasm"
CONFIG_RS = REPO_ROOT / "src" / "core" / "config.rs"

COMPOSE_DIR = REPO_ROOT / "examples" / "compose"
ISTIO_DIR = REPO_ROOT / "examples" / "istio"
# Pieces pasted into a connection manager, not whole configurations: checked
# pasted into one (test_access_log_fragment_validates_in_the_playground_config).
ENVOY_FRAGMENTS = {"access-log.yaml"}
ENVOY_FILES = sorted(p for p in (REPO_ROOT / "envoy").glob("*.yaml")
                     if p.name not in ENVOY_FRAGMENTS)

# Keys added together with the ProConnect preset. Accepted by the static key
# check even if KNOWN_KEYS does not list them yet (a warning says so).
UPCOMING_KEYS = {
    "proconnect_environment",
    "acr_values",
    "claims",
    "post_logout_redirect_uri",
    "provider_logout",
    "allowed_redirect_domains",
    "skip_provider_button",
}

# What a deploy step would take from the secret store / environment.
SAMPLE_ENV = {
    "PROCONNECT_CLIENT_ID": "0f3c6a51b2d84e7f9a1c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071",
    "PROCONNECT_CLIENT_SECRET": "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d",
    "SESAME_COOKIE_SECRET": base64.b64encode(bytes(range(32))).decode(),
    "PLAYGROUND_HOST": "playground.example.gouv.fr",
    "PLAYGROUND_PUBLIC_URL": "https://playground.example.gouv.fr",
    "SESAME_COOKIE_SECURE": "true",
}

# Values for `REPLACE_ME` placeholders of a Sésame configuration, by key.
REPLACE_ME_SAMPLES = {
    "client_id": SAMPLE_ENV["PROCONNECT_CLIENT_ID"],
    "client_secret": SAMPLE_ENV["PROCONNECT_CLIENT_SECRET"],
    "cookie_secret": SAMPLE_ENV["SESAME_COOKIE_SECRET"],
}

# ProConnect environments (docs/CONFIGURATION.md) -> issuer host.
PROCONNECT_HOSTS = {
    "integration": "fca.integ01.dev-agentconnect.fr",
    "production": "auth.agentconnect.gouv.fr",
    "integration-rie": "fca.integ02.agentconnect.rie.gouv.fr",
    "production-rie": "auth.agentconnect.rie.gouv.fr",
}

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --------------------------------------------------------------------------
# helpers


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)


def load_yaml(text: str) -> Any:
    return _yaml().load(text)


def load_yaml_all(text: str) -> list[Any]:
    return [doc for doc in _yaml().load_all(text) if doc is not None]


@lru_cache(maxsize=None)
def known_keys() -> frozenset[str]:
    """Sésame's configuration keys, read from KNOWN_KEYS in config.rs."""
    source = CONFIG_RS.read_text()
    match = re.search(r"const KNOWN_KEYS: &\[&str\] = &\[(.*?)\];", source, re.S)
    assert match, f"KNOWN_KEYS not found in {CONFIG_RS}"
    keys = set(re.findall(r'"([a-z_]+)"', match.group(1)))
    assert len(keys) > 20, f"KNOWN_KEYS looks truncated: {sorted(keys)}"
    missing = UPCOMING_KEYS - keys
    if missing:
        warnings.warn(f"not yet in KNOWN_KEYS (accepted as upcoming): {sorted(missing)}")
    return frozenset(keys | UPCOMING_KEYS)


def code_lines(text: str) -> str:
    """The text without its comment lines."""
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))


def envsubst_list(text: str) -> set[str]:
    """The variables of the `envsubst '${A} ${B}'` command a file documents."""
    found: set[str] = set()
    for line in text.splitlines():
        m = re.search(r"envsubst '([^']*)'", line)
        if m:
            found |= set(PLACEHOLDER.findall(m.group(1)))
    return found


def render(text: str, env: dict[str, str]) -> str:
    """envsubst with every variable of ``env``; unknown ones are an error."""
    unknown = set(PLACEHOLDER.findall(code_lines(text))) - env.keys()
    assert not unknown, f"placeholders without a value: {sorted(unknown)}"
    return PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


NATIVE_TYPE = ("type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3."
               "DynamicModuleFilter")


def wasm_configs(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    """The holders ({"@type", "value"}) of Sésame's configuration: the
    `configuration` of Wasm filters, the `filter_config` of the native
    module's."""
    found = []
    for node in walk(bootstrap):
        if node.get("@type") == WASM_TYPE:
            found.append(node["config"]["configuration"])
        elif node.get("@type") == NATIVE_TYPE:
            assert node["dynamic_module_config"]["name"] == "sesame", node
            found.append(node["filter_config"])
    return found


def check_sesame_json(text: str, where: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        pytest.fail(f"{where}: plugin configuration is not JSON: {e}\n{text}")
    assert isinstance(config, dict), f"{where}: plugin configuration must be an object"
    unknown = set(config) - known_keys()
    assert not unknown, f"{where}: unknown Sésame keys {sorted(unknown)}"
    return config


class TlsFiles:
    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway self-signed certificate and key."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return TlsFiles(cert, key)


def point_files_at_test_files(bootstrap: dict[str, Any], tls: TlsFiles) -> None:
    """Rewrite the files a configuration names to files that exist here."""
    for node in walk(bootstrap):
        for key, value in list(node.items()):
            if not (isinstance(value, dict) and "filename" in value):
                continue
            name = str(value["filename"])
            if key == "certificate_chain" or key == "trusted_ca":
                value["filename"] = str(tls.cert)
            elif key == "private_key":
                value["filename"] = str(tls.key)
            elif name.endswith(".wasm"):
                value["filename"] = str(WASM)
            elif not (REPO_ROOT / name).exists():
                pytest.fail(f"configuration names {name!r} ({key}), which the test cannot provide")


def fill_replace_me(bootstrap: dict[str, Any], where: str) -> None:
    """Give `REPLACE_ME` secrets of the Sésame configurations test values."""
    for holder in wasm_configs(bootstrap):
        config = check_sesame_json(holder["value"], where)
        changed = False
        for key, value in config.items():
            if isinstance(value, str) and "REPLACE_ME" in value:
                assert key in REPLACE_ME_SAMPLES, f"{where}: no test value for {key}"
                config[key] = REPLACE_ME_SAMPLES[key]
                changed = True
        if changed:
            holder["value"] = json.dumps(config)


def envoy_validate(bootstrap: dict[str, Any], tmp_path: Path, name: str) -> None:
    """`envoy --mode validate` on the bootstrap (Sésame checks its config)."""
    assert ENVOY_BIN.exists(), f"{ENVOY_BIN} missing: run scripts/setup-python.sh"
    assert WASM.is_file(), f"{WASM} missing: run `make wasm`"
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(bootstrap, indent=1))
    native = REPO_ROOT / "dist" / "libsesame.so"
    assert native.is_file(), f"{native} missing: run `make native`"
    proc = subprocess.run(
        [str(ENVOY_BIN), "--mode", "validate", "-c", str(path), "--log-level", "info",
         "--disable-hot-restart"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        # The native examples' module, found as Envoy finds it in production.
        env={**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(native.parent)},
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or " OK" not in out:
        lines = out.splitlines()
        sesame = [l for l in lines if "invalid configuration" in l]
        tail = "\n".join(sesame + lines[-12:])
        pytest.fail(f"envoy --mode validate refused {name} (exit {proc.returncode}):\n{tail}")


def prepare_envoy_config(text: str, where: str, tls: TlsFiles,
                         env: dict[str, str] | None = None) -> dict[str, Any]:
    """Render, parse and make a shipped Envoy configuration validatable."""
    listed = envsubst_list(text)
    used = set(PLACEHOLDER.findall(code_lines(text)))
    assert used <= listed or not used, (
        f"{where}: placeholders {sorted(used - listed)} missing from the "
        f"documented envsubst command (they would stay as ${{...}})")
    bootstrap = load_yaml(render(text, env or SAMPLE_ENV))
    assert isinstance(bootstrap, dict), f"{where}: not a YAML mapping"
    holders = wasm_configs(bootstrap)
    assert holders, f"{where}: no Sésame (wasm) filter"
    for holder in holders:
        check_sesame_json(holder["value"], where)
    fill_replace_me(bootstrap, where)
    point_files_at_test_files(bootstrap, tls)
    return bootstrap


# --------------------------------------------------------------------------
# envoy/*.yaml


def test_envoy_directory_has_the_playground_config() -> None:
    names = {p.name for p in ENVOY_FILES}
    assert "playground-proconnect.yaml" in names, names


@pytest.mark.parametrize("path", ENVOY_FILES, ids=lambda p: p.name)
def test_envoy_config_validates(path: Path, tls_files: TlsFiles, tmp_path: Path) -> None:
    bootstrap = prepare_envoy_config(path.read_text(), str(path.relative_to(REPO_ROOT)), tls_files)
    envoy_validate(bootstrap, tmp_path, path.stem)


def test_access_log_fragment_validates_in_the_playground_config(
        tls_files: TlsFiles, tmp_path: Path) -> None:
    """``envoy/access-log.yaml``, pasted into the connection managers of the
    Playground's configuration as CONFIGURATION.md says, passes ``envoy
    --mode validate`` (test_access_log.py runs it in a real Envoy)."""
    fragment = load_yaml((REPO_ROOT / "envoy" / "access-log.yaml").read_text())
    assert set(fragment) == {"access_log"}, fragment
    where = "envoy/playground-proconnect.yaml"
    bootstrap = prepare_envoy_config(
        (REPO_ROOT / where).read_text(), where, tls_files)
    pasted = 0
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    f["typed_config"]["access_log"] = fragment["access_log"]
                    pasted += 1
    assert pasted, f"{where}: no http_connection_manager"
    envoy_validate(bootstrap, tmp_path, "access-log")


def test_playground_proconnect_config() -> None:
    """The production Playground configuration says what it should."""
    text = (REPO_ROOT / "envoy" / "playground-proconnect.yaml").read_text()
    bootstrap = load_yaml(render(text, SAMPLE_ENV))
    (holder,) = {id(h): h for h in wasm_configs(bootstrap)}.values()
    config = check_sesame_json(holder["value"], "playground-proconnect.yaml")
    assert config["provider"] == "proconnect"
    assert config["proconnect_environment"] == "production"
    assert config["cookie_secure"] is True
    assert config["skip_auth_routes"] == ["GET=^/ping$"]
    assert config["set_authorization_header"] is True
    assert config["pass_access_token"] is True
    assert config["cookie_name"] in ("_sesame", "_oauth2_proxy_opengatellm")
    assert config["redirect_uri"].startswith("https://")
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    idp = clusters[config["idp_cluster"]]
    host = PROCONNECT_HOSTS["production"]
    tls = idp["transport_socket"]["typed_config"]
    assert tls["sni"] == host
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"]["filename"]
    assert {m["matcher"]["exact"] for m in validation["match_typed_subject_alt_names"]} == {host}
    endpoint = idp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == host
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                hcm = f["typed_config"]
                if any(h.get("name") == "envoy.filters.http.wasm" for h in hcm["http_filters"]):
                    assert hcm["normalize_path"] is True
                    assert hcm["merge_slashes"] is True
                    assert hcm["path_with_escaped_slashes_action"] == "UNESCAPE_AND_REDIRECT"
                    assert hcm["common_http_protocol_options"][
                        "headers_with_underscores_action"] == "REJECT_REQUEST"
    https = next(l for l in bootstrap["static_resources"]["listeners"] if l["name"] == "https")
    hcm = https["filter_chains"][0]["filters"][0]["typed_config"]
    assert {"upgrade_type": "websocket"} in hcm["upgrade_configs"]
    assert https["filter_chains"][0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    wasm_code = holder_code(bootstrap)
    assert wasm_code == {"/etc/envoy/sesame.wasm"}


def holder_code(bootstrap: dict[str, Any]) -> set[str]:
    return {
        node["config"]["vm_config"]["code"]["local"]["filename"]
        for node in walk(bootstrap) if node.get("@type") == WASM_TYPE
    }


# --------------------------------------------------------------------------
# examples/compose


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        env[name.strip()] = value.strip()
    return env


COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${X}, ${X:-d}, ${X-d}, ${X:?e}, ${X?e}, $$."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("?") and empty:
            pytest.fail(f"compose would stop: ${{{name}}} unset ({arg})")
        if op and op.endswith("-") and empty:
            return compose_interpolate(arg, env)
        return value or ""
    assert "${" not in COMPOSE_VAR.sub("", value), f"unhandled interpolation in {value!r}"
    return COMPOSE_VAR.sub(sub, value)


def compose_env() -> dict[str, str]:
    """`.env.example`, with test values where the operator must fill in."""
    env = read_env_file(COMPOSE_DIR / ".env.example")
    for name, value in env.items():
        if value == "":
            assert name in SAMPLE_ENV, f".env.example: no test value for {name}"
            env[name] = SAMPLE_ENV[name]
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml((COMPOSE_DIR / "compose.yaml").read_text())


def test_compose_matches_compose_spec() -> None:
    assert CHECK_JSONSCHEMA.exists(), f"{CHECK_JSONSCHEMA} missing: run scripts/setup-python.sh"
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_DIR / "compose.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_env_example_covers_required_variables() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    env = read_env_file(COMPOSE_DIR / ".env.example")
    assert required, "compose.yaml requires no variable?"
    assert required <= env.keys(), f".env.example lacks {sorted(required - env.keys())}"


def _envsubst_shim(directory: Path) -> Path:
    """A stand-in for gettext's envsubst 'SHELL-FORMAT', when it is missing."""
    shim = directory / "envsubst"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import os, re, sys\n"
        "names = set(re.findall(r'\\$\\{?([A-Za-z_][A-Za-z0-9_]*)', sys.argv[1]))\n"
        "pat = re.compile(r'\\$(?:\\{([A-Za-z_][A-Za-z0-9_]*)\\}|([A-Za-z_][A-Za-z0-9_]*))')\n"
        "def sub(m):\n"
        "    n = m.group(1) or m.group(2)\n"
        "    return os.environ.get(n, '') if n in names else m.group(0)\n"
        "sys.stdout.write(pat.sub(sub, sys.stdin.read()))\n"
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return directory


def run_sesame_config(compose: dict[str, Any], tmp_path: Path,
                      **overrides: str) -> subprocess.CompletedProcess[str]:
    """Run the `sesame-config` service's script as Compose would, with the
    variables of `.env.example` (and ``overrides``), writing to tmp_path."""
    service = compose["services"]["sesame-config"]
    assert service["entrypoint"] == ["/bin/sh", "-c"], service["entrypoint"]
    (raw_script,) = service["command"]
    assert "$" not in raw_script.replace("$$", ""), (
        "the script has a single $: Compose would interpolate it; write $$")
    env = {**compose_env(), **overrides}
    script = compose_interpolate(raw_script, env)
    run_env = {k: compose_interpolate(str(v), env) for k, v in service["environment"].items()}
    template_mount = next(v for v in service["volumes"] if v.startswith("./envoy.yaml.template:"))
    assert template_mount.split(":")[1] == run_env["TEMPLATE"]
    run_env["TEMPLATE"] = str(COMPOSE_DIR / "envoy.yaml.template")
    run_env["OUTPUT"] = str(tmp_path / "envoy.yaml")
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if not shutil.which("envsubst"):
        path = f"{_envsubst_shim(tmp_path)}:{path}"
    return subprocess.run(["/bin/sh", "-c", script], env={**run_env, "PATH": path},
                          capture_output=True, text=True, timeout=30)


def render_compose_template(compose: dict[str, Any], tmp_path: Path, **overrides: str) -> str:
    proc = run_sesame_config(compose, tmp_path, **overrides)
    assert proc.returncode == 0, f"sesame-config script failed:\n{proc.stdout}{proc.stderr}"
    return (tmp_path / "envoy.yaml").read_text()


def test_compose_renders_a_valid_envoy_config(compose: dict[str, Any], tls_files: TlsFiles,
                                             tmp_path: Path) -> None:
    text = render_compose_template(compose, tmp_path)
    assert "${" not in code_lines(text), "a placeholder was left unrendered"
    bootstrap = load_yaml(text)
    holders = wasm_configs(bootstrap)
    assert holders
    for holder in holders:
        config = check_sesame_json(holder["value"], "rendered compose template")
        assert config["provider"] == "proconnect"
        assert config["proconnect_environment"] == "integration"
        env = compose_env()
        assert config["client_id"] == env["PROCONNECT_CLIENT_ID"]
        assert config["redirect_uri"] == env["PLAYGROUND_PUBLIC_URL"] + "/oauth2/callback"
        assert config["cookie_secure"] is (env["SESAME_COOKIE_SECURE"] == "true")
        assert config["skip_auth_routes"] == ["GET=^/ping$"]
        idp = next(c for c in bootstrap["static_resources"]["clusters"]
                   if c["name"] == config["idp_cluster"])
        assert idp["transport_socket"]["typed_config"]["sni"] == PROCONNECT_HOSTS["integration"]
    # Envoy reads what the renderer wrote, and the module where it is mounted.
    sesame = compose["services"]["sesame"]
    config_path = sesame["command"][sesame["command"].index("-c") + 1]
    rendered_volume = next(v for v in sesame["volumes"] if v.startswith("sesame-config:"))
    assert config_path.startswith(rendered_volume.split(":")[1] + "/")
    wasm_mount = next(v for v in sesame["volumes"] if v.endswith(":ro") and ".wasm" in v)
    assert holder_code(bootstrap) == {wasm_mount.split(":")[-2]}
    # Published port -> listener with Sésame; oauth2-proxy:4180 -> listener.
    ports = {l["address"]["socket_address"]["port_value"]
             for l in bootstrap["static_resources"]["listeners"]}
    (published,) = sesame["ports"]
    assert int(published.rsplit(":", 1)[1]) in ports
    assert 4180 in ports and "oauth2-proxy" in sesame["networks"]["default"]["aliases"]
    point_files_at_test_files(bootstrap, tls_files)
    envoy_validate(bootstrap, tmp_path, "compose-envoy")


def test_compose_derives_callback_and_host_from_the_public_url(compose: dict[str, Any],
                                                              tmp_path: Path) -> None:
    text = render_compose_template(compose, tmp_path,
                                   PLAYGROUND_PUBLIC_URL="https://Playground.example.gouv.fr:8443/",
                                   SESAME_COOKIE_SECURE="true")
    config = json.loads(wasm_configs(load_yaml(text))[0]["value"])
    assert config["redirect_uri"] == "https://Playground.example.gouv.fr:8443/oauth2/callback"
    assert config["allowed_redirect_domains"] == ["Playground.example.gouv.fr"]
    assert config["cookie_secure"] is True


def test_compose_refuses_values_that_would_break_the_json(compose: dict[str, Any],
                                                          tmp_path: Path) -> None:
    for name, bad in (("PROCONNECT_CLIENT_SECRET", 'abc"def'),
                      ("SESAME_COOKIE_SECRET", "abc\\def"),
                      ("SESAME_COOKIE_SECURE", "yes")):
        proc = run_sesame_config(compose, tmp_path, **{name: bad})
        assert proc.returncode != 0, f"{name}={bad!r} was accepted"
        assert "sesame-config:" in proc.stderr, proc.stderr
        assert not (tmp_path / "envoy.yaml").exists()


def test_compose_playground_is_reached_through_sesame_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "oauth2-proxy" not in services
    assert "ports" not in services["playground"], "the Playground must not be published"
    assert services["playground"]["image"].startswith("ghcr.io/etalab-ia/opengatellm/playground:")
    assert services["api"]["image"].startswith("ghcr.io/etalab-ia/opengatellm/api:")
    assert services["sesame"]["image"].startswith("envoyproxy/envoy:v1.40")
    nginx = compose["configs"]["playground-nginx"]["content"]
    assert "auth_request" not in nginx
    assert "location /_event" in nginx and "Upgrade" in nginx


# --------------------------------------------------------------------------
# examples/istio


@pytest.fixture(scope="module", params=istio_example.OVERLAYS)
def istio(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The documents of one overlay, rendered by examples/istio/render.sh."""
    docs = istio_example.render_overlay(request.param, tmp_path_factory.mktemp("istio"))
    return istio_example.by_kind(docs)


def test_istio_wasmplugin(istio: dict[str, Any]) -> None:
    (plugin,) = istio["WasmPlugin"]
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = plugin["spec"]
    assert spec["url"].startswith("oci://")
    assert spec["phase"] == "AUTHN"
    assert spec["selector"]["matchLabels"]
    assert all(m.get("mode") == "SERVER" for m in spec.get("match", [{"mode": "SERVER"}]))
    config = spec["pluginConfig"]
    check_sesame_json(json.dumps(config), "wasmplugin.yaml pluginConfig")
    assert config["provider"] == "proconnect"
    assert config["cookie_secure"] is True


def test_istio_idp_cluster_is_the_tls_serviceentry_port(istio: dict[str, Any]) -> None:
    config = istio["WasmPlugin"][0]["spec"]["pluginConfig"]
    m = re.fullmatch(r"outbound\|(\d+)\|\|([a-z0-9.-]+)", config["idp_cluster"])
    assert m, f"idp_cluster {config['idp_cluster']!r} is not an Istio outbound cluster name"
    port, host = int(m.group(1)), m.group(2)
    assert host == PROCONNECT_HOSTS[config["proconnect_environment"]]
    entries = [se for se in istio["ServiceEntry"] if host in se["spec"]["hosts"]]
    assert entries, f"no ServiceEntry for {host}"
    se_port = next((p for se in entries for p in se["spec"]["ports"] if p["number"] == port), None)
    assert se_port, f"no ServiceEntry port {port} for {host}"
    assert se_port.get("targetPort", port) == 443
    rule = next(dr for dr in istio["DestinationRule"] if dr["spec"]["host"] == host)
    policy = rule["spec"]["trafficPolicy"]
    settings = next((s["tls"] for s in policy.get("portLevelSettings", [])
                     if s["port"]["number"] == port), policy.get("tls"))
    assert settings and settings["mode"] == "SIMPLE", "Sésame's calls need TLS origination"
    assert settings["sni"] == host
    # TLS originated on a port where the application speaks TLS itself would
    # be double TLS: a TLS/HTTPS port of the entry must not get it.
    for p in (p for se in entries for p in se["spec"]["ports"]):
        if p["protocol"] in ("TLS", "HTTPS"):
            on_port = next((s.get("tls") for s in policy.get("portLevelSettings", [])
                            if s["port"]["number"] == p["number"]), policy.get("tls"))
            assert not on_port or on_port.get("mode") == "DISABLE", f"double TLS on port {p['number']}"


def test_istio_plugin_config_is_accepted_by_sesame(istio: dict[str, Any], tmp_path: Path) -> None:
    """Sésame accepts the WasmPlugin's configuration, in a connection manager
    shaped like the sidecar's inbound one: with what the EnvoyFilter merges
    into it (so Envoy checks those settings' names and values too)."""
    config = istio["WasmPlugin"][0]["spec"]["pluginConfig"]
    (envoyfilter,) = istio["EnvoyFilter"]
    (patch,) = envoyfilter["spec"]["configPatches"]
    hcm_options = {k: v for k, v in patch["patch"]["value"]["typed_config"].items() if k != "@type"}
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 8501}}
    bootstrap = {
        "static_resources": {
            "listeners": [{
                "name": "inbound",
                "address": address,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound",
                        **hcm_options,
                        "upgrade_configs": [{"upgrade_type": "websocket"}],
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "direct_response": {"status": 200}}],
                        }]},
                        "http_filters": [
                            {"name": "envoy.filters.http.wasm", "typed_config": {
                                "@type": WASM_TYPE,
                                "config": {
                                    "name": "sesame", "root_id": "sesame",
                                    "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                                  "code": {"local": {"filename": str(WASM)}}},
                                    "configuration": {
                                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                                        "value": json.dumps(config),
                                    },
                                },
                            }},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http."
                                         "router.v3.Router"}},
                        ],
                    },
                }]}],
            }],
            "clusters": [{
                "name": config["idp_cluster"],
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": config["idp_cluster"], "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": address}}]}]},
            }],
        },
    }
    envoy_validate(bootstrap, tmp_path, "istio-plugin")


def test_istio_dockerfile_makes_a_wasm_image() -> None:
    lines = [l.strip() for l in code_lines((ISTIO_DIR / "Dockerfile").read_text()).splitlines()
             if l.strip()]
    assert lines[0] == "FROM scratch"
    assert any(re.fullmatch(r"COPY sesame\.wasm \.?/plugin\.wasm", l) for l in lines), lines


# --------------------------------------------------------------------------
# JSON embedded in the examples and guides

JSON_DOCS = [
    REPO_ROOT / "docs" / "MIGRATING-FROM-OAUTH2-PROXY.md",
    COMPOSE_DIR / "README.md",
    ISTIO_DIR / "README.md",
]


def test_demo_config_json() -> None:
    config = check_sesame_json((REPO_ROOT / "examples" / "demo-config.json").read_text(),
                               "examples/demo-config.json")
    entry_keys = set(configuration_keys("PROVIDER_KEYS") + configuration_keys("ENTRY_KEYS"))
    for i, entry in enumerate(config.get("providers", [])):
        unknown = set(entry) - entry_keys
        assert not unknown, f"examples/demo-config.json: providers[{i}]: unknown keys {sorted(unknown)}"


def demo_script() -> Any:
    """scripts/demo.py, imported (its checks, not its main)."""
    spec = importlib.util.spec_from_file_location("sesame_demo", REPO_ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_runs_the_envoy_file_it_shows() -> None:
    """`make demo` starts Envoy with envoy/demo.yaml as it is: that file's
    plugin configuration is examples/demo-config.json, its admin port the
    fixed 9901 the README names, and its clusters lead to the demo's
    servers (envoy/demo.yaml itself passes `envoy --mode validate`, with
    Sésame checking its configuration, in test_envoy_config_validates)."""
    demo = demo_script()
    config = json.loads((REPO_ROOT / "examples" / "demo-config.json").read_text())
    bootstrap = load_yaml((REPO_ROOT / "envoy" / "demo.yaml").read_text())
    assert demo.envoy_file_problems(bootstrap, config) == []
    assert "admin on 127.0.0.1:9901" in (REPO_ROOT / "README.md").read_text()
    # The check tells a drift: another configuration, or another port.
    changed = json.loads(json.dumps(config))
    changed["providers"][1]["client_id"] = "someone-else"
    assert demo.envoy_file_problems(bootstrap, changed)
    moved = json.loads(json.dumps(bootstrap))
    moved["admin"]["address"]["socket_address"]["port_value"] = 9902
    assert demo.envoy_file_problems(moved, config)


@pytest.mark.parametrize("path", JSON_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_json_blocks_in_guides(path: Path) -> None:
    text = path.read_text()
    blocks = re.findall(r"^```json\n(.*?)^```", text, re.S | re.M)
    for i, block in enumerate(blocks):
        check_sesame_json(block, f"{path.name} json block {i + 1}")


# --------------------------------------------------------------------------
# The guides in step with the configuration keys


def configuration_keys(list_name: str = "KNOWN_KEYS") -> list[str]:
    """The keys ``src/core/config.rs`` accepts (its list ``list_name``)."""
    source = (REPO_ROOT / "src" / "core" / "config.rs").read_text()
    block = source[source.index(f"const {list_name}: &[&str] = &["):]
    return re.findall(r'"(\w+)"', block[: block.index("];")])


# oauth2-proxy options and the Sésame key the migration guide must name for
# each (a renamed key, or a guide that says an option has no equivalent
# while Sésame has one, fails here).
OAUTH2_PROXY_EQUIVALENTS = {
    "cookie_refresh": "refresh_sessions",
    "cookie_name": "cookie_name",
    "skip_auth_routes": "skip_auth_routes",
    "skip_provider_button": "skip_provider_button",
    "email_domains": "allowed_email_domains",
    "set_authorization_header": "set_authorization_header",
    "pass_access_token": "pass_access_token",
    "OAUTH2_PROXY_COOKIE_SECRET": "cookie_secret",
    "OAUTH2_PROXY_COOKIE_SECURE": "cookie_secure",
    "OAUTH2_PROXY_COOKIE_EXPIRE": "session_lifetime",
    "OAUTH2_PROXY_WHITELIST_DOMAINS": "allowed_redirect_domains",
    "OAUTH2_PROXY_REDIRECT_URL": "redirect_uri",
    "OAUTH2_PROXY_SCOPE": "scopes",
}


def migration_option_rows() -> dict[str, str]:
    """The guide's "Option by option" table: first cell -> second cell."""
    text = (REPO_ROOT / "docs" / "MIGRATING-FROM-OAUTH2-PROXY.md").read_text()
    table = text[text.index("### Option by option"):]
    table = table[: table.index("\n\n", table.index("| --- |"))]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("oauth2-proxy", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_every_configuration_key_is_in_the_configuration_reference() -> None:
    doc = (REPO_ROOT / "docs" / "CONFIGURATION.md").read_text()
    keys = configuration_keys() + configuration_keys("ROUTE_KEYS")
    assert "refresh_sessions" in keys and "methods" in keys
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert not missing, f"not in docs/CONFIGURATION.md: {missing}"


def test_the_migration_guide_names_existing_keys_for_oauth2_proxy_options() -> None:
    keys = set(configuration_keys())
    rows = migration_option_rows()
    assert len(rows) >= 20, rows
    for option, key in OAUTH2_PROXY_EQUIVALENTS.items():
        row = next((sesame for first, sesame in rows.items() if option in first), None)
        assert row is not None, f"no row for {option}"
        assert key in keys, f"{key} is not a configuration key"
        assert key in row, f"the row for {option} does not name {key}: {row}"
        assert "not available" not in row.lower(), f"{option}: {row}"
    # Every key-like word the Sésame column quotes is a configuration key.
    for first, sesame in rows.items():
        for quoted in re.findall(r'"(\w+)":', sesame):
            assert quoted in keys, f"{first}: {quoted!r} is not a configuration key"
