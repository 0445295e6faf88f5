"""Sésame's own endpoints under ``/oauth2``: ``auth`` (for auth_request-style
checks by another server), ``userinfo``, ``sign_out``; and WebSockets
through Sésame.  All on the shared ``sesame_envoy``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from conftest import CALLBACK_PATH, SIGNED_OUT_PATH
from harness import Provider
from oidc_client import (
    COOKIE,
    HTML,
    JSON,
    USERS,
    XHR,
    Counters,
    assert_not_upstream,
    browser,
    cookie_attributes,
    describe,
    is_clearing,
    jwt_claims,
    logged_in,
    provider_logout,
    query,
    raw_get,
    set_cookie,
    set_cookies,
    unique_path,
    upstream_mark,
    upstream_paths,
    authorize,
    deliver_callback,
    login_location,
    sesame_config,
    websocket,
)


@pytest.fixture(scope="module")
def alice_cookie(sesame_envoy) -> str:
    """``_sesame=<value>`` of a session of alice on the shared Envoy."""
    return f"{COOKIE}={logged_in(sesame_envoy.url, 'alice').cookies[COOKIE]}"


# --------------------------------------------------------------------------
# /oauth2/auth


def test_auth_endpoint_answers_202_with_identity_for_a_session(sesame_envoy, alice_cookie):
    """``/oauth2/auth`` with the session cookie (a server-to-server call):
    202 with the identity in X-Auth-Request-* response headers."""
    counters = Counters(sesame_envoy, ticked=True)

    r = raw_get(sesame_envoy.url, "/oauth2/auth", alice_cookie)

    assert r.status_code == 202, describe(r)
    assert r.headers["X-Auth-Request-Email"] == USERS["alice"]["email"]
    assert r.headers["X-Auth-Request-User"] == USERS["alice"]["sub"]
    assert r.headers["X-Forwarded-Siret"] == USERS["alice"]["siret"]
    assert counters.delta() == {"endpoint_authorized": 1}


@pytest.mark.parametrize("cookie", [None, f"{COOKIE}=garbage", f"{COOKIE}="],
                         ids=["no-cookie", "bad-cookie", "empty-cookie"])
def test_auth_endpoint_answers_401_without_a_valid_session(sesame_envoy, cookie):
    """``/oauth2/auth`` without a (valid) session: 401, never a redirect,
    even for a page navigation."""
    counters = Counters(sesame_envoy)

    r = raw_get(sesame_envoy.url, "/oauth2/auth", cookie, HTML)

    assert r.status_code == 401, describe(r)
    assert "X-Auth-Request-Email" not in r.headers
    assert "Location" not in r.headers
    assert counters.delta() == {"endpoint_unauthorized": 1}


def test_auth_endpoint_is_answered_by_sesame_not_the_upstream(
        sesame_envoy, upstream, alice_cookie):
    """The endpoints never reach the upstream."""
    mark = upstream_mark(upstream)
    raw_get(sesame_envoy.url, "/oauth2/auth", alice_cookie)
    raw_get(sesame_envoy.url, "/oauth2/userinfo", alice_cookie)
    assert_not_upstream(upstream, "/oauth2/auth", "/oauth2/userinfo", since=mark)


# --------------------------------------------------------------------------
# /oauth2/userinfo


def test_userinfo_endpoint_describes_the_session(sesame_envoy, alice_cookie):
    """``/oauth2/userinfo``: 200 JSON with oauth2-proxy's field names."""
    r = raw_get(sesame_envoy.url, "/oauth2/userinfo", alice_cookie, JSON)

    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].startswith("application/json")
    info = r.json()
    assert info["user"] == USERS["alice"]["sub"]
    assert info["email"] == USERS["alice"]["email"]
    assert info["name"] == "Alice Martin"


def test_userinfo_endpoint_answers_401_json_without_a_session(sesame_envoy):
    r = raw_get(sesame_envoy.url, "/oauth2/userinfo", f"{COOKIE}=garbage", HTML)

    assert r.status_code == 401, describe(r)
    assert r.json()["error"] == "unauthenticated"


def test_unknown_endpoint_is_a_404_page(sesame_envoy, upstream, alice_cookie):
    """An unknown path under /oauth2/ is answered 404 by Sésame."""
    mark = upstream_mark(upstream)
    r = raw_get(sesame_envoy.url, "/oauth2/nothing-here", alice_cookie, HTML)

    assert r.status_code == 404, describe(r)
    assert_not_upstream(upstream, "/oauth2/nothing-here", since=mark)


# --------------------------------------------------------------------------
# /oauth2/sign_out


