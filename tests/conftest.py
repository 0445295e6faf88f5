"""Shared pytest fixtures for Sésame's integration tests (see harness.py).

Session-wide: ``envoy_port``, ``upstream``, ``provider`` and ``sesame_envoy``
(one Envoy with the standard Sésame configuration, shared by every test that
needs nothing special).  Per test: ``make_envoy``, a factory of Envoy
instances stopped when the test ends, and ``make_config``, the standard
configuration with changes.

The session ``provider`` accepts the redirect URIs
``http://127.0.0.1:<envoy_port>/oauth2/callback`` and
``http://127.0.0.1:<sesame_envoy_port>/oauth2/callback``: tests run their own
Envoy on ``envoy_port`` (one at a time), while ``sesame_envoy`` keeps its
own port for the whole session.  A test that stops or reconfigures the
provider (an outage, another algorithm...) creates its own ``Provider``.

ProConnect (the OpenGateLLM Playground's set-up): ``proconnect_provider``,
the local provider in ProConnect mode with issuer
``http://127.0.0.1:PORT/api/v2``, accepting the callbacks and
``/oauth2/signed_out`` of ``envoy_port`` and ``proconnect_envoy_port``;
``proconnect_envoy``, one Envoy with ``oidc_client.proconnect_config`` in
front of it for the whole session; ``make_proconnect_config`` and
``make_proconnect_envoy`` for tests that need another configuration (an
Envoy on ``envoy_port``, stopped when the test ends).

Attacks: ``hostile_provider``, an OpenID provider that misbehaves on
command (``harness.HostileProvider``), for the whole session; ``hostile``,
the same provider reset to normal behaviour before the test;
``hostile_envoy``, one Envoy with the standard configuration in front of it
(an unknown ``kid`` may refetch the keys at once:
``jwks_refetch_min_interval`` 0), for the whole session; and
``make_hostile_envoy(**changes)`` for another configuration (an Envoy on
``envoy_port``, stopped when the test ends).

``wait_provider_ready(envoy)`` waits until Sésame has fetched the provider's
discovery document and keys (gauge ``wasmcustom.sesame.provider_ready``),
instead of sleeping; ``make_envoy`` and ``sesame_envoy`` call it.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))

from harness import (  # noqa: E402
    Envoy,
    HarnessError,
    HostileProvider,
    Provider,
    Upstream,
    free_port,
    log_dir,
)
from oidc_client import proconnect_config, sesame_config  # noqa: E402

CALLBACK_PATH = "/oauth2/callback"
SIGNED_OUT_PATH = "/oauth2/signed_out"
PROCONNECT_ISSUER_PATH = "/api/v2"
READY_GAUGE = "wasmcustom.sesame.provider_ready"
FETCH_SUCCESS = "wasmcustom.sesame.provider_fetch_success"


def pytest_report_header(config: pytest.Config) -> str:
    return f"sesame process logs: {log_dir()}"


def wait_provider_ready(envoy: Envoy, timeout: float = 15.0) -> Envoy:
    """Wait until Sésame in ``envoy`` knows the provider (discovery + keys).

    Ready means the gauge ``provider_ready`` is 1 and every Wasm VM (the main
    thread's and one per worker) has completed a fetch; the second condition
    is given up after a short grace period, as only the workers matter.
    Raises HarnessError (with the log's tail) on timeout.
    """
    deadline = time.monotonic() + timeout
    vms = envoy.concurrency + 1
    gauge_since: float | None = None
    while True:
        if not envoy.running:
            raise HarnessError(f"envoy on port {envoy.port} stopped; log {envoy.log_path}")
        stats = envoy.stats("wasmcustom.sesame.")
        if stats.get(READY_GAUGE) == 1:
            gauge_since = gauge_since or time.monotonic()
            if stats.get(FETCH_SUCCESS, 0) >= vms or time.monotonic() - gauge_since > 2:
                return envoy
        else:
            gauge_since = None
        if time.monotonic() > deadline:
            tail = "\n".join(envoy.log_text().splitlines()[-30:])
            raise HarnessError(
                f"Sésame did not become ready within {timeout:g} s "
                f"(stats {stats}); log {envoy.log_path}:\n{tail}"
            )
        time.sleep(0.02)


@contextmanager
def ready(envoy: Envoy) -> Iterator[Envoy]:
    """Starts ``envoy``, waits until Sésame is ready, and stops it on exit."""
    envoy.start()
    try:
        wait_provider_ready(envoy)
        yield envoy
    finally:
        envoy.stop()


@pytest.fixture(scope="session")
def envoy_port() -> int:
    """The listener port for the tests' Envoy (free at session start)."""
    return free_port()


@pytest.fixture(scope="session")
def sesame_envoy_port() -> int:
    """The listener port of the shared ``sesame_envoy``."""
    return free_port()


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture(scope="session")
def provider(envoy_port: int, sesame_envoy_port: int) -> Iterator[Provider]:
    bases = [f"http://127.0.0.1:{p}" for p in (envoy_port, sesame_envoy_port)]
    with Provider(
        redirect_uris=[b + CALLBACK_PATH for b in bases],
        post_logout_redirect_uris=[b + path for b in bases for path in ("/", SIGNED_OUT_PATH)],
    ) as idp:
        yield idp


@pytest.fixture(scope="session")
def sesame_envoy(
    sesame_envoy_port: int, upstream: Upstream, provider: Provider
) -> Iterator[Envoy]:
    """Envoy + Sésame with the standard test configuration
    (``oidc_client.sesame_config``), for the whole session.

    Tests that share it must not depend on absolute counter values: use
    ``oidc_client.Counters`` to look at what changed.
    """
    config = sesame_config(
        provider.issuer, f"http://127.0.0.1:{sesame_envoy_port}{CALLBACK_PATH}"
    )
    envoy = Envoy(config, sesame_envoy_port, upstream.port, provider.port)
    with ready(envoy):
        yield envoy


@pytest.fixture
def make_config(provider: Provider, envoy_port: int) -> Callable[..., dict[str, Any]]:
    """``make_config(**changes) -> dict``: the standard configuration for an
    Envoy on ``envoy_port`` in front of the session provider; a change to
    ``None`` removes the key."""

    def make(**changes: Any) -> dict[str, Any]:
        return sesame_config(
            provider.issuer, f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}", **changes
        )

    return make


@pytest.fixture
def make_envoy(
    request: pytest.FixtureRequest, envoy_port: int, upstream: Upstream
) -> Iterator[Callable[..., Envoy]]:
    """``make_envoy(plugin_config, start=True, wait_ready=None, **Envoy_kwargs) -> Envoy``.

    Defaults: listener on ``envoy_port``, the session ``upstream`` and, when
    the wasm filter is on, the session ``provider`` as cluster ``idp``.
    With ``start=False`` the test calls ``start()`` itself (for instance
    ``start(expect_failure=True)``).  With the filter on, a started Envoy is
    returned once Sésame is ready (``wait_provider_ready``), unless
    ``wait_ready=False`` (a provider that is down on purpose).
    """
    started: list[Envoy] = []

    def make(plugin_config: dict[str, Any] | str | None = None, *,
             start: bool = True, wait_ready: bool | None = None,
             **kwargs: Any) -> Envoy:
        kwargs.setdefault("listen_port", envoy_port)
        kwargs.setdefault("upstream_port", upstream.port)
        if "provider_port" not in kwargs and kwargs.get("wasm", True):
            kwargs["provider_port"] = request.getfixturevalue("provider").port
        envoy = Envoy(plugin_config, **kwargs)
        started.append(envoy)
        if start:
            envoy.start()
            if wait_ready is None:
                wait_ready = envoy.wasm and envoy.provider_port is not None
            if wait_ready:
                wait_provider_ready(envoy)
        return envoy

    yield make
    for envoy in started:
        envoy.stop()


@pytest.fixture(name="wait_provider_ready")
def wait_provider_ready_fixture() -> Callable[..., Envoy]:
    """The ``wait_provider_ready(envoy, timeout=15)`` helper, as a fixture."""
    return wait_provider_ready


# --------------------------------------------------------------------------
# ProConnect (the OpenGateLLM Playground)


@pytest.fixture(scope="session")
def proconnect_envoy_port() -> int:
    """The listener port of the shared ``proconnect_envoy``."""
    return free_port()


@pytest.fixture(scope="session")
def proconnect_provider(envoy_port: int, proconnect_envoy_port: int) -> Iterator[Provider]:
    """The local provider in ProConnect mode, issuer ``.../api/v2``.

    Tests look at what it received with ``last_authorize()``,
    ``last_end_session()`` and ``test_stats()`` (compare counters before and
    after: the provider is shared by the session)."""
    bases = [f"http://127.0.0.1:{p}" for p in (envoy_port, proconnect_envoy_port)]
    with Provider(
        redirect_uris=[b + CALLBACK_PATH for b in bases],
        post_logout_redirect_uris=[b + SIGNED_OUT_PATH for b in bases],
        proconnect=True,
        issuer_path=PROCONNECT_ISSUER_PATH,
    ) as idp:
        yield idp


@pytest.fixture(scope="session")
def proconnect_envoy(
    proconnect_envoy_port: int, upstream: Upstream, proconnect_provider: Provider
) -> Iterator[Envoy]:
    """Envoy + Sésame as the Playground's ProConnect relying party
    (``oidc_client.proconnect_config``, plus ``allowed_redirect_domains:
    ["app.example.fr"]``), for the whole session."""
    config = proconnect_config(
        proconnect_provider.issuer,
        f"http://127.0.0.1:{proconnect_envoy_port}{CALLBACK_PATH}",
        allowed_redirect_domains=["app.example.fr"],
    )
    envoy = Envoy(config, proconnect_envoy_port, upstream.port, proconnect_provider.port)
    with ready(envoy):
        yield envoy


@pytest.fixture
def make_proconnect_config(
    proconnect_provider: Provider, envoy_port: int
) -> Callable[..., dict[str, Any]]:
    """``make_proconnect_config(**changes) -> dict``: the Playground's
    ProConnect configuration for an Envoy on ``envoy_port``."""

    def make(**changes: Any) -> dict[str, Any]:
        return proconnect_config(
            proconnect_provider.issuer,
            f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}",
            **changes,
        )

    return make


