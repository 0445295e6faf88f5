"""Step-up per route (RFC 9470) through a real Envoy, against the local
provider in ProConnect mode (``--proconnect --issuer-path /api/v2``, with
``--api-resources`` for the bearer part).

The Envoy of this module has the ProConnect configuration plus:

- ``^/admin/`` (session) needs ``acr_values: ["eidas2", "eidas3"]``;
- ``^/api/strong/`` (bearer) needs ``acr_values: ["eidas2"]``, ``^/api/``
  (bearer) no level;
- the provider's own ``claims`` request asks for ``amr`` (kept beside the
  step-up's essential ``acr``), and ``X-Auth-Request-Acr`` carries the
  session's ``acr`` upstream.

A person first signs in at eidas1 (the acr chosen in the provider's login
form); the step-up then sends page navigations back to the provider, and
answers everything else with ``401 insufficient_user_authentication``.

The provider's access tokens carry no ``acr`` (oidc-provider puts only its
own claims and ``email`` in them, whatever the level of the sign-in): the
bearer tests use a real access token as it is (no ``acr``), and copies of
it re-signed with the provider's own key with an ``acr`` added.
"""

from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from conftest import CALLBACK_PATH, PROCONNECT_ISSUER_PATH, ready
from harness import Envoy, Provider, Upstream, free_port
from oidc_client import (
    API_RESOURCE,
    COOKIE,
    HTML,
    JSON,
    USERS,
    Counters,
    api_tokens,
    assert_not_upstream,
    authorize,
    bearer_challenge,
    browser,
    deliver_callback,
    describe,
    jwt_claims,
    jwt_header,
    login_location,
    proconnect_config,
    provider_private_jwk,
    query,
    raw_get,
    session_cookie_sets,
    sign_jwt,
    unique_path,
    upstream_mark,
    upstream_view,
)

ADMIN_ACR = ["eidas2", "eidas3"]
API_ACR = ["eidas2"]
AMR_CLAIMS = {"id_token": {"amr": {"essential": True}}}
API_PEOPLE = {"sub": [USERS["alice"]["sub"], USERS["bob"]["sub"]]}
ROUTES = [
    {"path": "^/admin/", "mode": "session", "acr_values": ADMIN_ACR},
    {"path": "^/api/strong/", "mode": "bearer", "scopes": ["api:read"],
     "allowed_claims": API_PEOPLE, "acr_values": API_ACR},
    {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"],
     "allowed_claims": API_PEOPLE},
]


@pytest.fixture(scope="module")
def step_up_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def step_up_provider(step_up_port: int) -> Iterator[Provider]:
    """The provider in ProConnect mode, with its resource servers."""
    with Provider(
        redirect_uris=[f"http://127.0.0.1:{step_up_port}{CALLBACK_PATH}"],
        proconnect=True,
        issuer_path=PROCONNECT_ISSUER_PATH,
        api_resources=True,
    ) as idp:
        yield idp


@pytest.fixture(scope="module")
def envoy(step_up_port: int, upstream: Upstream,
          step_up_provider: Provider) -> Iterator[Envoy]:
    base = proconnect_config(step_up_provider.issuer,
                             f"http://127.0.0.1:{step_up_port}{CALLBACK_PATH}")
    config = proconnect_config(
        step_up_provider.issuer,
        f"http://127.0.0.1:{step_up_port}{CALLBACK_PATH}",
        routes=ROUTES,
        bearer_audience=API_RESOURCE,
        claims=AMR_CLAIMS,
        claim_headers={**base["claim_headers"], "X-Auth-Request-Acr": "acr"},
    )
    with ready(Envoy(config, step_up_port, upstream.port, step_up_provider.port)) as e:
        yield e


def signed_in(envoy: Envoy, user: str = "alice", acr: str = "eidas1"):
    """A new browser holding a session for ``user`` signed in at ``acr``;
    returns it with the session cookie's value."""
    b = browser()
    start = unique_path("/home")
    done = deliver_callback(b, authorize(login_location(b, envoy.url, start), user, acr=acr))
    assert done.status_code == 302 and done.headers["Location"] == start, describe(done)
    cookie = b.cookies.get(COOKIE)
    assert cookie, "no session cookie after the sign-in"
    return b, cookie


def seen_acr(b, envoy: Envoy, path: str) -> str | None:
    """The ``acr`` the upstream receives (``X-Auth-Request-Acr``) for ``b`` on ``path``."""
    return upstream_view(b, envoy.url, path)["headers"].get("x-auth-request-acr")


