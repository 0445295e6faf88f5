"""Offline checks of examples/istio, the Playground behind Sésame in Istio.

Each overlay (integration, production) is rendered as an operator renders it
(render.sh, with `kubectl kustomize` from .tools/venv), and:

* every document passes the JSON schema of its kind kept in
  examples/istio/schemas/ (Istio's CRDs and Kubernetes' own types, strict:
  an unknown field is an error), and a misspelt field is refused;
* the placeholders have the shape a deploy step fills in (the image by
  digest, the two digests of `make release`), sit in double-quoted strings,
  and secrets with YAML's special characters come through unchanged;
* the pieces fit: labels, ports, the nginx site's ConfigMap (in step with
  examples/compose/compose.yaml), the ProConnect environment of each
  overlay, the Envoy settings docs/CONFIGURATION.md asks for;
* examples/istio/schemas/convert.py converts as its README says.

test_examples.py checks the rendered WasmPlugin's configuration with Sésame
itself (through `envoy --mode validate`). Nothing here reaches a cluster.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from istio_example import (IMAGE_DIGEST, ISTIO_DIR, MODULE_SHA256, OVERLAYS, REPO_ROOT,
                           SAMPLE_ENV, SCHEMAS, by_kind, render_overlay, render_vars, run_render,
                           schema_errors, schema_path, yaml_docs)

PROCONNECT_HOSTS = {
    "integration": "fca.integ01.dev-agentconnect.fr",
    "production": "auth.agentconnect.gouv.fr",
}
SOURCE_FILES = sorted([*ISTIO_DIR.glob("base/*.yaml"), *ISTIO_DIR.glob("overlays/*/*.yaml")])
ISTIO_CRDS_COMMIT = "0983e6b3f96877fe1e8ecb2e16d1be77360cd2da"
KUBERNETES_SCHEMAS_SOURCE = "kubernetes-validate 1.37.0"


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    overlay = request.param
    return overlay, render_overlay(overlay, tmp_path_factory.mktemp(f"istio-{overlay}"))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs).get(kind, [])
    assert len(found) == 1, f"{len(found)} {kind} documents"
    return found[0]


# --------------------------------------------------------------------------
# schemas


def test_every_document_matches_the_schema_of_its_kind(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    kinds = {d["kind"] for d in docs}
    assert kinds == {"Namespace", "ConfigMap", "Secret", "Service", "Deployment", "WasmPlugin",
                     "ServiceEntry", "DestinationRule", "EnvoyFilter"}, kinds
    problems = [f"{d['kind']}/{d['metadata'].get('name')}: {e}"
                for d in docs for e in schema_errors(d)]
    assert not problems, f"{overlay}:\n" + "\n".join(problems)


def _set(*path: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets path[-1] (a misspelt field) under path[:-1]."""
    def change(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-2]:
            node = node[key]
        node[path[-2]] = path[-1]
    return change


def _rename(*path: Any) -> Callable[[dict[str, Any]], None]:
    """A change that renames the field path[-2] (under path[:-2]) to path[-1]."""
    def change(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-2]:
            node = node[key]
        node[path[-1]] = node.pop(path[-2])
    return change


BROKEN = [
    ("WasmPlugin", _rename("spec", "phase", "phse")),
    ("WasmPlugin", _rename("spec", "failStrategy", "failstrategy")),
    ("WasmPlugin", _rename("spec", "match", 0, "ports", 0, "number", "nubmer")),
    ("WasmPlugin", _rename("metadata", "namespace", "namespce")),
    ("WasmPlugin", _set("spec", "phase", "AUTHENTICATION")),
    ("WasmPlugin", _set("spec", "sha256", "sha256:" + IMAGE_DIGEST)),
    ("ServiceEntry", _rename("spec", "ports", 0, "targetPort", "targetport")),
    ("ServiceEntry", _rename("spec", "resolution", "resolve")),
    ("DestinationRule", _rename("spec", "trafficPolicy", "portLevelSettings", 0, "tls", "sni", "snii")),
    ("DestinationRule", _set("spec", "trafficPolicy", "portLevelSettings", 0, "tls", "mode", "SIMPLE_TLS")),
    ("EnvoyFilter", _rename("spec", "configPatches", 0, "match", "listener", "listner")),
    ("EnvoyFilter", _rename("spec", "workloadSelector", "labels", "matchLabels")),
    ("Deployment", _rename("spec", "template", "spec", "containers", 0, "volumeMounts", "volumemounts")),
    ("Deployment", _rename("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "path", "paht")),
    ("Deployment", _set("spec", "replicas", "one")),
    ("Service", _rename("spec", "ports", 0, "appProtocol", "appprotocol")),
    ("Namespace", _rename("metadata", "labels", "label")),
    ("Secret", _rename("stringData", "stringdata")),
    ("ConfigMap", _rename("data", "date")),
]


@pytest.mark.parametrize("kind,change", BROKEN, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BROKEN)])
def test_a_misspelt_field_is_refused(rendered: tuple[str, list[dict[str, Any]]], kind: str,
                                     change: Callable[[dict[str, Any]], None]) -> None:
    doc = copy.deepcopy(one(rendered[1], kind))
    assert not schema_errors(doc)
    change(doc)
    assert schema_errors(doc), f"the {kind} schema accepts a broken document:\n{doc}"


