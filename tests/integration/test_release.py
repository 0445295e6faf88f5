"""``make release``'s artefacts (``scripts/release.py``), from ``dist/sesame.wasm``:

* the packaging step run twice on the same module, once with ``--created`` and
  once with ``SOURCE_DATE_EPOCH``, writes the same bytes;
* the OCI image follows the image specification: ``oci-layout``,
  ``index.json``, the manifest, the config and the layer have the right media
  types, every descriptor gives the size and sha256 of its blob, every blob
  is named by its digest and none is left over; the layer is a deterministic
  tar.gz holding ``plugin.wasm``, the module byte for byte; the tar archive
  holds the same layout; it is the "compat" variant that Istio's fetcher reads;
* ``SHA256SUMS`` covers every artefact (``sha256sum -c``), ``README`` gives both
  digests, a native ``libsesame.so`` joins the release when there is one, and
  a new release replaces the previous one in ``dist/``;
* the module itself is reproducible: rebuilt from a copy of the sources (in
  another directory, every file newer than the build) in a copy of
  ``target/debian``, then through ``wasm-opt`` again, it is ``dist/sesame.wasm``
  byte for byte (about 40 s here: the crate alone is compiled);
* where ``skopeo`` and a registry (Debian's ``docker-registry``) are
  installed, the layout and its archive are pushed with ``skopeo copy
  --preserve-digests`` to a registry on loopback, which serves the manifest
  under the digest ``make release`` printed, and pulling it by digest as
  Istio does gives back the module.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness import DEFAULT_WASM, REPO_ROOT, free_port

RELEASE_SCRIPT = REPO_ROOT / "scripts" / "release.py"
BUILD_WASM = REPO_ROOT / "scripts" / "build-wasm.sh"
VERSION = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())["package"]["version"]
CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z
CREATED_TEXT = "2026-01-01T00:00:00Z"

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def load_release_module():
    spec = importlib.util.spec_from_file_location("sesame_release", RELEASE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


release_tool = load_release_module()


def run_release(dist: Path, *args: str, env: dict[str, str] | None = None,
                module: Path = DEFAULT_WASM) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(RELEASE_SCRIPT), "--module", str(module), "--dist", str(dist), *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def module_bytes() -> bytes:
    assert DEFAULT_WASM.is_file(), "no dist/sesame.wasm: run `make wasm` first"
    return DEFAULT_WASM.read_bytes()


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory, module_bytes) -> Path:
    dist = tmp_path_factory.mktemp("release")
    run_release(dist, "--created", str(CREATED))
    return dist


@pytest.fixture(scope="module")
def layout(release_dir) -> Path:
    return release_dir / f"sesame-{VERSION}-oci"


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def blob(layout_dir: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":")
    return (layout_dir / "blobs" / algorithm / hexdigest).read_bytes()


def check_descriptor(layout_dir: Path, d: dict, media_type: str) -> bytes:
    """A descriptor (image spec, descriptor.md) and the blob it points at."""
    assert d["mediaType"] == media_type
    assert DIGEST.fullmatch(d["digest"]), d["digest"]
    assert isinstance(d["size"], int) and not isinstance(d["size"], bool)
    content = blob(layout_dir, d["digest"])
    assert len(content) == d["size"], f"{d['digest']}: size {len(content)}, descriptor {d['size']}"
    assert "sha256:" + hashlib.sha256(content).hexdigest() == d["digest"]
    return content


def image_parts(layout_dir: Path) -> dict[str, Any]:
    index = read_json(layout_dir / "index.json")
    (entry,) = index["manifests"]
    manifest_raw = check_descriptor(layout_dir, entry, MANIFEST_TYPE)
    manifest = json.loads(manifest_raw)
    config_raw = check_descriptor(layout_dir, manifest["config"], CONFIG_TYPE)
    layers = [check_descriptor(layout_dir, d, LAYER_TYPE) for d in manifest["layers"]]
    return {"index": index, "entry": entry, "manifest_raw": manifest_raw, "manifest": manifest,
            "config": json.loads(config_raw), "layers": layers}


# --------------------------------------------------------------------------
# reproducible packaging


def test_packaging_twice_gives_the_same_bytes(release_dir, tmp_path):
    again = tmp_path / "again"
    result = run_release(again, env={"SOURCE_DATE_EPOCH": str(CREATED)})
    first, second = tree(release_dir), tree(again)
    assert list(first) == list(second)
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"different bytes: {different}"
    # `make release` prints both digests.
    index = read_json(release_dir / f"sesame-{VERSION}-oci" / "index.json")
    assert index["manifests"][0]["digest"] in result.stdout
    assert hashlib.sha256(DEFAULT_WASM.read_bytes()).hexdigest() in result.stdout


def test_release_writes_the_versioned_module_and_the_image(release_dir, module_bytes):
    assert (release_dir / f"sesame-{VERSION}.wasm").read_bytes() == module_bytes
    assert (release_dir / f"sesame-{VERSION}-oci").is_dir()
    assert (release_dir / f"sesame-{VERSION}-oci.tar").is_file()
    assert not list(release_dir.glob("libsesame*")), "no native library was given"


# --------------------------------------------------------------------------
# the OCI image


def test_image_layout(layout):
    """image-layout.md: `oci-layout` with imageLayoutVersion, `index.json` an
    image index, blobs under blobs/<alg>/<encoded>; every blob is referenced."""
    assert read_json(layout / "oci-layout") == {"imageLayoutVersion": "1.0.0"}
    index = read_json(layout / "index.json")
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == INDEX_TYPE
    assert len(index["manifests"]) == 1
    entry = index["manifests"][0]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    parts = image_parts(layout)
    referenced = {entry["digest"], parts["manifest"]["config"]["digest"],
                  *(d["digest"] for d in parts["manifest"]["layers"])}
    stored = {f"sha256:{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}
    assert stored == referenced
    assert {p.name for p in (layout / "blobs").iterdir()} == {"sha256"}
    assert sorted(p.name for p in layout.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_manifest_and_config(layout):
    """manifest.md and config.md; the compat variant of the Wasm image
    specification (one tar+gzip layer, its annotation)."""
    parts = image_parts(layout)
    manifest, config = parts["manifest"], parts["config"]
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert len(manifest["layers"]) == 1
    annotations = manifest["annotations"]
    assert annotations["module.wasm.image/variant"] == "compat"
    assert annotations["org.opencontainers.image.version"] == VERSION
    assert annotations["org.opencontainers.image.created"] == CREATED_TEXT
    assert config["created"] == CREATED_TEXT
    assert config["os"] and config["architecture"]
    layer_tar = gzip.decompress(parts["layers"][0])
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]}


def test_layer_holds_the_module_byte_for_byte(layout, module_bytes):
    (layer,) = image_parts(layout)["layers"]
    # gzip (RFC 1952): deflate, no flags (so no file name), mtime 0.
    assert layer[:3] == b"\x1f\x8b\x08"
    assert layer[3] == 0, "gzip flags: no name, comment or extra field"
    assert layer[4:8] == b"\0\0\0\0", "gzip mtime"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm"]
        (member,) = members
        assert member.isreg()
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert tar.extractfile(member).read() == module_bytes


def test_what_istio_fetcher_takes(layout, module_bytes):
    """The steps of Istio's fetcher for an OCI manifest (pkg/wasm/imagefetcher.go):
    not Docker's manifest type, so the compat variant first: the last layer
    must be an OCI tar+gzip layer, and its file whose base name is plugin.wasm
    is the module."""
    parts = image_parts(layout)
    assert parts["manifest"]["mediaType"] != "application/vnd.docker.distribution.manifest.v2+json"
    last = parts["manifest"]["layers"][-1]
    assert last["mediaType"] == LAYER_TYPE
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(parts["layers"][-1]))) as tar:
        found = [m for m in tar.getmembers() if m.name.rsplit("/", 1)[-1] == "plugin.wasm"]
        assert tar.extractfile(found[0]).read() == module_bytes
    assert module_bytes[:4] == b"\0asm"


def test_archive_holds_the_same_layout(release_dir, layout):
    archive = release_dir / f"sesame-{VERSION}-oci.tar"
    files = tree(layout)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        names = [m.name.rstrip("/") for m in members]
        assert names == sorted(names), "entries in sorted order"
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
            assert not m.name.startswith(("/", "./")) and ".." not in m.name.split("/")
        regular = {m.name: tar.extractfile(m).read() for m in members if m.isreg()}
        directories = {m.name.rstrip("/") for m in members if m.isdir()}
    assert regular == files
    assert directories == {"blobs", "blobs/sha256"}
    assert len(members) == len(regular) + len(directories)


def test_gzip_stored_blocks_decompress():
    for size in (0, 1, 0xFFFF, 0xFFFF + 1, 3 * 0xFFFF + 7):
        data = bytes(i * 7 % 251 for i in range(size))
        assert gzip.decompress(release_tool.gzip_stored(data)) == data


# --------------------------------------------------------------------------
# SHA256SUMS, README, the native library, dist/ between releases


def test_sha256sums_cover_every_artefact(release_dir):
    lines = (release_dir / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        m = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line)
        assert m, f"not sha256sum's format: {line!r}"
        listed[m.group(2)] = m.group(1)
    files = {n for n in tree(release_dir) if n != "SHA256SUMS"}
    assert set(listed) == files
    assert list(listed) == sorted(listed)
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=release_dir,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_readme_gives_both_digests(release_dir, layout, module_bytes):
    text = (release_dir / "README").read_text()
    manifest_digest = image_parts(layout)["entry"]["digest"]
    module_sha = hashlib.sha256(module_bytes).hexdigest()
    assert f"url: oci://registry.example/sesame@{manifest_digest}" in text
    assert f"sha256: {manifest_digest.split(':')[1]}" in text
    assert f"sha256: {module_sha}" in text  # for an http(s) url
    assert f"skopeo copy --preserve-digests oci:sesame-{VERSION}-oci:{VERSION} docker://" in text
    assert f"crane push sesame-{VERSION}-oci registry.example/sesame:{VERSION}" in text
    assert f"oras cp --from-oci-layout sesame-{VERSION}-oci.tar:{VERSION}" in text
    assert not re.search(r"\$\{?[A-Za-z_]", text), "a template placeholder left"


def elf_header(machine: int) -> bytes:
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1  # 64-bit, little-endian, version 1
    header[16:18] = (3).to_bytes(2, "little")  # ET_DYN
    header[18:20] = machine.to_bytes(2, "little")
    return bytes(header)


def test_a_native_library_joins_the_release(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    library = elf_header(0x3E) + b"\0" * 100
    (dist / "libsesame.so").write_bytes(library)
    run_release(dist, "--created", str(CREATED))
    released = dist / f"libsesame-{VERSION}-x86_64.so"
    assert released.read_bytes() == library
    sums = (dist / "SHA256SUMS").read_text()
    assert f"{hashlib.sha256(library).hexdigest()}  {released.name}\n" in sums
    assert released.name in (dist / "README").read_text()
    assert (dist / "libsesame.so").exists(), "the build's own file stays"


def test_a_new_release_replaces_the_previous_one(tmp_path):
    dist = tmp_path / "dist"
    run_release(dist, "--created", str(CREATED), "--version", "0.0.1")
    (dist / "sesame.wasm").write_bytes(b"\0asm\1\0\0\0")  # the build's, kept
    run_release(dist, "--created", str(CREATED))
    names = sorted(p.name for p in dist.iterdir())
    assert names == sorted(["README", "SHA256SUMS", "sesame.wasm", f"sesame-{VERSION}.wasm",
                            f"sesame-{VERSION}-oci", f"sesame-{VERSION}-oci.tar"])


def test_not_a_module_is_refused(tmp_path):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm")
    result = subprocess.run([sys.executable, str(RELEASE_SCRIPT), "--module", str(bad),
                             "--dist", str(tmp_path / "dist"), "--created", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "not WebAssembly" in result.stderr


# --------------------------------------------------------------------------
# the module, rebuilt


DEBIAN_TARGET = REPO_ROOT / "target" / "debian"
DEBIAN_OPTIMISED = DEBIAN_TARGET / "wasm32-wasip1" / "release" / "wasm-opt"


def test_module_rebuilds_to_the_same_bytes(tmp_path, module_bytes):
    """The crate compiled again from a copy of its sources in another
    directory (every file newer than the last build), in a copy of
    target/debian (std and the dependencies as they were built), and
    optimised again by wasm-opt: dist/sesame.wasm, byte for byte."""
    if not any(p.read_bytes() == module_bytes for p in DEBIAN_OPTIMISED.glob("sesame.sesame.*.wasm")):
        pytest.skip("dist/sesame.wasm was not built by the Debian route with wasm-opt "
                    "(scripts/build-wasm.sh): nothing to rebuild it against")
    sources = [REPO_ROOT / "Cargo.toml", REPO_ROOT / "Cargo.lock",
               *(p for p in (REPO_ROOT / "src").rglob("*") if p.is_file())]
    built = DEFAULT_WASM.stat().st_mtime
    newer = [str(p.relative_to(REPO_ROOT)) for p in sources if p.stat().st_mtime > built]
    assert not newer, f"dist/sesame.wasm is older than {newer[:5]}: run `make wasm` first"

    crate = tmp_path / "crate"
    crate.mkdir()
    for name in ("Cargo.toml", "Cargo.lock"):
        shutil.copy(REPO_ROOT / name, crate / name)  # new mtimes: cargo compiles the crate
    shutil.copytree(REPO_ROOT / "src", crate / "src", copy_function=shutil.copy)
    target = tmp_path / "target"
    # wasm-opt's results are kept by their input's sha256: without them it runs again.
    shutil.copytree(DEBIAN_TARGET, target / "debian", symlinks=True,
                    ignore=lambda d, names: ["wasm-opt"] if Path(d) == DEBIAN_OPTIMISED.parent else [])
    out = tmp_path / "sesame.wasm"
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(BUILD_WASM), str(crate), "sesame", str(out), "sesame"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, "SESAME_TARGET_DIR": str(target), "SESAME_WASM_ROUTE": "debian"})
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Compiling sesame" in result.stderr, "the crate was not compiled again"
        assert "wasm-opt:" in result.stderr, "wasm-opt did not run"
        rebuilt = out.read_bytes()
    finally:
        shutil.rmtree(target, ignore_errors=True)
    print(f"rebuilt in {elapsed:.0f} s")
    assert rebuilt == module_bytes, (
        f"rebuilt module differs: {len(rebuilt)} bytes sha256 {hashlib.sha256(rebuilt).hexdigest()}, "
        f"dist/sesame.wasm {len(module_bytes)} bytes sha256 {hashlib.sha256(module_bytes).hexdigest()}")


# --------------------------------------------------------------------------
# through a registry (where skopeo and a registry are installed)

REGISTRY_BIN = shutil.which("docker-registry") or shutil.which("registry")


@pytest.mark.skipif(not (shutil.which("skopeo") and REGISTRY_BIN),
                    reason="needs skopeo and a registry (Debian: apt-get install skopeo docker-registry)")
def test_pushed_with_skopeo_and_pulled_by_digest(release_dir, layout, module_bytes, tmp_path):
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    base = f"http://127.0.0.1:{port}/v2"
    registry = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{base}/", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the registry did not start"
                time.sleep(0.1)
        digest = image_parts(layout)["entry"]["digest"]
        sources = {"layout": f"oci:{layout}:{VERSION}",
                   "archive": f"oci-archive:{release_dir / f'sesame-{VERSION}-oci.tar'}:{VERSION}"}
        for repository, source in sources.items():
            copy = subprocess.run(
                ["skopeo", "--insecure-policy", "copy", "--preserve-digests",
                 "--dest-tls-verify=false", source,
                 f"docker://127.0.0.1:{port}/sesame-{repository}:{VERSION}"],
                capture_output=True, text=True, timeout=120)
            assert copy.returncode == 0, copy.stderr
            accept = {"Accept": f"{MANIFEST_TYPE}, application/vnd.docker.distribution.manifest.v2+json"}
            by_tag = urllib.request.urlopen(urllib.request.Request(
                f"{base}/sesame-{repository}/manifests/{VERSION}", headers=accept))
            assert by_tag.headers["Docker-Content-Digest"] == digest
            # As Istio pulls `url: oci://REGISTRY/sesame@<digest>`.
            raw = urllib.request.urlopen(urllib.request.Request(
                f"{base}/sesame-{repository}/manifests/{digest}", headers=accept)).read()
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
            last = json.loads(raw)["layers"][-1]
            assert last["mediaType"] == LAYER_TYPE
            layer = urllib.request.urlopen(f"{base}/sesame-{repository}/blobs/{last['digest']}").read()
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
                assert tar.extractfile("plugin.wasm").read() == module_bytes
    finally:
        registry.terminate()
        registry.wait(timeout=10)
