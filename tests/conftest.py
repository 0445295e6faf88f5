"""Shared pytest fixtures for Sésame's integration tests (see harness.py).

Session-wide: ``envoy_port``, ``upstream`` and ``provider``.  Per test:
``make_envoy``, a factory of Envoy instances stopped when the test ends.

The session ``provider`` accepts the redirect URI
``http://127.0.0.1:<envoy_port>/oauth2/callback``, so tests run their Envoy on
``envoy_port`` (one at a time).  A test that stops or reconfigures the
provider (an outage, another algorithm...) creates its own ``Provider``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Envoy, Provider, Upstream, free_port, log_dir  # noqa: E402

CALLBACK_PATH = "/oauth2/callback"


def pytest_report_header(config: pytest.Config) -> str:
    return f"sesame process logs: {log_dir()}"


@pytest.fixture(scope="session")
def envoy_port() -> int:
    """The listener port for the tests' Envoy (free at session start)."""
    return free_port()


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture(scope="session")
def provider(envoy_port: int) -> Iterator[Provider]:
    base = f"http://127.0.0.1:{envoy_port}"
    with Provider(
        redirect_uris=[base + CALLBACK_PATH],
        post_logout_redirect_uris=[base + "/"],
    ) as idp:
        yield idp


@pytest.fixture
def make_envoy(
    request: pytest.FixtureRequest, envoy_port: int, upstream: Upstream
) -> Iterator[Callable[..., Envoy]]:
    """``make_envoy(plugin_config, start=True, **Envoy_kwargs) -> Envoy``.

    Defaults: listener on ``envoy_port``, the session ``upstream`` and, when
    the wasm filter is on, the session ``provider`` as cluster ``idp``.
    With ``start=False`` the test calls ``start()`` itself (for instance
    ``start(expect_failure=True)``).
    """
    started: list[Envoy] = []

    def make(plugin_config: dict[str, Any] | str | None = None, *,
             start: bool = True, **kwargs: Any) -> Envoy:
        kwargs.setdefault("listen_port", envoy_port)
        kwargs.setdefault("upstream_port", upstream.port)
        if "provider_port" not in kwargs and kwargs.get("wasm", True):
            kwargs["provider_port"] = request.getfixturevalue("provider").port
        envoy = Envoy(plugin_config, **kwargs)
        started.append(envoy)
        if start:
            envoy.start()
        return envoy

    yield make
    for envoy in started:
        envoy.stop()
