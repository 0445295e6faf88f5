#!/usr/bin/env python3
"""Make the JSON schemas that tests/integration/test_istio.py checks the
Istio example's manifests against, from their upstream sources.

    convert.py istio CRD_FILE --source SOURCE [--check]
        CRD_FILE: Istio's CRDs, manifests/charts/base/files/crd-all.gen.yaml
        of istio/istio (SOURCE names the repository, commit and path). Each
        wanted CRD version's openAPIV3Schema becomes <kind>-<group>-<version>.json.

    convert.py kubernetes SCHEMA_DIR --source SOURCE [--check]
        SCHEMA_DIR: kubernetes_validate/kubernetes-json-schema/vX.Y.0-local-strict
        of the PyPI package kubernetes-validate (SOURCE names it). Each wanted
        kind's schema is written self-contained (with the definitions it
        reaches) as <kind>-<group or core>-<version>.json, and ObjectMeta as
        objectmeta-meta-v1.json (the metadata of the Istio objects).

--check writes nothing: it compares what it would write with the files
beside this script and fails on any difference (provenance check).

What the conversion does to a CRD's openAPIV3Schema, and nothing else:

* keeps every validating keyword (type, properties, items, required, enum,
  pattern, minimum/maximum, min/maxLength, min/maxItems, maxProperties,
  oneOf/anyOf/allOf/not, format);
* `nullable: true` becomes a `"null"` alternative in `type`;
* an object with `properties`, no `additionalProperties` and no
  `x-kubernetes-preserve-unknown-fields: true` gets
  `additionalProperties: false`: the API server drops or, with kubectl's
  default strict field validation, refuses unknown fields there, so a
  misspelt field is an error here too;
* drops `description` and the `x-kubernetes-*` extensions (the CEL rules of
  `x-kubernetes-validations` cannot be evaluated here: see README.md);
* adds at the top `apiVersion` and `kind` (constants) and `metadata` (an
  object, checked against objectmeta-meta-v1.json by the test), which a CRD
  leaves to the API server.

The Kubernetes schemas are copied without their descriptions, with their
`$ref`s to _definitions.json made local (`#/$defs/...`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# (kind, group, version) of the Istio objects the example uses.
ISTIO_WANTED = [
    ("WasmPlugin", "extensions.istio.io", "v1alpha1"),
    ("ServiceEntry", "networking.istio.io", "v1"),
    ("DestinationRule", "networking.istio.io", "v1"),
    ("EnvoyFilter", "networking.istio.io", "v1alpha3"),
]

# kubernetes-json-schema file -> (kind, group, version) of the Kubernetes
# objects the example uses.
KUBERNETES_WANTED = {
    "namespace-v1.json": ("Namespace", "", "v1"),
    "service-v1.json": ("Service", "", "v1"),
    "configmap-v1.json": ("ConfigMap", "", "v1"),
    "secret-v1.json": ("Secret", "", "v1"),
    "deployment-apps-v1.json": ("Deployment", "apps", "v1"),
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DEFS_REF = "/api/_definitions.json#/$defs/"

# Keywords of an OpenAPI structural schema that do not validate, or that
# this conversion replaces.
DROPPED = {
    "description",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
}


def schema_file(kind: str, group: str, version: str) -> str:
    return f"{kind.lower()}-{group or 'core'}-{version}.json"


# --------------------------------------------------------------------------
# Istio CRDs


def convert_crd_schema(node: Any) -> Any:
    """One openAPIV3Schema node, as JSON Schema (see the module's doc)."""
    if isinstance(node, list):
        return [convert_crd_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED:
            continue
        if key == "properties":
            out[key] = {name: convert_crd_schema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not", "oneOf", "anyOf", "allOf"):
            out[key] = convert_crd_schema(value)
        else:
            out[key] = value
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if ("properties" in node and "additionalProperties" not in node
            and node.get("x-kubernetes-preserve-unknown-fields") is not True):
        out["additionalProperties"] = False
    return out


def istio_schemas(crd_file: Path, source: str) -> dict[str, Any]:
    from ruamel.yaml import YAML  # the tests' YAML parser (tests/requirements.txt)

    docs = [d for d in YAML(typ="safe", pure=True).load_all(crd_file.read_text()) if d]
    found: dict[str, Any] = {}
    for kind, group, version in ISTIO_WANTED:
        crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"
                and d["spec"]["group"] == group and d["spec"]["names"]["kind"] == kind]
        if len(crds) != 1:
            sys.exit(f"convert.py: {len(crds)} CRDs for {kind}.{group} in {crd_file}")
        (crd,) = crds
        versions = [v for v in crd["spec"]["versions"] if v["name"] == version]
        if len(versions) != 1 or not versions[0].get("served"):
            sys.exit(f"convert.py: {kind}.{group} has no served version {version}")
        schema = convert_crd_schema(versions[0]["schema"]["openAPIV3Schema"])
        schema["properties"] = {
            "apiVersion": {"const": f"{group}/{version}"},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            **schema["properties"],
        }
        schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
        schema["$schema"] = DRAFT
        schema["$comment"] = (f"{kind} {group}/{version}: openAPIV3Schema of the CRD "
                              f"{crd['metadata']['name']} in {source}, converted by convert.py")
        found[schema_file(kind, group, version)] = schema
    return found


# --------------------------------------------------------------------------
# Kubernetes core schemas


def localise(node: Any, needed: set[str]) -> Any:
    """Without descriptions, with $refs into _definitions.json made local."""
    if isinstance(node, list):
        return [localise(n, needed) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "$ref":
            prefix = next((p for p in (DEFS_REF, "#/$defs/") if value.startswith(p)), None)
            assert prefix, f"unexpected $ref {value}"
            needed.add(value[len(prefix):])
            out[key] = "#/$defs/" + value[len(prefix):]
        elif key == "properties":
            out[key] = {name: localise(s, needed) for name, s in value.items()}
        else:
            out[key] = localise(value, needed)
    return out


def with_definitions(root: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    needed: set[str] = set()
    out = localise(root, needed)
    defs: dict[str, Any] = {}
    while needed - defs.keys():
        name = sorted(needed - defs.keys())[0]
        defs[name] = localise(definitions[name], needed)
    out["$defs"] = defs
    return out


def kubernetes_schemas(schema_dir: Path, source: str) -> dict[str, Any]:
    definitions = json.loads((schema_dir / "_definitions.json").read_text())["$defs"]
    found: dict[str, Any] = {}
    for name, (kind, group, version) in KUBERNETES_WANTED.items():
        root = json.loads((schema_dir / name).read_text())
        root.pop("$id", None)
        schema = with_definitions(root, definitions)
        schema["$schema"] = DRAFT
        schema["$comment"] = f"{kind} {group or 'core'}/{version}: {name} of {source}, by convert.py"
        found[schema_file(kind, group, version)] = schema
    meta = with_definitions({"$ref": DEFS_REF + OBJECT_META}, definitions)
    meta["$schema"] = DRAFT
    meta["$comment"] = f"ObjectMeta meta/v1: {OBJECT_META} of {source}, by convert.py"
    found[schema_file("ObjectMeta", "meta", "v1")] = meta
    return found


# --------------------------------------------------------------------------


def dump(schema: Any) -> str:
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["istio", "kubernetes"])
    parser.add_argument("input", type=Path, help="the CRD file, or the schema directory")
    parser.add_argument("--source", required=True,
                        help="where the input comes from (repository or package, version, path)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in place instead of writing them")
    args = parser.parse_args()
    if args.what == "istio":
        schemas = istio_schemas(args.input, args.source)
    else:
        schemas = kubernetes_schemas(args.input, args.source)
    differ = []
    for name, schema in schemas.items():
        path = HERE / name
        text = dump(schema)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                differ.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE)}")
    if differ:
        print(f"convert.py: differ from the conversion of {args.input}: {', '.join(differ)}",
              file=sys.stderr)
        return 1
    if args.check:
        print(f"convert.py: {len(schemas)} schemas match the conversion of {args.input}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
