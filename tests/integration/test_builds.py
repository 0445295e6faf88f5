"""The two builds of Sésame are one filter: a session sealed by the wasm
module opens in the native one and the other way round, with the same
identity headers and counters; and the native module loads with the ABI
version of this Envoy.

Runs in both suites: the build under test signs in, the other one reads
the cookie, and the reverse.
"""

from __future__ import annotations

import harness
from conftest import CALLBACK_PATH, ready
from harness import Envoy
from oidc_client import (
    COOKIE,
    JSON,
    USERS,
    Counters,
    describe,
    logged_in,
    raw_get,
    sesame_config,
    unique_path,
)

OTHER = {"wasm": "native", "native": "wasm"}


def envoy_of(build: str, port: int, upstream, provider) -> Envoy:
    config = sesame_config(provider.issuer, f"http://127.0.0.1:{port}{CALLBACK_PATH}")
    return Envoy(config, port, upstream.port, provider.port, build=build)


def opens_in(envoy: Envoy, cookie: str, who: str) -> None:
    counters = Counters(envoy, ticked=True)
    path = unique_path("/other-build")
    r = raw_get(envoy.url, path, f"{COOKIE}={cookie}", JSON)
    assert r.status_code == 200, describe(r)
    seen = r.json()["headers"]
    assert seen["x-forwarded-email"] == USERS[who]["email"]
    assert seen["x-forwarded-user"] == USERS[who]["sub"]
    assert COOKIE not in seen.get("cookie", ""), "Sésame's cookie reached the upstream"
    assert counters.delta().get("requests_passed") == 1, counters.delta()


def test_a_session_opens_in_the_other_build(sesame_envoy, envoy_port, upstream, provider):
    this = sesame_envoy.build
    assert this == harness.BUILD
    with ready(envoy_of(OTHER[this], envoy_port, upstream, provider)) as other:
        assert other.build != this
        alice = logged_in(sesame_envoy.url, "alice").cookies[COOKIE]
        opens_in(other, alice, "alice")
        bob = logged_in(other.url, "bob").cookies[COOKIE]
        opens_in(sesame_envoy, bob, "bob")


def test_the_native_module_has_this_envoys_abi(sesame_envoy, envoy_port, upstream, provider):
    envoy = sesame_envoy
    if envoy.build != "native":
        envoy = envoy_of("native", envoy_port, upstream, provider)
        envoy.start()
    try:
        log = envoy.log_text()
        assert "Dynamic module ABI version v0.2.0 matched." in log, envoy.log_path
        assert "is deprecated" not in log
    finally:
        if envoy is not sesame_envoy:
            envoy.stop()
