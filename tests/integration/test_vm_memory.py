"""The gauge ``vm_memory_bytes``: the linear memory of Sésame's wasm VMs,
as the filter reports it every second (what ``make soak`` watches)."""

from __future__ import annotations

import time

import pytest

import harness
from oidc_client import JSON, gauge, raw_get

pytestmark = pytest.mark.skipif(
    harness.BUILD == "native",
    reason="wasm build only: the native module runs in no VM (make bench compares Envoy's RSS)")

# Two VMs run the filter's timer with --concurrency 1 (the main thread's and
# the worker's); a Rust wasm module starts with at least 1 MiB (its stack).
AT_LEAST = 2 * 1024 * 1024


def wait_gauge(envoy, above: int = 0, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        value = gauge(envoy, "vm_memory_bytes")
        if value is not None and value > above:
            return value
        if time.monotonic() > deadline:
            return value or 0
        time.sleep(0.1)


def test_gauge_reports_linear_memory_and_follows_its_growth(
    make_envoy, make_config, wait_provider_ready
):
    envoy = make_envoy(make_config(), start=False)
    hcm = envoy.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"][0]["typed_config"]
    hcm["max_request_headers_kb"] = 1024
    envoy.start()
    # The provider's documents are fetched first: the memory they take is
    # in the starting figure, not mistaken for the cookie's.
    wait_provider_ready(envoy)
    time.sleep(1.2)  # every VM's next report

    start = wait_gauge(envoy)
    assert start >= AT_LEAST and start % 65536 == 0, start

    # The host copies a request's headers into the filter's memory: a 600 KB
    # cookie makes the worker's linear memory grow (by whole 64 KiB pages,
    # less what was free already), and the gauge follows.
    r = raw_get(envoy.url, "/big", cookie="a=" + "b" * 600_000, headers=JSON)
    assert r.status_code == 401
    grown = wait_gauge(envoy, above=start + 500_000 - 1)
    assert grown >= start + 500_000, (start, grown)
