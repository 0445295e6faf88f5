"""The hostcalls of Sésame's hot path, counted.

Every hostcall crosses the V8 boundary, which costs Envoy about a
microsecond. These tests run the built module in Node's V8 (the engine
Envoy runs it in) behind a stub host that counts every call
(``bench/vm-bench.mjs``), with a session from a real sign-in at the local
provider. A request with a session the VM opened before must read the
headers once, take Sésame's cookies out of the ``Cookie`` header (one
removal, one add when the application has cookies of its own) and add the
identity headers, and do nothing else: the clock
and the counters are left to the filter's timer. The time these calls cost
inside Envoy is measured by ``make bench``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from harness import DEFAULT_WASM, NODE, REPO_ROOT
from oidc_client import logged_in

VM_BENCH = REPO_ROOT / "bench" / "vm-bench.mjs"
# The VM's clock gives 64 bounds from one reading before it reads again
# (src/adapter/mod.rs, CLOCK_USES), should the timer stop.
CLOCK_CYCLE = 65


def run_module(tmp_path: Path, config: dict[str, Any], cookie: str, requests: int) -> dict:
    """``requests`` GET /chat with ``cookie`` through the module, no timer tick."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(cookie + "\n")
    run = subprocess.run([NODE, str(VM_BENCH), str(DEFAULT_WASM), str(config_file),
                          str(cookies), "/chat", "1", str(requests)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def session_cookie(envoy) -> str:
    b = logged_in(envoy.url, "alice")
    return "; ".join(f"{c.name}={c.value}" for c in b.cookies)


def test_a_known_session_costs_one_read_and_one_add_per_identity_header(
        sesame_envoy, tmp_path):
    """With Sésame's cookies left in the request (``strip_session_cookies:
    false``): one read, then the adds."""
    config = {**sesame_envoy.plugin_config, "strip_session_cookies": False}
    out = run_module(tmp_path, config, session_cookie(sesame_envoy), 100)

    added = [name for name, _ in out["changes"]["add"]]
    assert "x-forwarded-email" in added and "x-forwarded-user" in added, out["changes"]
    assert out["changes"]["respond"] == [], out["changes"]
    # No clock, no counter, no shared data: one read, then the adds.
    assert out["hostcalls"] == {"get_header_map_pairs": 1,
                                "add_header_map_value": len(added)}, out["hostcalls"]


def test_sesames_cookies_cost_one_removal_and_one_add(sesame_envoy, tmp_path):
    """By default Sésame's own cookies are taken out of the request: the
    ``Cookie`` header is removed, and added back with the application's
    cookies only (not at all when none is left)."""
    cookie = session_cookie(sesame_envoy)
    out = run_module(tmp_path, sesame_envoy.plugin_config, cookie, 100)
    added = dict(out["changes"]["add"])
    assert out["changes"]["remove"] == ["cookie"], out["changes"]
    assert "cookie" not in added
    assert out["hostcalls"] == {"get_header_map_pairs": 1, "remove_header_map_value": 1,
                                "add_header_map_value": len(added)}, out["hostcalls"]

    out = run_module(tmp_path, sesame_envoy.plugin_config, f"theme=dark; {cookie}; lang=fr", 100)
    added = dict(out["changes"]["add"])
    assert out["changes"]["remove"] == ["cookie"], out["changes"]
    assert added["cookie"] == "theme=dark; lang=fr"
    assert out["hostcalls"] == {"get_header_map_pairs": 1, "remove_header_map_value": 1,
                                "add_header_map_value": len(added)}, out["hostcalls"]


def test_without_its_timer_the_vm_still_reads_the_clock_every_65_requests(
        sesame_envoy, tmp_path):
    """The bound requests take from the VM's last reading of the clock is
    only as good as the timer that takes the readings: should it stop, the
    VM still reads the clock once in every 65 requests, so that a cached
    session cannot outlive its expiry by more than that."""
    n = 20 * CLOCK_CYCLE
    out = run_module(tmp_path, sesame_envoy.plugin_config, session_cookie(sesame_envoy), n)

    calls = out["timed"]["hostcalls"]
    assert out["timed"]["requests"] == n
    assert calls["get_header_map_pairs"] == n, calls
    assert 19 <= calls.get("get_current_time_nanoseconds", 0) <= 21, calls
    # The counts wait for the timer, which never ticks here.
    assert "increment_metric" not in calls, calls
