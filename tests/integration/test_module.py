"""``dist/sesame.wasm`` as the preferred build route makes it (Debian's
toolchain, std built from source, link-time optimisation: see
``scripts/build-wasm.sh``): at most 600 KB."""

from __future__ import annotations

import pytest

from harness import DEFAULT_WASM, REPO_ROOT

LIMIT_BYTES = 600_000
# Where scripts/build-wasm.sh keeps the Debian route's optimised modules.
DEBIAN_OPTIMISED = REPO_ROOT / "target" / "debian" / "wasm32-wasip1" / "release" / "wasm-opt"


def test_module_is_at_most_600_kb():
    module = DEFAULT_WASM.read_bytes()
    built_here = [p for p in DEBIAN_OPTIMISED.glob("sesame.*.wasm") if p.read_bytes() == module]
    if not built_here:
        pytest.skip("dist/sesame.wasm was not built by the Debian route (rustup's fallback "
                    "makes a larger module)")
    assert len(module) <= LIMIT_BYTES, f"{len(module):,} bytes"