def test_sign_out_clears_the_session_and_returns_to_rd(sesame_envoy, provider, upstream):
    """``/oauth2/sign_out?rd=/x``: the session cookie cleared, the browser sent
    through the provider's logout (``id_token_hint``, a 43-character
    ``state``, the registered ``post_logout_redirect_uri``), and, once the
    state is checked on the way back, on to /x; afterwards the browser is
    signed out (navigation -> provider, API 401)."""
    b = logged_in(sesame_envoy.url, "alice")
    assert b.get(sesame_envoy.url + "/in", headers=JSON, timeout=10).status_code == 200
    path = unique_path("/after-sign-out")
    counters = Counters(sesame_envoy)
    revocations = provider.test_stats()["revocation_requests"]

    r = b.get(sesame_envoy.url + "/oauth2/sign_out?rd=/bye%3Fsee=you",
              headers=HTML, allow_redirects=False, timeout=10)

    assert r.status_code == 302, describe(r)
    end_session = r.headers["Location"]
    assert end_session.startswith(provider.issuer + "/session/end?"), end_session
    params = query(end_session)
    assert params["post_logout_redirect_uri"] == sesame_envoy.url + "/oauth2/signed_out"
    assert len(params["state"]) == 43
    assert jwt_claims(params["id_token_hint"])["sub"] == "alice-7f3a"
    cleared = set_cookie(r, COOKIE)
    assert is_clearing(cleared), set_cookies(r)
    assert cookie_attributes(cleared)[2]["path"] == "/"
    assert not b.cookies.get(COOKIE)
    # The session's access token was revoked at the provider first (RFC 7009).
    assert counters.delta() == {"sign_out": 1, "revocation_success": 1}
    assert provider.test_stats()["revocation_requests"] == revocations + 1
    # One log line says who signed out, and where the browser goes.
    line = ('signed out: sub="alice-7f3a", tokens revoked at the provider, '
            "on to the provider's logout")
    deadline = time.monotonic() + 5
    while line not in sesame_envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in sesame_envoy.log_text()
    # The same counter in Envoy's Prometheus output, as the reference names it.
    with urllib.request.urlopen(sesame_envoy.admin_url + "/stats/prometheus") as resp:
        prometheus = resp.read().decode()
    # Envoy strips the wasm build's namespace in Prometheus' names; a dynamic
    # module's namespace is kept (envoy_ prefix, as Envoy's own stats).
    name = "sesame_sign_out" if sesame_envoy.build == "wasm" else "envoy_wasmcustom_sesame_sign_out"
    assert re.search(rf"^{name}\{{\}} [1-9]", prometheus, re.M), prometheus[-2000:]

    back = provider_logout(end_session)
    assert back.startswith(sesame_envoy.url + "/oauth2/signed_out?"), back
    assert query(back)["state"] == params["state"]
    r = b.get(back, headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)
    assert r.headers["Location"] == "/bye?see=you"

    # The same return replayed (the sign-out cookie is gone): no redirect.
    again = b.get(back, headers=HTML, allow_redirects=False, timeout=10)
    assert again.status_code == 400, describe(again)
    assert "Location" not in again.headers

    api = b.get(sesame_envoy.url + path, headers=XHR, allow_redirects=False, timeout=10)
    page = b.get(sesame_envoy.url + path, headers=HTML, allow_redirects=False, timeout=10)
    assert api.status_code == 401, describe(api)
    assert page.status_code == 302 and "/auth?" in page.headers["Location"], describe(page)
    assert_not_upstream(upstream, path)


@pytest.mark.parametrize("rd", [
    "//evil.example",
    "//evil.example/path",
    "https://evil.example/",
    "/\\evil.example",
    "/%2F%2Fevil.example",
    "javascript:alert(1)",
    "evil.example",
])
def test_sign_out_never_redirects_to_another_site(sesame_envoy, rd):
    """``rd`` that is not a local path (or could be read as another host)
    is replaced by ``/``."""
    r = browser().get(sesame_envoy.url + "/oauth2/sign_out?" + urlencode({"rd": rd}),
                      allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)
    assert r.headers["Location"] == "/", rd