def assert_step_up_redirect(r, provider: Provider) -> str:
    """``r`` is the step-up's 302 to the provider, asking for the admin
    levels as ``acr_values`` and as the essential acr of ``claims`` (the
    configured ``amr`` request kept); returns the authorization URL."""
    assert r.status_code == 302, describe(r)
    location = r.headers["Location"]
    assert location.startswith(provider.issuer + "/auth?"), location
    sent = query(location)
    assert sent["acr_values"] == " ".join(ADMIN_ACR), sent
    assert json.loads(sent["claims"]) == {"id_token": {
        "amr": {"essential": True},
        "acr": {"essential": True, "values": ADMIN_ACR},
    }}, sent["claims"]
    return location


def assert_insufficient(r, acr_values: list[str]) -> None:
    """RFC 9470's 401: ``insufficient_user_authentication`` with the levels."""
    assert r.status_code == 401, describe(r)
    params = bearer_challenge(r)
    assert params["realm"] == "sesame", params
    assert params["error"] == "insufficient_user_authentication", params
    assert params.get("error_description"), params
    assert params["acr_values"] == " ".join(acr_values), params


# --------------------------------------------------------------------------
# 1. A step-up that succeeds


@pytest.mark.parametrize("chosen", ["eidas2", None], ids=["eidas2", "as-requested"])
def test_eidas1_session_steps_up_to_admin(envoy, step_up_provider, upstream, chosen):
    """An eidas1 session opens ordinary pages; on ``/admin/`` an API call
    gets the RFC 9470 challenge and a navigation goes back to the provider
    with the route's levels; signing in there at eidas2 lands back on the
    page, with a new session the upstream sees at eidas2."""
    b, old_cookie = signed_in(envoy, "alice", "eidas1")
    assert seen_acr(b, envoy, unique_path("/page")) == "eidas1"

    mark = upstream_mark(upstream)
    api_path = unique_path("/admin/api")
    counters = Counters(envoy)
    r = b.get(envoy.url + api_path, headers=JSON, allow_redirects=False, timeout=10)
    assert_insufficient(r, ADMIN_ACR)
    assert r.json()["error"] == "insufficient_user_authentication"
    assert counters.delta() == {"bearer_refused.insufficient_user_authentication": 1}
    assert_not_upstream(upstream, api_path, since=mark)

    page = unique_path("/admin/x")
    counters = Counters(envoy)
    r = b.get(envoy.url + page, headers=HTML, allow_redirects=False, timeout=10)
    auth_url = assert_step_up_redirect(r, step_up_provider)
    assert counters.delta() == {"login_started": 1}

    callback = authorize(auth_url, "alice", acr=chosen)
    received = step_up_provider.last_authorize()
    assert received["acr_values"] == "eidas2 eidas3"
    assert received["claims"] == query(auth_url)["claims"]
    counters = Counters(envoy)
    done = deliver_callback(b, callback)

    assert done.status_code == 302 and done.headers["Location"] == page, describe(done)
    assert session_cookie_sets(done), "the step-up set no session cookie"
    assert counters.delta() == {"login_success": 1}
    new_cookie = b.cookies.get(COOKIE)
    assert new_cookie and new_cookie != old_cookie, "the old session was not replaced"

    landed = b.get(envoy.url + page, headers=HTML, allow_redirects=False, timeout=10)
    assert landed.status_code == 200, describe(landed)
    assert "Sésame demo upstream" in landed.text
    assert USERS["alice"]["email"] in landed.text
    view = upstream_view(b, envoy.url, page)
    assert view["headers"]["x-auth-request-acr"] == "eidas2"
    assert jwt_claims(view["headers"]["x-forwarded-id-token"])["acr"] == "eidas2"
    assert view["headers"]["x-forwarded-email"] == USERS["alice"]["email"]
    # The whole session is the new one, on the other routes too.
    assert seen_acr(b, envoy, unique_path("/page")) == "eidas2"


def test_route_without_acr_values_takes_the_session_as_it_is(envoy, upstream):
    """An eidas1 session passes every route that names no level, with no
    trip to the provider; only ``/admin/`` asks for more."""
    b, _ = signed_in(envoy, "bob", "eidas1")
    counters = Counters(envoy)
    for path in (unique_path("/"), unique_path("/docs"), unique_path("/administration")):
        r = b.get(envoy.url + path, headers=HTML, allow_redirects=False, timeout=10)
        assert r.status_code == 200, describe(r)
        assert seen_acr(b, envoy, path) == "eidas1"
    assert counters.delta() == {}


# --------------------------------------------------------------------------
# 2. A step-up the provider answers with a lower level


