"""Sessions that stay fresh: the refresh token is used before the access token
expires, once per session even when many requests (on several Envoy workers)
need it at the same moment, and a refused refresh ends the session.

The provider here issues a refresh token with every sign-in and rotates it at
each use (``--refresh-tokens``): a refresh token used twice is refused and the
whole grant revoked, which signs the person out. That is the race a filter
must not lose. Access tokens live 4 s and Sésame refreshes 2 s before expiry,
so a session is due for a refresh 2 s after the sign-in.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

from conftest import CALLBACK_PATH, wait_provider_ready
from harness import Envoy, Provider
from oidc_client import (
    COOKIE,
    HTML,
    JSON,
    XHR,
    Counters,
    describe,
    is_clearing,
    logged_in,
    raw_get,
    sesame_config,
    set_cookie,
    unique_path,
)

ACCESS_TOKEN_TTL = 4
REFRESH_MARGIN = 2


@pytest.fixture(scope="module")
def refresh_provider(envoy_port: int) -> Iterator[Provider]:
    with Provider(
        redirect_uris=[f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}"],
        extra_args=["--refresh-tokens", "--access-token-ttl", str(ACCESS_TOKEN_TTL)],
    ) as idp:
        yield idp


@pytest.fixture
def refresh_envoy(make_envoy: Callable[..., Envoy], envoy_port: int,
                  refresh_provider: Provider) -> Callable[..., Envoy]:
    """``refresh_envoy(concurrency=1, **config_changes)``: Envoy + Sésame
    refreshing sessions at the refresh provider."""

    def make(concurrency: int = 1, **changes: Any) -> Envoy:
        config = sesame_config(
            refresh_provider.issuer,
            f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}",
            refresh_margin=REFRESH_MARGIN,
            pass_access_token=True,
            **changes,
        )
        return make_envoy(config, provider_port=refresh_provider.port, concurrency=concurrency)

    return make


def stats_delta(provider: Provider, before: dict[str, int]) -> dict[str, int]:
    after = provider.test_stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def access_token_seen(envoy: Envoy, cookie: str) -> tuple[str, Any]:
    """GET a page with ``cookie``; the access token the upstream received,
    and the answer (for its Set-Cookie)."""
    r = raw_get(envoy.url, unique_path("/fresh"), f"{COOKIE}={cookie}", JSON)
    assert r.status_code == 200, describe(r)
    return r.json()["headers"]["x-auth-request-access-token"], r


def wait_until_due(signed_in_at: float) -> None:
    """Sleeps until the session's access token is within the refresh margin
    (a wall-clock matter: the provider's token lifetime)."""
    due = signed_in_at + (ACCESS_TOKEN_TTL - REFRESH_MARGIN) + 0.5
    time.sleep(max(0.0, due - time.time()))


def test_session_is_refreshed_before_the_access_token_expires(refresh_envoy, refresh_provider):
    envoy = refresh_envoy()
    b = logged_in(envoy.url, "alice")
    signed_in_at = time.time()
    cookie = b.cookies[COOKIE]
    first, r = access_token_seen(envoy, cookie)
    assert set_cookie(r, COOKIE) is None, "refreshed although the access token is fresh"
    # The application's own Cache-Control, untouched.
    assert r.headers["Cache-Control"] == "no-store", r.headers

    wait_until_due(signed_in_at)
    stats = refresh_provider.test_stats()
    counters = Counters(envoy)
    second, r = access_token_seen(envoy, cookie)

    assert second != first, "the upstream still got the old access token"
    new_cookie = set_cookie(r, COOKIE)
    assert new_cookie and not is_clearing(new_cookie), r.headers
    # The refreshed cookie rides on the application's answer: no shared
    # cache in front may keep that answer and hand the cookie to others.
    assert r.headers["Cache-Control"] == "private, no-store", r.headers
    assert stats_delta(refresh_provider, stats) == {"refresh_grants": 1}
    assert counters.delta() == {"session_refresh_success": 1}

    # The new cookie carries the new tokens: no refresh until it is due again.
    value = new_cookie.split(";")[0].split("=", 1)[1]
    third, r = access_token_seen(envoy, value)
    assert third == second and set_cookie(r, COOKIE) is None
    assert stats_delta(refresh_provider, stats) == {"refresh_grants": 1}


def test_concurrent_requests_on_two_workers_refresh_once(refresh_envoy, refresh_provider):
    """Twenty requests of one due session at once, on an Envoy with two
    workers: one refresh at the provider, every request served, and the
    session keeps working (a second refresh with the rotated token would
    have revoked it)."""
    envoy = refresh_envoy(concurrency=2)
    b = logged_in(envoy.url, "alice")
    signed_in_at = time.time()
    cookie = b.cookies[COOKIE]
    wait_until_due(signed_in_at)
    stats = refresh_provider.test_stats()
    counters = Counters(envoy)

    def one(_: int) -> tuple[int, str | None]:
        r = raw_get(envoy.url, unique_path("/burst"), f"{COOKIE}={cookie}", JSON)
        return r.status_code, set_cookie(r, COOKIE)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))

    assert [status for status, _ in results] == [200] * 20, results
    assert stats_delta(refresh_provider, stats) == {"refresh_grants": 1}
    delta = counters.delta()
    assert delta.get("session_refresh_success") == 1, delta
    assert not any(k.startswith("session_refresh_failure") for k in delta), delta

    # Late requests with the old cookie get the refreshed session.
    fresh = [c for _, c in results if c]
    assert fresh, "no request carried the refreshed session back"
    late, r = access_token_seen(envoy, cookie)
    assert set_cookie(r, COOKIE), "the late request did not get the refreshed session"
    assert stats_delta(refresh_provider, stats) == {"refresh_grants": 1}

    # The grant is intact: the next refresh works too.
    value = set_cookie(r, COOKIE).split(";")[0].split("=", 1)[1]
    refreshed_at = time.time()
    wait_until_due(refreshed_at)
    newer, r = access_token_seen(envoy, value)
    assert newer != late
    assert stats_delta(refresh_provider, stats) == {"refresh_grants": 2}


@pytest.mark.parametrize("kind", ["navigation", "xhr"])
def test_refused_refresh_ends_the_session(refresh_envoy, refresh_provider, kind):
    """The provider no longer knows the grant (restarted: its grants were in
    memory): the refresh is refused, the session cookie cleared, and the
    person sent to sign in again, back to the same page (a script gets 401)."""
    envoy = refresh_envoy()
    b = logged_in(envoy.url, "alice")
    signed_in_at = time.time()
    cookie = b.cookies[COOKIE]
    refresh_provider.stop()
    refresh_provider.start()
    wait_provider_ready(envoy)
    wait_until_due(signed_in_at)
    stats = refresh_provider.test_stats()
    counters = Counters(envoy)
    path = unique_path("/page")

    r = raw_get(envoy.url, path, f"{COOKIE}={cookie}", HTML if kind == "navigation" else XHR)

    if kind == "navigation":
        assert r.status_code == 302, describe(r)
        assert r.headers["Location"].startswith(refresh_provider.issuer + "/auth?"), r.headers
    else:
        assert r.status_code == 401, describe(r)
    assert is_clearing(set_cookie(r, COOKIE)), r.headers
    assert stats_delta(refresh_provider, stats) == {"refresh_refused": 1}
    delta = counters.delta()
    assert delta.get("session_refresh_failure.refresh_refused") == 1, delta