@pytest.fixture
def make_proconnect_envoy(
    make_envoy: Callable[..., Envoy],
    make_proconnect_config: Callable[..., dict[str, Any]],
    proconnect_provider: Provider,
) -> Callable[..., Envoy]:
    """``make_proconnect_envoy(**changes) -> Envoy``: an Envoy on
    ``envoy_port`` with the ProConnect configuration and ``changes``, in
    front of ``proconnect_provider``, ready; stopped when the test ends.
    ``start=False`` (to call ``start(expect_failure=True)``) is passed on to
    ``make_envoy``."""

    def make(*, start: bool = True, **changes: Any) -> Envoy:
        return make_envoy(make_proconnect_config(**changes), start=start,
                          provider_port=proconnect_provider.port)

    return make


# --------------------------------------------------------------------------
# A provider that misbehaves on command (the attack tests)


@pytest.fixture(scope="session")
def hostile_provider() -> Iterator[HostileProvider]:
    """The hostile provider, for the whole session (use ``hostile``)."""
    with HostileProvider() as idp:
        yield idp


@pytest.fixture
def hostile(hostile_provider: HostileProvider) -> Iterator[HostileProvider]:
    """The hostile provider, back to normal behaviour with counters at zero
    before the test, and again after it."""
    hostile_provider.reset()
    yield hostile_provider
    hostile_provider.reset()