def test_lower_acr_at_the_step_up_ends_on_the_403_page_without_a_loop(
        envoy, step_up_provider, upstream):
    """The person chooses eidas1 again at the provider: the callback sends
    the browser to the clean ``/oauth2/failed`` address, a 403 page naming
    the levels the route needs (``acr: eidas2 eidas3``), nothing upstream;
    the eidas1 session stays; a second navigation to the page starts one
    step-up again (a single redirect to the provider, not an automatic
    loop)."""
    b, cookie = signed_in(envoy, "alice", "eidas1")
    page = unique_path("/admin/x")
    mark = upstream_mark(upstream)
    r = b.get(envoy.url + page, headers=HTML, allow_redirects=False, timeout=10)
    auth_url = assert_step_up_redirect(r, step_up_provider)
    callback = authorize(auth_url, "alice", acr="eidas1")
    counters = Counters(envoy)

    shown = deliver_callback(b, callback)

    refused = shown.history[0]
    assert refused.status_code == 302, describe(refused)
    failed = urlsplit(shown.url)
    assert failed.path == "/oauth2/failed", shown.url
    assert query(shown.url) == {"reason": "acr_not_satisfied", "status": "403", "rd": page,
                                "acr": "eidas2 eidas3"}, shown.url
    assert "acr=eidas2+eidas3" in failed.query, shown.url
    assert shown.status_code == 403, describe(shown)
    assert shown.headers["Content-Type"].startswith("text/html")
    assert "acr: eidas2 eidas3" in shown.text, shown.text[:2000]
    assert "Location" not in shown.headers
    assert not session_cookie_sets(shown)
    assert counters.delta() == {"login_failure.acr_not_satisfied": 1}
    assert 'acr "eidas1" is not among eidas2 eidas3 (step-up)' in envoy.log_text()
    assert_not_upstream(upstream, page, since=mark)
    # The eidas1 session is still there, and still opens ordinary pages.
    assert b.cookies.get(COOKIE) == cookie
    assert seen_acr(b, envoy, unique_path("/page")) == "eidas1"

    counters = Counters(envoy)
    again = b.get(envoy.url + page, headers=HTML, allow_redirects=False, timeout=10)
    assert_step_up_redirect(again, step_up_provider)
    assert counters.delta() == {"login_started": 1}
    assert_not_upstream(upstream, page, since=mark)


# --------------------------------------------------------------------------
# 3. Bearer tokens on a route with acr_values


def resigned(token: str, provider: Provider, **claims: Any) -> str:
    """``token`` with ``claims`` added, signed again with the provider's own
    key (the one that signed it)."""
    header = jwt_header(token)
    return sign_jwt(header, {**jwt_claims(token), **claims},
                    provider_private_jwk(provider, header["kid"]))


def test_bearer_token_acr_on_a_route_with_acr_values(envoy, step_up_provider, upstream):
    """``^/api/strong/`` needs eidas2. The provider's access tokens carry no
    ``acr`` even after an eidas2 sign-in (its ID token does): such a token
    opens ``^/api/`` but gets ``401 insufficient_user_authentication`` on
    the strong route. The same token with ``acr: eidas1`` (signed with the
    provider's key) gets the 401 too; with ``acr: eidas2`` it passes."""
    tokens = api_tokens(step_up_provider, "alice", API_RESOURCE, "openid api:read", acr="eidas2")
    token = tokens["access_token"]
    assert token.count(".") == 2, "the provider should issue a JWT access token here"
    assert jwt_claims(tokens["id_token"])["acr"] == "eidas2"
    assert "acr" not in jwt_claims(token), "the provider now puts acr in access tokens"

    def call(path: str, bearer: str):
        return raw_get(envoy.url, path, None, {**JSON, "Authorization": f"Bearer {bearer}"})

    mark = upstream_mark(upstream)
    r = call(unique_path("/api/items"), token)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-user"] == USERS["alice"]["sub"]

    weak = resigned(token, step_up_provider, acr="eidas1")
    strong = resigned(token, step_up_provider, acr="eidas2")
    counters = Counters(envoy)
    refused = []
    for bearer in (token, weak):
        path = unique_path("/api/strong/items")
        r = call(path, bearer)
        assert_insufficient(r, API_ACR)
        assert r.json()["error"] == "insufficient_user_authentication"
        refused.append(path)
    assert counters.delta() == {"bearer_refused.insufficient_user_authentication": 2}
    assert_not_upstream(upstream, *refused, since=mark)

    path = unique_path("/api/strong/items")
    r = call(path, strong)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-user"] == USERS["alice"]["sub"]
    assert r.json()["headers"]["authorization"] == f"Bearer {strong}"
