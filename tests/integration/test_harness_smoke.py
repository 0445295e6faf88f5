"""The test harness itself works: Envoy (without Sésame) proxies to the
upstream, and a refused Wasm plugin is reported as a startup failure."""

from __future__ import annotations

import uuid

import requests

from harness import Envoy, free_port


def test_request_through_envoy_reaches_upstream(make_envoy, upstream):
    envoy = make_envoy(wasm=False)
    marker = uuid.uuid4().hex

    response = requests.get(
        envoy.url + "/smoke?x=1",
        headers={"Accept": "application/json", "X-Smoke-Test": marker},
        timeout=5,
    )

    assert response.status_code == 200
    response.json()  # the upstream describes the request in JSON...
    assert marker in response.text  # ...with the headers it received
    assert envoy.stats("http.ingress.downstream_rq_2xx") == {
        "http.ingress.downstream_rq_2xx": 1
    }
    assert "starting main dispatch loop" in envoy.log_text()


def test_stop_ends_envoy(make_envoy):
    envoy = make_envoy(wasm=False)
    envoy.stop()
    assert not envoy.running
    try:
        requests.get(envoy.url, timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("Envoy still answers after stop()")


def test_refused_wasm_is_a_startup_failure(tmp_path, upstream):
    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(b"\0asm-not-really")
    envoy = Envoy({}, free_port(), upstream.port, free_port(), wasm_path=bogus, build="wasm")

    log = envoy.start(expect_failure=True)

    assert "Unable to create Wasm" in log
    assert not envoy.running


def test_refused_native_module_is_a_startup_failure(tmp_path, upstream):
    """A file that is not a shared library where Envoy looks for
    libsesame.so: Envoy refuses to start, and says why."""
    bogus = tmp_path / "libsesame.so"
    bogus.write_bytes(b"\x7fELF-not-really")
    envoy = Envoy({}, free_port(), upstream.port, free_port(), build="native")
    envoy.native_path = bogus

    log = envoy.start(expect_failure=True)

    assert "Unable to load dynamic module" in log
    assert str(bogus) in log
    assert not envoy.running
