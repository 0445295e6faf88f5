"""``dist/sesame.wasm`` as ``scripts/build-wasm.sh`` makes it: at most 600 KB
by the preferred route (Debian's toolchain, std built from source, link-time
optimisation), and exporting the callbacks Sésame implements and no entry
point of the SDK's that would only continue (Envoy skips the callbacks a
module does not export)."""

from __future__ import annotations

import re

import pytest

from harness import DEFAULT_WASM, REPO_ROOT

LIMIT_BYTES = 600_000
RELEASE = "wasm32-wasip1/release/wasm-opt"
# Where scripts/build-wasm.sh keeps the optimised modules of each route.
DEBIAN_OPTIMISED = REPO_ROOT / "target" / "debian" / RELEASE
OPTIMISED = (DEBIAN_OPTIMISED, REPO_ROOT / "target" / RELEASE)

# The exports a proxy-wasm module needs whatever it implements.
INFRASTRUCTURE = {"memory", "_initialize", "proxy_abi_version_0_2_1", "proxy_on_vm_start",
                  "proxy_on_context_create", "proxy_on_memory_allocate", "proxy_on_delete"}
# The SDK's callback methods (traits Context, RootContext, HttpContext,
# StreamContext) and the ABI entry points that call them.
ENTRY_POINTS = {
    "on_configure": {"proxy_on_configure"},
    "on_vm_start": {"proxy_on_vm_start"},
    "on_tick": {"proxy_on_tick"},
    "on_done": {"proxy_on_done"},
    "on_log": {"proxy_on_log"},
    "on_queue_ready": {"proxy_on_queue_ready"},
    "on_foreign_function": {"proxy_on_foreign_function"},
    "on_http_call_response": {"proxy_on_http_call_response"},
    "on_grpc_call_response": {"proxy_on_grpc_receive", "proxy_on_grpc_close"},
    "on_grpc_stream_initial_metadata": {"proxy_on_grpc_receive_initial_metadata"},
    "on_grpc_stream_message": {"proxy_on_grpc_receive"},
    "on_grpc_stream_trailing_metadata": {"proxy_on_grpc_receive_trailing_metadata"},
    "on_grpc_stream_close": {"proxy_on_grpc_close"},
    "on_http_request_headers": {"proxy_on_request_headers"},
    "on_http_request_body": {"proxy_on_request_body"},
    "on_http_request_trailers": {"proxy_on_request_trailers"},
    "on_http_response_headers": {"proxy_on_response_headers"},
    "on_http_response_body": {"proxy_on_response_body"},
    "on_http_response_trailers": {"proxy_on_response_trailers"},
    "on_new_connection": {"proxy_on_new_connection"},
    "on_downstream_data": {"proxy_on_downstream_data"},
    "on_downstream_close": {"proxy_on_downstream_connection_close"},
    "on_upstream_data": {"proxy_on_upstream_data"},
    "on_upstream_close": {"proxy_on_upstream_connection_close"},
}


def leb128(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``at``: its value and the offset after it."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def wasm_exports(module: bytes) -> set[str]:
    """The names in a wasm module's export section."""
    assert module[:8] == b"\0asm\1\0\0\0", "not a wasm module"
    at = 8
    while at < len(module):
        section, at = module[at], at + 1
        size, at = leb128(module, at)
        if section == 7:
            count, at = leb128(module, at)
            names = set()
            for _ in range(count):
                length, at = leb128(module, at)
                names.add(module[at:at + length].decode())
                at += length + 1  # the name, then the kind
                _, at = leb128(module, at)  # the index
            return names
        at += size
    return set()


def implemented_entry_points() -> set[str]:
    """The ABI entry points of the callbacks src/adapter/ implements."""
    methods = set(re.findall(r"\bfn (on_\w+)\s*[(<]",
                             "".join(p.read_text() for p in (REPO_ROOT / "src" / "adapter")
                                     .glob("*.rs"))))
    unknown = methods - ENTRY_POINTS.keys()
    assert not unknown, f"callbacks this test does not know: {sorted(unknown)}"
    return set().union(*(ENTRY_POINTS[m] for m in methods))


def optimised_here(module: bytes, dirs=OPTIMISED, exports: str = "*") -> bool:
    """Whether ``module`` is one build-wasm.sh optimised into one of ``dirs``
    (with its EXPORTS argument ``exports``)."""
    return any(p.read_bytes() == module
               for d in dirs for p in d.glob(f"sesame.{exports}.*.wasm"))


def test_module_is_at_most_600_kb():
    module = DEFAULT_WASM.read_bytes()
    if not optimised_here(module, dirs=(DEBIAN_OPTIMISED,)):
        pytest.skip("dist/sesame.wasm was not built by the Debian route (rustup's fallback "
                    "makes a larger module)")
    assert len(module) <= LIMIT_BYTES, f"{len(module):,} bytes"


def test_module_exports_every_callback_it_implements():
    exports = wasm_exports(DEFAULT_WASM.read_bytes())
    needed = implemented_entry_points() | INFRASTRUCTURE
    assert {"proxy_on_request_headers", "proxy_on_configure"} <= needed
    assert needed <= exports, f"not exported: {sorted(needed - exports)}"


def test_module_exports_no_callback_left_to_the_sdk():
    module = DEFAULT_WASM.read_bytes()
    if not optimised_here(module, exports="sesame"):
        pytest.skip("dist/sesame.wasm was not optimised by build-wasm.sh (SESAME_WASM_OPT=0): "
                    "it keeps every entry point of the SDK's")
    exports, expected = wasm_exports(module), implemented_entry_points() | INFRASTRUCTURE
    assert exports == expected, \
        f"also exported: {sorted(exports - expected)}; missing: {sorted(expected - exports)}"
