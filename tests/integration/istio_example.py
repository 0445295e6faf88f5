"""examples/istio for the tests: render an overlay as an operator would
(render.sh, kubectl kustomize from .tools/venv), and check a manifest
document against the JSON schemas kept in examples/istio/schemas/.

Used by test_istio.py and test_examples.py; nothing here talks to the
network or to a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

REPO_ROOT = Path(__file__).resolve().parents[2]
ISTIO_DIR = REPO_ROOT / "examples" / "istio"
RENDER = ISTIO_DIR / "render.sh"
SCHEMAS = ISTIO_DIR / "schemas"
KUBECTL = REPO_ROOT / ".tools" / "venv" / "bin" / "kubectl"
OVERLAYS = ("integration", "production")

# What a deploy step takes from `make release`, the secret store and the
# operator. Digests as `make release` prints them (the image's with
# `sha256:`, the module's without).
IMAGE_DIGEST = "3f" * 32
MODULE_SHA256 = "9c" * 32
SAMPLE_ENV = {
    "SESAME_REGISTRY": "registry.example.gouv.fr/sesame",
    "SESAME_IMAGE_DIGEST": "sha256:" + IMAGE_DIGEST,
    "SESAME_WASM_SHA256": MODULE_SHA256,
    "PLAYGROUND_HOST": "playground.example.gouv.fr",
    "PROCONNECT_CLIENT_ID": "0f3c6a51b2d84e7f9a1c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071",
    "PROCONNECT_CLIENT_SECRET": "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d",
    "SESAME_COOKIE_SECRET": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "PLAYGROUND_IMAGE": "registry.example.gouv.fr/opengatellm/playground:0.2.8-playground.example.gouv.fr",
}


def yaml_docs(text: str) -> list[Any]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]


def render_vars() -> list[str]:
    """The variables render.sh substitutes (its VARS=(...) list)."""
    m = re.search(r"^VARS=\(([^)]*)\)", RENDER.read_text(), re.M)
    assert m, "VARS=(...) not found in render.sh"
    return m.group(1).split()


def run_render(overlay: str, tmp_path: Path, env: dict[str, str] | None = None,
               **overrides: str) -> subprocess.CompletedProcess[str]:
    """render.sh OVERLAY with ``env`` (default SAMPLE_ENV) and ``overrides``."""
    assert KUBECTL.exists(), f"{KUBECTL} missing: run scripts/setup-python.sh"
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if not shutil.which("envsubst"):
        from test_examples import _envsubst_shim
        path = f"{_envsubst_shim(tmp_path)}:{path}"
    run_env = {"PATH": path, "HOME": str(tmp_path), "KUBECTL": str(KUBECTL),
               "TMPDIR": str(tmp_path), **(SAMPLE_ENV if env is None else env), **overrides}
    return subprocess.run(["bash", str(RENDER), overlay], env=run_env, capture_output=True,
                          text=True, timeout=120)


def render_overlay(overlay: str, tmp_path: Path, **overrides: str) -> list[dict[str, Any]]:
    proc = run_render(overlay, tmp_path, **overrides)
    assert proc.returncode == 0, f"render.sh {overlay} failed:\n{proc.stderr}"
    assert not list(tmp_path.glob("tmp.*")), "render.sh left its working copy behind"
    docs = yaml_docs(proc.stdout)
    for doc in docs:
        assert isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc, doc
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


# --------------------------------------------------------------------------
# schemas


def schema_path(api_version: str, kind: str) -> Path:
    """examples/istio/schemas/<kind>-<group or core>-<version>.json"""
    group, _, version = api_version.rpartition("/")
    return SCHEMAS / f"{kind.lower()}-{group or 'core'}-{version}.json"


@lru_cache(maxsize=None)
def validator(path: Path) -> Draft202012Validator:
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the schema of its kind (empty: it passes).
    A CRD's schema leaves `metadata` to the API server: it is checked
    against Kubernetes' ObjectMeta here."""
    path = schema_path(doc["apiVersion"], doc["kind"])
    if not path.is_file():
        return [f"no schema for {doc['apiVersion']} {doc['kind']} ({path.name})"]
    errors = [(e, "") for e in validator(path).iter_errors(doc)]
    if "istio.io/" in doc["apiVersion"] and isinstance(doc.get("metadata"), dict):
        meta = validator(SCHEMAS / "objectmeta-meta-v1.json")
        errors += [(e, "metadata") for e in meta.iter_errors(doc["metadata"])]
    return [f"{'/'.join(str(p) for p in (prefix, *e.absolute_path) if p != '') or '(top)'}: "
            f"{e.message}" for e, prefix in errors]
