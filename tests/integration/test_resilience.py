"""The provider down: at Envoy's start-up, and in the middle of a sign-in.

Each test runs its own provider (on its own port, with a keys file kept
across restarts) so that it can stop and start it; Sésame retries at most
every ``provider_retry_max`` = 1 s.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import Provider
from oidc_client import (
    COOKIE,
    HTML,
    JSON,
    USERS,
    XHR,
    Counters,
    assert_not_upstream,
    authorize,
    browser,
    deliver_callback,
    describe,
    gauge,
    logged_in,
    login,
    login_location,
    raw_get,
    sesame_config,
    session_cookie_sets,
    unique_path,
    upstream_view,
)


class SlowProxy:
    """An HTTP proxy to the provider (for Envoy's ``idp`` cluster) that makes
    the token endpoint answer ``delay`` seconds late."""

    def __init__(self, target_port: int, delay: float) -> None:
        target = f"http://127.0.0.1:{target_port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.path.startswith("/token"):
                    time.sleep(delay)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                req = urllib.request.Request(target + self.path, data=body,
                                             headers=headers, method=self.command)
                try:
                    resp = opener.open(req, timeout=10)
                except urllib.error.HTTPError as e:
                    resp = e
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SlowProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def own_provider(envoy_port):
    """A provider for ``envoy_port``'s callback, created but not started."""
    idp = Provider(redirect_uris=[f"http://127.0.0.1:{envoy_port}/oauth2/callback"])
    yield idp
    idp.stop()


def wait_for_status(url: str, status: int, timeout: float = 10.0):
    """GET ``url`` as a page navigation until it answers ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        r = browser().get(url, headers=HTML, allow_redirects=False, timeout=5)
        if r.status_code == status:
            return r
        assert time.monotonic() < deadline, f"still {describe(r)}"
        time.sleep(0.1)


def wait_for_gauge(envoy, name: str, value: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while gauge(envoy, name) != value:
        assert time.monotonic() < deadline, f"{name} is {gauge(envoy, name)}, not {value}"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_provider_down_at_start_up_then_back(
        make_envoy, envoy_port, own_provider, upstream, wait_provider_ready, workers):
    """Envoy starts while the provider is down: page navigations get a 503
    page with Retry-After (scripts still get their 401); once the provider
    is up, Sésame finds it by itself within seconds and a full sign-in
    works, without restarting Envoy."""
    config = sesame_config(own_provider.issuer,
                           f"http://127.0.0.1:{envoy_port}/oauth2/callback")
    envoy = make_envoy(config, provider_port=own_provider.port, wait_ready=False,
                       concurrency=workers)
    path = unique_path("/down")
    counters = Counters(envoy)

    r = browser().get(envoy.url + path, headers=HTML, allow_redirects=False, timeout=5)
    api = browser().get(envoy.url + path, headers=XHR, allow_redirects=False, timeout=5)

    assert r.status_code == 503, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert int(r.headers["Retry-After"]) > 0
    assert "Location" not in r.headers
    assert api.status_code == 401, describe(api)
    delta = counters.delta()
    assert delta["provider_unavailable"] == 1
    assert delta["requests_unauthenticated"] == 1
    assert gauge(envoy, "provider_ready") == 0
    deadline = time.monotonic() + 5
    while counters.read().get("provider_fetch_failure", 0) < 1:
        assert time.monotonic() < deadline, "no failed fetch counted"
        time.sleep(0.05)
    assert gauge(envoy, "provider_consecutive_failures") >= 1
    assert_not_upstream(upstream, path)

    own_provider.start()
    started = time.monotonic()
    wait_for_status(envoy.url + path, 302, timeout=10)
    recovered_after = time.monotonic() - started

    wait_provider_ready(envoy)
    assert recovered_after < 5, f"Sésame took {recovered_after:.1f} s to find the provider"
    print(f"\nrecovery with {workers} worker(s): sign-ins work again "
          f"{recovered_after:.2f} s after the provider's return (provider_retry_max 1)")
    assert gauge(envoy, "provider_ready") == 1
    assert counters.read()["provider_fetch_success"] >= 1
    b = logged_in(envoy.url, "alice", path)
    assert upstream_view(b, envoy.url, path)["headers"]["x-forwarded-email"] == \
        USERS["alice"]["email"]


def test_provider_down_after_sign_in_and_during_a_sign_in(
        make_envoy, envoy_port, own_provider, upstream, wait_provider_ready):
    """With the provider stopped: an existing session keeps working (nothing
    to ask the provider); a sign-in whose callback arrives while the provider
    is down gets a 503 page, no session and no 500. That one failed call does
    not decide that the provider is down (only the discovery and key fetches
    do): new navigations still go to the provider, and the gauge stays 1.
    Once the provider is back, sign-in works again."""
    own_provider.start()
    config = sesame_config(own_provider.issuer,
                           f"http://127.0.0.1:{envoy_port}/oauth2/callback")
    envoy = make_envoy(config, provider_port=own_provider.port)
    alice = logged_in(envoy.url, "alice")
    bob = browser()
    bob_callback = authorize(login_location(bob, envoy.url, "/bob"), "bob")

    own_provider.stop()
    counters = Counters(envoy, ticked=True)

    # The session needs nothing from the provider.
    for i in range(3):
        view = upstream_view(alice, envoy.url, f"/still-here/{i}")
        assert view["headers"]["x-forwarded-email"] == USERS["alice"]["email"]
    assert counters.delta() == {"requests_passed": 3}

    # The code exchange fails: 503 page, not a 500, no session.
    r = deliver_callback(bob, bob_callback)
    assert r.status_code == 503, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert "Retry-After" in r.headers
    assert not session_cookie_sets(r)
    assert not bob.cookies.get(COOKIE)
    assert counters.delta()["provider_unavailable"] == 1

    # One request's call does not mark the provider down: a new navigation
    # still starts a sign-in, and the gauge has not moved.
    path = unique_path("/while-down")
    nav = browser().get(envoy.url + path, headers=HTML, allow_redirects=False, timeout=5)
    assert nav.status_code == 302, describe(nav)
    time.sleep(Counters.TICK_S)
    assert gauge(envoy, "provider_ready") == 1
    assert upstream_view(alice, envoy.url, "/still-fine")["headers"]["x-forwarded-user"] \
        == USERS["alice"]["sub"]
    assert_not_upstream(upstream, path)

    own_provider.start()
    bob = logged_in(envoy.url, "bob", "/bob")
    assert raw_get(envoy.url, "/bob", f"{COOKIE}={bob.cookies[COOKIE]}", JSON).json()[
        "headers"]["x-forwarded-user"] == USERS["bob"]["sub"]


@pytest.mark.parametrize("refetch_interval, works", [(0, True), (3600, False)],
                         ids=["refetch-allowed", "refetch-rate-limited"])
def test_provider_restarted_with_new_signing_keys(
        make_envoy, envoy_port, own_provider, upstream, tmp_path, refetch_interval, works):
    """The provider comes back with new signing keys (a key rotation):
    Sésame's copy of the JWKS does not know the new ``kid``, so it fetches
    the JWKS again at the next sign-in and accepts the token — unless a
    refetch was done less than ``jwks_refetch_min_interval`` ago, in which
    case the sign-in fails cleanly (401 page, ``id_token_invalid``)."""
    own_provider.start()
    config = sesame_config(own_provider.issuer,
                           f"http://127.0.0.1:{envoy_port}/oauth2/callback",
                           jwks_refetch_min_interval=refetch_interval)
    envoy = make_envoy(config, provider_port=own_provider.port)
    logged_in(envoy.url, "alice")
    own_provider.stop()
    rotated = Provider(redirect_uris=own_provider.redirect_uris, port=own_provider.port,
                       keys_file=tmp_path / "rotated-keys.json")
    rotated.start()
    try:
        path = unique_path("/rotated")
        counters = Counters(envoy)

        b = browser()
        r = deliver_callback(b, authorize(login_location(b, envoy.url, path), "bob"))

        if works:
            assert r.status_code == 302 and r.headers["Location"] == path, describe(r)
            assert counters.delta() == {"login_started": 1, "login_success": 1}
            assert upstream_view(b, envoy.url, path)["headers"]["x-forwarded-user"] == \
                USERS["bob"]["sub"]
        else:
            assert r.status_code == 401, describe(r)
            assert not session_cookie_sets(r)
            assert counters.delta() == {"login_started": 1,
                                        "login_failure.id_token_invalid": 1}
            assert_not_upstream(upstream, path)
    finally:
        rotated.stop()


def test_token_endpoint_too_slow_gives_503_after_provider_timeout(
        make_envoy, make_config, provider, upstream):
    """The token endpoint does not answer within ``provider_timeout_ms``
    (500 ms; it takes 3 s): the callback gets the 503 page quickly instead
    of hanging, with no session."""
    with SlowProxy(provider.port, delay=3.0) as proxy:
        envoy = make_envoy(make_config(provider_timeout_ms=500), provider_port=proxy.port)
        b = browser()
        callback = authorize(login_location(b, envoy.url, "/slow"), "alice")
        counters = Counters(envoy)

        started = time.monotonic()
        r = deliver_callback(b, callback)
        took = time.monotonic() - started

    assert r.status_code == 503, describe(r)
    assert "Retry-After" in r.headers
    assert not session_cookie_sets(r)
    assert 0.4 <= took < 2.5, f"the callback took {took:.1f} s"
    assert counters.delta()["provider_unavailable"] == 1


def test_several_workers_share_nothing_but_the_cookie_secret(make_envoy, make_config):
    """With 4 worker threads (one Wasm VM each, each with its own copy of the
    provider's metadata), sign-ins started on one connection and finished on
    another all succeed."""
    envoy = make_envoy(make_config(), concurrency=4)
    counters = Counters(envoy, ticked=True)
    for i in range(8):
        b = browser()
        b.headers["Connection"] = "close"  # a new connection for each request
        r = login(b, envoy.url, "bob", f"/worker/{i}")
        assert r.status_code == 302, describe(r)
        assert upstream_view(b, envoy.url, f"/worker/{i}")["headers"]["x-forwarded-user"] \
            == USERS["bob"]["sub"]
    assert counters.delta() == {"login_started": 8, "login_success": 8, "requests_passed": 8}


def test_workers_share_one_copy_of_the_provider(make_envoy, envoy_port, own_provider):
    """Four workers, one wasm VM each: the discovery document and keys are
    fetched by one of them (the holder of a lease in Envoy's shared data)
    and read by all, at start-up and at each refresh, instead of four
    fetches each time. Sign-ins on every worker then work."""
    own_provider.start()
    config = sesame_config(own_provider.issuer,
                           f"http://127.0.0.1:{envoy_port}/oauth2/callback",
                           provider_refresh_interval=10)
    envoy = make_envoy(config, provider_port=own_provider.port, concurrency=4)
    at_start = own_provider.test_stats()
    # Workers that start at the same instant may each fetch once before the
    # first copy is shared; after that, one fetch per refresh.
    assert at_start["discovery_requests"] <= 2, at_start
    assert at_start["jwks_requests"] <= 2, at_start

    time.sleep(11)  # one refresh interval (a wall-clock matter)

    after = own_provider.test_stats()
    refreshes = after["discovery_requests"] - at_start["discovery_requests"]
    assert 1 <= refreshes <= 2, (at_start, after)
    assert after["jwks_requests"] - at_start["jwks_requests"] == refreshes, (at_start, after)
    for i in range(4):
        b = browser()
        b.headers["Connection"] = "close"  # a new connection: any worker
        r = login(b, envoy.url, "alice", f"/shared/{i}")
        assert r.status_code == 302, describe(r)


def test_no_503_once_another_worker_has_shared_the_provider(make_envoy, envoy_port, hostile):
    """Right after start-up, with four workers: until the provider's
    documents are fetched, navigations get 503; from the first one signed
    in on (the documents are then in shared data), none does, on any
    worker, even one that looked at shared data a moment before the copy
    was there (it looks again at once rather than at its next tick).

    The provider answers its discovery document 400 ms late, so that the
    requests sent meanwhile reach every worker before the copy exists."""
    hostile.control(discovery_delay_ms=400)
    config = sesame_config(hostile.issuer, f"http://127.0.0.1:{envoy_port}/oauth2/callback")
    envoy = make_envoy(config, provider_port=hostile.port, concurrency=4, wait_ready=False)
    statuses: list[int] = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        # A new connection for each request: any worker.
        r = raw_get(envoy.url, "/start-up", headers=HTML)
        statuses.append(r.status_code)
    assert set(statuses) <= {302, 503}, statuses
    assert 302 in statuses, f"never ready: {statuses}"
    first = statuses.index(302)
    late = statuses[first:].count(503)
    assert late == 0, f"{late} of the {len(statuses) - first} requests after the first sign-in got 503"
