#!/usr/bin/env python3
"""Writes Sésame's release artefacts into dist/ (`make release`).

From dist/sesame.wasm (built by `make wasm`) and the version in Cargo.toml's
[package] table:

  dist/sesame-<version>.wasm       the module, byte for byte
  dist/sesame-<version>-oci/       the module as an OCI image, in the OCI image
                                   layout (oci-layout, index.json,
                                   blobs/sha256/...), the shape Istio's
                                   WasmPlugin pulls with `url: oci://...`
  dist/sesame-<version>-oci.tar    that layout as one tar archive
  dist/libsesame-<version>-<arch>.so
                                   the native module (Envoy dynamic module),
                                   from `make native`'s dist/libsesame.so
  dist/SHA256SUMS                  sha256sum's format, every file above
                                   (`cd dist && sha256sum -c SHA256SUMS`)
  dist/README                      how to push the image and pin it in a
                                   WasmPlugin, with this release's digests
                                   (from scripts/release-README.in)

It prints the two digests at the end: the module's sha256 and the image's
manifest digest.

The output is a function of the module's bytes, the version and one
timestamp, nothing else: the same inputs give the same bytes, on any machine.
The timestamp (the image's `created`) is SOURCE_DATE_EPOCH when set, else the
time of the commit checked out (`git log -1 --format=%ct`). Tar entries have
mtime 0, uid and gid 0, no user or group names and a fixed mode, in sorted
order; the gzip stream has no file name and mtime 0, and its deflate data is
written here as stored blocks, so that its bytes do not depend on the zlib of
the machine (zlib and zlib-ng, or two zlib versions, may compress the same
input differently). That costs size: the layer is about as large as the
module (590 KB), where `gzip -9` would make it 260 KB; Istio's agent pulls it
once per proxy and keeps it in its cache.

Python's standard library only: no container engine, no registry client.

  python3 scripts/release.py [--module dist/sesame.wasm] [--dist dist]
                             [--version V] [--created EPOCH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import string
import subprocess
import sys
import tarfile
import time
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README_TEMPLATE = Path(__file__).resolve().parent / "release-README.in"

# The image's format. Istio's fetcher (istio/istio, pkg/wasm/imagefetcher.go)
# takes three kinds of image, after the Wasm image specification of solo-io/wasm
# (spec/spec-compat.md and spec/spec.md):
#
# - Docker's manifest with a last layer `application/vnd.docker.image.rootfs.
#   diff.tar.gzip` (what `docker build` of examples/istio/Dockerfile makes);
# - the "compat" variant: an OCI manifest whose last layer is
#   `application/vnd.oci.image.layer.v1.tar+gzip`, a tar holding `plugin.wasm`
#   (found by its base name), which Istio tries first for an OCI manifest;
# - the "oci" variant: exactly two layers, one of them
#   `application/vnd.module.wasm.content.layer.v1+wasm` (the raw module), the
#   other `application/vnd.module.wasm.config.v1+json`.
#
# This is the compat variant: standard media types only, so that every
# registry stores it and skopeo, crane, oras and docker copy it unchanged
# (the "oci" variant's custom media types are refused by some registries), and
# it is the kind Istio tries first. Its spec asks for the manifest annotation
# `module.wasm.image/variant: compat` with this layer type.
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYOUT_VERSION = "1.0.0"
PLUGIN_FILE = "plugin.wasm"
# The image config's platform: Go's names (as the OCI image spec asks) for
# what the module is built for, wasm32-wasip1. Istio never reads them: a
# WasmPlugin's url names a manifest, not an index to choose from.
PLATFORM_OS = "wasip1"
PLATFORM_ARCHITECTURE = "wasm"

# Architectures of the native library, by the ELF header's e_machine.
ELF_MACHINES = {0x03: "i386", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv64"}


class ReleaseError(Exception):
    pass


@dataclass(frozen=True)
class Image:
    """The OCI image of one module: its blobs by digest, and the layout's
    two JSON files."""

    blobs: dict[str, bytes]  # "sha256:<hex>" -> content
    index_json: bytes
    layout_json: bytes
    manifest_digest: str
    module_sha256: str

    def files(self) -> dict[str, bytes]:
        """The layout's files by relative path."""
        files = {"oci-layout": self.layout_json, "index.json": self.index_json}
        for digest, blob in self.blobs.items():
            algorithm, hexdigest = digest.split(":")
            files[f"blobs/{algorithm}/{hexdigest}"] = blob
        return dict(sorted(files.items()))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    """One serialisation for a given value: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def descriptor(media_type: str, blob: bytes, annotations: dict[str, str] | None = None) -> dict:
    d = {"mediaType": media_type, "digest": "sha256:" + sha256(blob), "size": len(blob)}
    if annotations:
        d["annotations"] = annotations
    return d


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def tar_bytes(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A ustar archive of ``entries`` (path, content; None for a directory),
    in the order given, with nothing of the machine or the time in it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.type = tarfile.REGTYPE
                info.mode = 0o644
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def gzip_stored(data: bytes) -> bytes:
    """``data`` as a gzip member (RFC 1952) whose deflate stream (RFC 1951) is
    made of stored blocks: no file name, mtime 0, OS "unknown"; the same bytes
    wherever it runs."""
    header = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255])
    blocks = []
    chunks = [data[i:i + 0xFFFF] for i in range(0, len(data), 0xFFFF)] or [b""]
    for i, chunk in enumerate(chunks):
        final = 1 if i == len(chunks) - 1 else 0
        size = len(chunk)
        blocks.append(bytes([final]) + size.to_bytes(2, "little")
                      + (size ^ 0xFFFF).to_bytes(2, "little") + chunk)
    trailer = (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little") \
        + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    return header + b"".join(blocks) + trailer


def build_image(module: bytes, version: str, created: int, licenses: str | None = None) -> Image:
    """The compat-variant image of ``module`` (see the top of this file)."""
    if module[:4] != b"\0asm":
        raise ReleaseError("the module is not WebAssembly (no \\0asm header)")
    timestamp = rfc3339(created)
    layer_tar = tar_bytes([(PLUGIN_FILE, module)])
    layer = gzip_stored(layer_tar)
    config = canonical_json({
        "architecture": PLATFORM_ARCHITECTURE,
        "os": PLATFORM_OS,
        "created": timestamp,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(layer_tar)]},
    })
    annotations = {
        "module.wasm.image/variant": "compat",
        "org.opencontainers.image.title": "sesame",
        "org.opencontainers.image.description":
            "Sésame, an OpenID Connect login filter for Envoy (proxy-wasm module)",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": timestamp,
    }
    if licenses:
        annotations["org.opencontainers.image.licenses"] = licenses
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(LAYER_TYPE, layer)],
        "annotations": annotations,
    })
    # The layout's one entry, named by the version: the reference that
    # `skopeo copy oci:DIR:<version>` and `oras cp --from-oci-layout
    # DIR:<version>` take.
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [descriptor(MANIFEST_TYPE, manifest,
                                 {"org.opencontainers.image.ref.name": version})],
    })
    blobs = {"sha256:" + sha256(b): b for b in (config, layer, manifest)}
    return Image(blobs=dict(sorted(blobs.items())), index_json=index,
                 layout_json=canonical_json({"imageLayoutVersion": LAYOUT_VERSION}),
                 manifest_digest="sha256:" + sha256(manifest), module_sha256=sha256(module))


def layout_archive(image: Image) -> bytes:
    """The image layout as a tar archive: its directories and files, sorted,
    at the archive's root (what `skopeo copy oci-archive:` and `oras cp
    --from-oci-layout FILE.tar:TAG` read)."""
    entries: dict[str, bytes | None] = {}
    for path, content in image.files().items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries["/".join(parts[:i]) + "/"] = None
        entries[path] = content
    return tar_bytes(sorted(entries.items()))


def elf_architecture(data: bytes) -> str:
    if data[:4] != b"\x7fELF" or len(data) < 20:
        raise ReleaseError("dist/libsesame.so is not an ELF shared library")
    order = "little" if data[5] == 1 else "big"
    machine = int.from_bytes(data[18:20], order)
    return ELF_MACHINES.get(machine, f"elf{machine}")


# ---------------------------------------------------------------------------
# inputs


def cargo_package(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)["package"]


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the time of the commit checked out."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value:
        if not value.isdigit():
            raise ReleaseError(f"SOURCE_DATE_EPOCH is not a number of seconds: {value!r}")
        return int(value)
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise ReleaseError("no SOURCE_DATE_EPOCH and no git commit to take the image's "
                           "creation time from: set SOURCE_DATE_EPOCH (seconds since 1970)") from e
    return int(out)


# ---------------------------------------------------------------------------
# writing dist/


def write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def remove_previous(dist: Path) -> None:
    """Release artefacts of an earlier run (any version): dist/ holds one
    release. dist/sesame.wasm and dist/libsesame.so are the builds', kept."""
    for pattern in ("sesame-*.wasm", "sesame-*-oci", "sesame-*-oci.tar", "libsesame-*.so",
                    "SHA256SUMS", "README", "*.tmp"):
        for path in dist.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def write_layout(directory: Path, image: Image) -> None:
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for path, content in image.files().items():
        target = tmp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o644)
    tmp.rename(directory)


def sha256sums(dist: Path, names: list[str]) -> bytes:
    """sha256sum's text format: "<hex>  <path>" per file, sorted by path."""
    return "".join(f"{sha256((dist / n).read_bytes())}  {n}\n" for n in sorted(names)).encode()


def render_readme(template: str, **values: str) -> bytes:
    try:
        return string.Template(template).substitute(values).encode()
    except (KeyError, ValueError) as e:
        raise ReleaseError(f"{README_TEMPLATE.name}: unknown or broken placeholder: {e}") from e


def release(module_path: Path, dist: Path, version: str, created: int,
            licenses: str | None = None) -> tuple[Image, list[str]]:
    """Writes the release into ``dist``; returns the image and the file names
    SHA256SUMS covers."""
    if not module_path.is_file():
        raise ReleaseError(f"no {module_path}: run `make wasm` first")
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._+-]*", version):
        raise ReleaseError(f"version {version!r} cannot name a file or an image tag")
    module = module_path.read_bytes()
    image = build_image(module, version, created, licenses)
    dist.mkdir(parents=True, exist_ok=True)
    remove_previous(dist)

    wasm_name = f"sesame-{version}.wasm"
    oci_dir = f"sesame-{version}-oci"
    oci_tar = f"{oci_dir}.tar"
    write_file(dist / wasm_name, module)
    write_layout(dist / oci_dir, image)
    write_file(dist / oci_tar, layout_archive(image))
    listing = [
        (wasm_name, "the proxy-wasm module"),
        (oci_dir + "/", "the module as an OCI image, in the OCI image layout"),
        (oci_tar, "the same image layout as one tar archive"),
    ]
    covered = [wasm_name, oci_tar] + [f"{oci_dir}/{p}" for p in image.files()]

    # The native module (`make native`'s dist/libsesame.so) joins the
    # release under a versioned name with its architecture, and SHA256SUMS
    # covers it.
    native = dist / "libsesame.so"
    if native.is_file():
        data = native.read_bytes()
        native_name = f"libsesame-{version}-{elf_architecture(data)}.so"
        write_file(dist / native_name, data)
        listing.append((native_name, "the native module, an Envoy dynamic module for Envoy "
                                     "1.40 (loads in 1.39 with a warning): install it as "
                                     "libsesame.so in ENVOY_DYNAMIC_MODULES_SEARCH_PATH"))
        covered.append(native_name)

    listing += [("SHA256SUMS", "sha256 of every file here (sha256sum -c SHA256SUMS)"),
                ("README", "this file")]
    width = max(len(name) for name, _ in listing)
    readme = render_readme(
        README_TEMPLATE.read_text(),
        version=version,
        created=rfc3339(created),
        artefacts="\n".join(f"  {name.ljust(width)}  {text}" for name, text in listing),
        wasm=wasm_name, oci_dir=oci_dir, oci_tar=oci_tar,
        module_sha256=image.module_sha256,
        manifest_digest=image.manifest_digest,
        manifest_hex=image.manifest_digest.split(":", 1)[1],
    )
    write_file(dist / "README", readme)
    covered.append("README")
    write_file(dist / "SHA256SUMS", sha256sums(dist, covered))
    return image, covered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", type=Path, default=ROOT / "dist" / "sesame.wasm",
                        help="the module to release (default: dist/sesame.wasm)")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist",
                        help="where to write (default: dist/)")
    parser.add_argument("--version", help="default: Cargo.toml's [package] version")
    parser.add_argument("--created", type=int,
                        help="the image's creation time, seconds since 1970 (default: "
                             "SOURCE_DATE_EPOCH, else the commit's time)")
    args = parser.parse_args(argv)
    try:
        package = cargo_package(ROOT / "Cargo.toml")
        version = args.version or package["version"]
        created = args.created if args.created is not None else source_date_epoch()
        image, covered = release(args.module, args.dist, version, created,
                                 package.get("license"))
    except ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    shown = os.path.relpath(args.dist)
    if shown.startswith(".."):
        shown = str(args.dist)
    print(f"release: Sésame {version} in {shown}/ (image created {rfc3339(created)}), "
          f"{len(covered)} files in SHA256SUMS")
    print(f"  module sha256 ({shown}/sesame-{version}.wasm, plugin.wasm in the image):")
    print(f"    {image.module_sha256}")
    print("  image manifest digest (WasmPlugin url: oci://REGISTRY/sesame@<this>, and sha256:):")
    print(f"    {image.manifest_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