def test_a_kind_without_schema_is_refused() -> None:
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "x"}, "spec": {}}
    assert schema_errors(doc) == [f"no schema for networking.istio.io/v1 VirtualService "
                                  f"({schema_path('networking.istio.io/v1', 'VirtualService').name})"]


def test_schema_files_are_used_and_documented(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    used = {schema_path(d["apiVersion"], d["kind"]).name for d in rendered[1]}
    present = {p.name for p in SCHEMAS.glob("*.json")}
    assert present == used | {"objectmeta-meta-v1.json"}, f"unused: {present - used}"
    readme = (SCHEMAS / "README.md").read_text()
    for name in present:
        assert f"`{name}`" in readme, f"schemas/README.md does not list {name}"
        comment = json.loads((SCHEMAS / name).read_text())["$comment"]
        source = ISTIO_CRDS_COMMIT if "istio.io" in name else KUBERNETES_SCHEMAS_SOURCE
        assert source in comment and source in readme, (name, comment)


def _convert_module() -> Any:
    spec = importlib.util.spec_from_file_location("istio_convert", SCHEMAS / "convert.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_crd_conversion_does_what_its_readme_says() -> None:
    convert = _convert_module()
    crd_schema = {
        "type": "object",
        "description": "dropped",
        "properties": {
            "description": {"type": "string", "description": "a field of that name stays"},
            "count": {"type": "integer", "nullable": True, "format": "int32"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "port": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 65536"}]},
            "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
        "oneOf": [{"not": {"anyOf": [{"required": ["count"]}]}}, {"required": ["count"]}],
    }
    assert convert.convert_crd_schema(crd_schema) == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "description": {"type": "string"},
            "count": {"type": ["integer", "null"], "format": "int32"},
            "free": {"type": "object"},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "port": {"type": "integer"},
            "list": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                "properties": {"a": {"type": "string"}}}},
        },
        "oneOf": [{"not": {"anyOf": [{"required": ["count"]}]}}, {"required": ["count"]}],
    }
    # The schemas in the tree are that conversion's output (sorted, indent 1).
    for path in SCHEMAS.glob("*.json"):
        assert path.read_text() == convert.dump(json.loads(path.read_text())), path.name


# --------------------------------------------------------------------------
# placeholders and rendering