@pytest.fixture(scope="session")
def hostile_envoy_port() -> int:
    """The listener port of the shared ``hostile_envoy``."""
    return free_port()


def hostile_config(issuer: str, port: int, **changes: Any) -> dict[str, Any]:
    """The standard configuration for an Envoy on ``port`` in front of the
    hostile provider: keys refetched at once for an unknown ``kid``."""
    changes.setdefault("jwks_refetch_min_interval", 0)
    return sesame_config(issuer, f"http://127.0.0.1:{port}{CALLBACK_PATH}", **changes)


@pytest.fixture(scope="session")
def hostile_envoy(
    hostile_envoy_port: int, upstream: Upstream, hostile_provider: HostileProvider
) -> Iterator[Envoy]:
    """Envoy + Sésame with the standard configuration in front of the
    hostile provider, for the whole session (look at counters with
    ``oidc_client.Counters``)."""
    envoy = Envoy(hostile_config(hostile_provider.issuer, hostile_envoy_port),
                  hostile_envoy_port, upstream.port, hostile_provider.port)
    with ready(envoy):
        yield envoy


@pytest.fixture
def make_hostile_envoy(
    make_envoy: Callable[..., Envoy],
    hostile_provider: HostileProvider,
    envoy_port: int,
) -> Callable[..., Envoy]:
    """``make_hostile_envoy(**changes) -> Envoy``: an Envoy on ``envoy_port``
    with the standard configuration and ``changes``, in front of the hostile
    provider, ready; stopped when the test ends."""

    def make(**changes: Any) -> Envoy:
        return make_envoy(hostile_config(hostile_provider.issuer, envoy_port, **changes),
                          provider_port=hostile_provider.port)

    return make