def test_sign_out_without_rd_goes_home(sesame_envoy):
    r = browser().get(sesame_envoy.url + "/oauth2/sign_out", allow_redirects=False,
                      timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == "/", describe(r)


def provider_page(pb, url: str) -> tuple[str, str]:
    """Follow the provider's redirects from ``url`` with its own jar ``pb``:
    (the last URL, what happened there: "form" for its login form, or
    "back" for a redirect out of the provider, to Sésame's callback)."""
    origin = url.split("/", 3)[:3]
    for _ in range(10):
        r = pb.get(url, allow_redirects=False, timeout=10)
        if r.status_code in (302, 303):
            url = r.headers["Location"] if "://" in r.headers["Location"] else "/".join(origin) + r.headers["Location"]
            if url.split("/", 3)[:3] != origin:
                return url, "back"
            continue
        assert r.status_code == 200, describe(r)
        return url, "form" if 'name="user"' in r.text else "page"
    raise AssertionError("too many redirects at the provider")


def test_signing_out_as_the_demo_does_ends_the_provider_session_on_the_signed_out_page(
    make_envoy, envoy_port
):
    """The demo's provider logs out without a confirmation page (as
    ProConnect does) and the demo application's link ends on Sésame's
    "signed out" page; the next sign-in asks who is signing in."""
    base = f"http://127.0.0.1:{envoy_port}"
    with Provider(
        redirect_uris=[base + CALLBACK_PATH],
        post_logout_redirect_uris=[base + SIGNED_OUT_PATH],
        logout_confirmation=False,
    ) as idp:
        envoy = make_envoy(sesame_config(idp.issuer, base + CALLBACK_PATH), provider_port=idp.port)
        pb, b = browser(), browser()
        r = deliver_callback(b, authorize(login_location(b, envoy.url), "alice", provider_browser=pb))
        assert r.status_code == 302, describe(r)
        # Control: while the provider's session lasts, a sign-in comes
        # straight back without asking.
        _, seen = provider_page(pb, login_location(browser(), envoy.url))
        assert seen == "back"

        r = b.get(envoy.url + "/oauth2/sign_out?rd=/oauth2/signed_out", allow_redirects=False,
                  timeout=10)
        assert r.status_code == 302, describe(r)
        back, seen = provider_page(pb, r.headers["Location"])
        assert seen == "back" and back.startswith(envoy.url + SIGNED_OUT_PATH + "?"), back
        r = b.get(back, allow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["Location"] == SIGNED_OUT_PATH, describe(r)
        page = b.get(envoy.url + SIGNED_OUT_PATH, headers=HTML, allow_redirects=False, timeout=10)
        assert page.status_code == 200, describe(page)
        assert "déconnecté" in page.text or "signed out" in page.text
        assert "/oauth2/sign_in" in page.text, "a button to sign in again"
        # The provider's session is over: the next sign-in asks who.
        _, seen = provider_page(pb, login_location(browser(), envoy.url))
        assert seen == "form"


def test_silent_sign_in_both_ways(make_envoy, make_config):
    """``silent_sign_in``: a navigation first asks the provider with
    ``prompt=none``. Someone the provider does not know yet comes back with
    ``login_required`` and goes on to an interactive sign-in at once (no
    error page, no loop); someone signed in at the provider comes back
    signed in without seeing a page."""
    envoy = make_envoy(make_config(silent_sign_in=True))
    pb = browser()  # the provider's own jar: its session

    b = browser()
    r = b.get(envoy.url + "/silent/1", headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)
    assert query(r.headers["Location"])["prompt"] == "none"
    back, seen = provider_page(pb, r.headers["Location"])
    assert seen == "back" and query(back)["error"] == "login_required", back
    r = b.get(back, headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)
    interactive = r.headers["Location"]
    assert "prompt" not in query(interactive), interactive
    r = deliver_callback(b, authorize(interactive, "alice", provider_browser=pb))
    assert r.status_code == 302 and r.headers["Location"] == "/silent/1", describe(r)

    b2 = browser()
    r = b2.get(envoy.url + "/silent/2", headers=HTML, allow_redirects=False, timeout=10)
    back, seen = provider_page(pb, r.headers["Location"])
    assert seen == "back" and "code" in query(back), back
    r = b2.get(back, headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == "/silent/2", describe(r)
    r = b2.get(envoy.url + "/silent/2", headers=JSON, allow_redirects=False, timeout=10)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-email"] == USERS["alice"]["email"]


# --------------------------------------------------------------------------
# WebSocket


def test_websocket_without_session_is_refused_before_the_upstream(sesame_envoy, upstream):
    """A WebSocket upgrade without a session gets 401 (never a redirect:
    a script cannot follow it), and the upstream never sees it."""
    path = unique_path("/ws")
    counters = Counters(sesame_envoy)

    result = websocket(sesame_envoy.port, path, {"Accept": "text/html"}, ["chat.v2"])

    assert result.status == 401, result
    assert b"unauthenticated" in result.body
    assert counters.delta() == {"requests_unauthenticated": 1}
    assert_not_upstream(upstream, path)


def test_websocket_with_session_reaches_the_upstream_with_identity(
        sesame_envoy, upstream, alice_cookie):
    """With the session cookie the upgrade goes through: 101 from the
    upstream with the chosen subprotocol, and the upstream saw the upgrade
    request with the identity headers (spoofed ones removed) and the
    original Sec-WebSocket-Protocol."""
    path = unique_path("/ws")
    counters = Counters(sesame_envoy, ticked=True)

    result = websocket(
        sesame_envoy.port, path + "?room=1",
        {"Cookie": alice_cookie, "X-Forwarded-Email": "boss@evil.example",
         "Origin": sesame_envoy.url},
        ["chat.v2", "chat.v1"],
    )

    assert result.status == 101, result
    assert result.headers["sec-websocket-protocol"] == "chat.v2"
    assert len(result.messages) == 1, result
    assert result.close_code == 1000
    seen = json.loads(result.messages[0])
    assert seen["path"] == path + "?room=1"
    headers = seen["headers"]
    assert headers["upgrade"].lower() == "websocket"
    assert headers["sec-websocket-protocol"] == "chat.v2, chat.v1"
    assert headers["x-forwarded-email"] == USERS["alice"]["email"]
    assert headers["x-forwarded-user"] == USERS["alice"]["sub"]
    assert headers["x-forwarded-siret"] == USERS["alice"]["siret"]
    assert "boss@evil.example" not in json.dumps(headers)
    assert counters.delta() == {"requests_passed": 1}
    assert path in upstream_paths(upstream)