PLACEHOLDER = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def test_placeholders_are_render_sh_variables_in_double_quoted_strings() -> None:
    variables = set(render_vars())
    seen: set[str] = set()
    for path in SOURCE_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ISTIO_DIR)}:{number}"
            names = set(PLACEHOLDER.findall(line)) & variables
            if line.lstrip().startswith("#"):
                assert not names, f"{where}: render.sh would substitute {names} in a comment"
                continue
            for name in set(re.findall(r"\$\{([^}]*)\}", line)):
                assert name in variables, f"{where}: ${{{name}}} is not one of render.sh's {sorted(variables)}"
                assert re.search(r'"[^"#]*\$\{' + name + r'\}[^"]*"', line), (
                    f"{where}: ${{{name}}} must sit inside a double-quoted string")
                seen.add(name)
            bare = {n for n in re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", line) if n in variables}
            assert not bare, f"{where}: write ${{{bare.pop()}}}"
    assert seen == variables, f"render.sh variables never used: {variables - seen}"


def test_the_image_is_referenced_by_digest() -> None:
    """The placeholders' shape in the source, then the rendered values."""
    text = (ISTIO_DIR / "base" / "wasmplugin.yaml").read_text()
    assert re.search(r'^  url: "oci://\$\{SESAME_REGISTRY\}/sesame@sha256:\$\{SESAME_IMAGE_DIGEST\}"$',
                     text, re.M), "url is not oci://${SESAME_REGISTRY}/sesame@sha256:${SESAME_IMAGE_DIGEST}"
    assert re.search(r'^  sha256: "\$\{SESAME_IMAGE_DIGEST\}"$', text, re.M)
    assert re.search(r'^    sesame\.wasm/module-sha256: "\$\{SESAME_WASM_SHA256\}"$', text, re.M)


def test_rendered_image_reference(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    plugin = one(rendered[1], "WasmPlugin")
    spec = plugin["spec"]
    m = re.fullmatch(r"oci://([a-z0-9.:/-]+)/sesame@sha256:([0-9a-f]{64})", spec["url"])
    assert m, spec["url"]
    assert m.group(1) == SAMPLE_ENV["SESAME_REGISTRY"]
    # For oci:// Istio checks `sha256` against the image's manifest digest:
    # the same digest as the url's, never the module's.
    assert m.group(2) == spec["sha256"] == IMAGE_DIGEST
    assert plugin["metadata"]["annotations"]["sesame.wasm/module-sha256"] == MODULE_SHA256
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    deployment = one(rendered[1], "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == SAMPLE_ENV["PLAYGROUND_IMAGE"]


def test_nothing_is_left_unrendered(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    text = json.dumps(rendered[1])
    assert "${" not in text


def test_digests_with_or_without_their_prefix(tmp_path: Path) -> None:
    a = run_render("production", tmp_path)
    b = run_render("production", tmp_path, SESAME_IMAGE_DIGEST=IMAGE_DIGEST,
                   SESAME_WASM_SHA256="sha256:" + MODULE_SHA256)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout


def test_secrets_come_through_unchanged(tmp_path: Path) -> None:
    """YAML's special characters in a secret: quoted by render.sh, the value
    reaches the WasmPlugin and the Secret as it was."""
    secret = 'a"b\\c: #d &e *f {g} \'h\' $i %j'
    client_id = "- [x]"
    docs = by_kind(render_overlay("production", tmp_path, PROCONNECT_CLIENT_SECRET=secret,
                                  PROCONNECT_CLIENT_ID=client_id))
    config = docs["WasmPlugin"][0]["spec"]["pluginConfig"]
    assert config["client_secret"] == secret
    assert config["client_id"] == client_id
    data = docs["Secret"][0]["stringData"]
    assert data == {"client-id": client_id, "client-secret": secret}
    json.dumps(config)  # Istio sends it to the module as JSON


@pytest.mark.parametrize("overrides,message", [
    ({"SESAME_IMAGE_DIGEST": ""}, "set SESAME_IMAGE_DIGEST"),
    ({"SESAME_IMAGE_DIGEST": "sha256:" + "3F" * 32}, "SESAME_IMAGE_DIGEST must be"),
    ({"SESAME_IMAGE_DIGEST": "3f" * 31}, "SESAME_IMAGE_DIGEST must be"),
    ({"SESAME_WASM_SHA256": "sha512:" + "9c" * 32}, "SESAME_WASM_SHA256 must be"),
    ({"SESAME_REGISTRY": "oci://registry.example.gouv.fr/sesame"}, "SESAME_REGISTRY must be"),
    ({"SESAME_REGISTRY": "registry.example.gouv.fr/sesame/"}, "SESAME_REGISTRY must be"),
    ({"SESAME_REGISTRY": "registry.example.gouv.fr/sesame:0.1.0"}, "SESAME_REGISTRY must be"),
    ({"PLAYGROUND_HOST": "https://playground.example.gouv.fr"}, "PLAYGROUND_HOST must be"),
    ({"SESAME_COOKIE_SECRET": "c2hvcnQ="}, "SESAME_COOKIE_SECRET must be"),
    ({"PROCONNECT_CLIENT_SECRET": "abc\ndef"}, "PROCONNECT_CLIENT_SECRET holds a control"),
    ({"PLAYGROUND_IMAGE": "ghcr.io/etalab-ia/opengatellm/playground:0.2.8 --x"}, "PLAYGROUND_IMAGE must be"),
    ({"PLAYGROUND_IMAGE": 'playground:"latest"'}, "PLAYGROUND_IMAGE must be"),
], ids=lambda v: v if isinstance(v, str) else next(iter(v)))
def test_render_refuses_bad_values(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    proc = run_render("production", tmp_path, **overrides)
    assert proc.returncode != 0, f"accepted {overrides}"
    assert proc.stdout == ""
    assert proc.stderr.startswith("render.sh: ") and message in proc.stderr, proc.stderr


def test_render_refuses_an_unknown_overlay(tmp_path: Path) -> None:
    proc = run_render("staging", tmp_path)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "no overlay 'staging'" in proc.stderr


def test_render_defaults_to_the_prebuilt_playground_image(tmp_path: Path) -> None:
    env = {k: v for k, v in SAMPLE_ENV.items() if k != "PLAYGROUND_IMAGE"}
    proc = run_render("integration", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    deployment = by_kind(yaml_docs(proc.stdout))["Deployment"][0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    compose = yaml_docs((REPO_ROOT / "examples" / "compose" / "compose.yaml").read_text())[0]
    prebuilt = compose["services"]["playground"]["image"].split(":")[0]
    assert container["image"] == prebuilt + ":latest"


# --------------------------------------------------------------------------
# the pieces fit


def test_overlay_signs_in_at_its_proconnect_environment(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    host = PROCONNECT_HOSTS[overlay]
    config = one(docs, "WasmPlugin")["spec"]["pluginConfig"]
    assert config["provider"] == "proconnect"
    assert config["proconnect_environment"] == overlay
    assert config["idp_cluster"] == f"outbound|80||{host}"
    assert one(docs, "ServiceEntry")["spec"]["hosts"] == [host]
    rule = one(docs, "DestinationRule")
    assert rule["spec"]["host"] == host
    tls = rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]
    assert tls["sni"] == host and tls["subjectAltNames"] == [host]
    public = f"https://{SAMPLE_ENV['PLAYGROUND_HOST']}"
    assert config["redirect_uri"] == public + "/oauth2/callback"
    assert config["allowed_redirect_domains"] == [SAMPLE_ENV["PLAYGROUND_HOST"]]
    assert config["cookie_name"].startswith("__Host-") and config["cookie_secure"] is True
    # The ProConnect client the Playground reads is the one Sésame signs in with.
    secret = one(docs, "Secret")["stringData"]
    assert secret == {"client-id": config["client_id"], "client-secret": config["client_secret"]}


def test_everything_is_in_the_injected_namespace(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    name = namespace["metadata"]["name"]
    assert name == {"production": "opengatellm", "integration": "opengatellm-integration"}[overlay]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == name, doc["metadata"]
    assert one(docs, "ServiceEntry")["spec"]["exportTo"] == ["."]
    assert one(docs, "DestinationRule")["spec"]["exportTo"] == ["."]


def test_the_plugin_the_envoyfilter_and_the_service_meet_the_playground(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    docs = rendered[1]
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == 8501

    plugin = one(docs, "WasmPlugin")["spec"]
    assert plugin["selector"]["matchLabels"].items() <= labels.items()
    assert plugin["match"] == [{"mode": "SERVER", "ports": [{"number": port["containerPort"]}]}]
    assert plugin["phase"] == "AUTHN"

    envoyfilter = one(docs, "EnvoyFilter")["spec"]
    assert envoyfilter["workloadSelector"]["labels"].items() <= labels.items()
    (patch,) = envoyfilter["configPatches"]
    assert patch["match"]["context"] == "SIDECAR_INBOUND"
    assert patch["match"]["listener"]["portNumber"] == port["containerPort"]

    service = one(docs, "Service")["spec"]
    assert service["selector"].items() <= labels.items()
    (service_port,) = service["ports"]
    assert service_port["targetPort"] == port["containerPort"]
    # Istio gives the port an HTTP filter chain (where WasmPlugins run) when
    # it knows the protocol.
    assert service_port["appProtocol"] == "http" and service_port["name"].startswith("http")

    # What the pod mounts and reads exists.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    configmap = one(docs, "ConfigMap")
    nginx = next(v for v in volumes.values() if "configMap" in v)
    assert nginx["configMap"]["name"] == configmap["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == nginx["name"])
    assert mount["mountPath"] == "/playground/nginx.oauth2-proxy.conf"
    assert mount["subPath"] in configmap["data"]
    secret = one(docs, "Secret")
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PLAYGROUND_PUBLIC_URL"] == f"https://{SAMPLE_ENV['PLAYGROUND_HOST']}"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/ping"
    assert one(docs, "WasmPlugin")["spec"]["pluginConfig"]["skip_auth_routes"] == ["GET=^/ping$"]


def test_the_playground_runs_as_compose_runs_it(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    compose = yaml_docs((REPO_ROOT / "examples" / "compose" / "compose.yaml").read_text())[0]
    service = compose["services"]["playground"]
    (container,) = one(rendered[1], "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {e["name"] for e in container["env"]} == set(service["environment"])
    assert str(container["ports"][0]["containerPort"]) in service["expose"]
    (config,) = service["configs"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == config["target"])
    assert mount["readOnly"] is True


def test_the_nginx_site_is_compose_s(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """base/playground-nginx.conf is compose.yaml's `playground-nginx`
    config, each `$$` written `$` (its leading comment aside)."""
    compose = yaml_docs((REPO_ROOT / "examples" / "compose" / "compose.yaml").read_text())[0]
    expected = compose["configs"]["playground-nginx"]["content"].replace("$$", "$")
    text = (ISTIO_DIR / "base" / "playground-nginx.conf").read_text()
    lines = text.splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    assert "".join(lines) == expected, "base/playground-nginx.conf differs from compose.yaml's site"
    assert "auth_request" not in expected
    (content,) = one(rendered[1], "ConfigMap")["data"].values()
    assert content == text


def _settings_configuration_md_asks() -> dict[str, Any]:
    doc = (REPO_ROOT / "docs" / "CONFIGURATION.md").read_text()
    section = doc[doc.index("## Envoy settings that matter"):]
    first = section[: section.index("\n- ", section.index("\n- ") + 1)]
    found = dict(re.findall(r"`(\w+): (\w+)`", first))
    assert set(found) == {"normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
                          "headers_with_underscores_action"}, found
    return {k: {"true": True, "false": False}.get(v, v) for k, v in found.items()}


def test_the_envoyfilter_sets_what_the_configuration_reference_asks(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    (patch,) = one(rendered[1], "EnvoyFilter")["spec"]["configPatches"]
    assert patch["applyTo"] == "NETWORK_FILTER" and patch["patch"]["operation"] == "MERGE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == \
        "envoy.filters.network.http_connection_manager"
    hcm = patch["patch"]["value"]["typed_config"]
    assert hcm["@type"].endswith(".http_connection_manager.v3.HttpConnectionManager")
    flat = {k: v for k, v in hcm.items() if not isinstance(v, dict) and k != "@type"}
    flat.update(hcm.get("common_http_protocol_options", {}))
    assert flat == _settings_configuration_md_asks()


def test_the_mesh_normalises_paths() -> None:
    """mesh/istiod-values.yaml: MeshConfig pathNormalization, MERGE_SLASHES
    or stricter (istio.mesh.v1alpha1 ProxyPathNormalization.NormalizationType:
    DEFAULT, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)."""
    (values,) = yaml_docs((ISTIO_DIR / "mesh" / "istiod-values.yaml").read_text())
    assert values == {"meshConfig": {"pathNormalization": {"normalization": "MERGE_SLASHES"}}} \
        or values == {"meshConfig": {"pathNormalization": {"normalization": "DECODE_AND_MERGE_SLASHES"}}}, values
    # What Istio then sets on its HTTP connection managers is what the
    # EnvoyFilter repeats for the Playground.
    asks = _settings_configuration_md_asks()
    assert asks["normalize_path"] is True and asks["merge_slashes"] is True


# --------------------------------------------------------------------------
# documentation


def test_the_readme_documents_every_variable_and_command() -> None:
    readme = (ISTIO_DIR / "README.md").read_text()
    for name in render_vars():
        assert f"`{name}`" in readme, f"README.md does not document {name}"
    for overlay in OVERLAYS:
        assert f"render.sh {overlay} | kubectl apply -f -" in readme
    assert "extensions.istio.io/v1alpha1" in readme and "networking.istio.io/v1" in readme
    assert "tests/integration/test_istio.py" in readme
