"""Signing in: who is sent to the provider and who gets 401, the redirect to
the provider, the callback, the session cookie, the identity headers the
upstream receives, and every way a callback can fail.

All through the shared ``sesame_envoy`` (standard configuration, see
``oidc_client.sesame_config``) and the session's OpenID provider.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from oidc_client import (
    CLIENT_ID,
    COOKIE,
    HTML,
    JSON,
    SCOPES,
    USERS,
    Counters,
    assert_not_upstream,
    authorize,
    browser,
    cookie_attributes,
    deliver_callback,
    describe,
    forged_values_seen,
    http_request,
    is_clearing,
    jwt_claims,
    logged_in,
    login_location,
    query,
    session_cookie_sets,
    set_cookie,
    set_cookies,
    start_login,
    unique_path,
    upstream_log,
    upstream_mark,
    upstream_paths,
    upstream_view,
)

URLSAFE_43 = re.compile(r"[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def alice(sesame_envoy):
    """A browser signed in as alice on the shared Envoy."""
    return logged_in(sesame_envoy.url, "alice")


def assert_failure_page(r, status: int) -> None:
    """A callback failure: Sésame's HTML page (never a 500), no session."""
    assert r.status_code == status, describe(r)
    assert r.headers["Content-Type"].startswith("text/html"), describe(r)
    assert "/oauth2/sign_in?rd=" in r.text, "the page offers to sign in again"
    assert not session_cookie_sets(r), f"session cookie set: {set_cookies(r)}"


# --------------------------------------------------------------------------
# Without a session: 302 for page navigations, 401 for everything else


def test_navigation_is_redirected_to_the_provider_with_state_nonce_and_pkce(
        sesame_envoy, provider, upstream):
    """A page navigation without a session gets a 302 to the provider's
    authorization endpoint with every parameter of the code flow with PKCE,
    and a login cookie named after the state, scoped to the callback."""
    path = unique_path("/docs") + "?page=2"
    counters = Counters(sesame_envoy)

    r = start_login(browser(), sesame_envoy.url, path)

    location = r.headers["Location"]
    assert location.startswith(provider.issuer + "/auth?"), location
    params = query(location)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == sesame_envoy.url + "/oauth2/callback"
    assert params["scope"].split(" ") == SCOPES
    assert URLSAFE_43.fullmatch(params["state"]), params["state"]
    assert URLSAFE_43.fullmatch(params["nonce"]), params["nonce"]
    assert params["state"] != params["nonce"]
    assert URLSAFE_43.fullmatch(params["code_challenge"])
    assert params["code_challenge_method"] == "S256"

    header = set_cookie(r, f"{COOKIE}_csrf_{params['state'][:16]}")
    assert header is not None, set_cookies(r)
    _, value, attrs = cookie_attributes(header)
    assert value
    assert attrs == {"path": "/oauth2/callback", "max-age": "600", "httponly": "",
                     "samesite": "Lax"}
    assert counters.delta() == {"login_started": 1}
    assert_not_upstream(upstream, path.split("?")[0])


def test_each_sign_in_gets_its_own_state_nonce_and_login_cookie(sesame_envoy):
    """Two navigations (two tabs) start two sign-ins with fresh random values."""
    b = browser()
    first = query(login_location(b, sesame_envoy.url, "/a"))
    second = query(login_location(b, sesame_envoy.url, "/b"))

    for name in ("state", "nonce", "code_challenge"):
        assert first[name] != second[name], name
    csrf = [c.name for c in b.cookies if c.name.startswith(COOKIE + "_csrf_")]
    assert len(csrf) == 2


@pytest.mark.parametrize("method, headers", [
    ("GET", {"Accept": "*/*", "Sec-Fetch-Mode": "navigate"}),
    ("HEAD", HTML),
], ids=["sec-fetch-mode-navigate", "head-html"])
def test_other_navigations_are_redirected(sesame_envoy, method, headers):
    """``Sec-Fetch-Mode: navigate`` (whatever the Accept) and HEAD with
    text/html are page navigations too."""
    r = browser().request(method, sesame_envoy.url + "/nav", headers=headers,
                          allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)
    assert "/auth?" in r.headers["Location"]


@pytest.mark.parametrize("method, headers", [
    ("GET", {"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}),
    ("GET", {"Accept": "text/html", "Sec-Fetch-Mode": "cors"}),
    ("GET", JSON),
    ("GET", {}),
    ("POST", HTML),
    ("GET", {**HTML, "Upgrade": "websocket", "Connection": "Upgrade"}),
], ids=["xhr", "fetch-cors", "json", "no-accept", "post", "upgrade"])
def test_requests_that_are_not_navigations_get_401_json(
        sesame_envoy, upstream, method, headers):
    """Scripts, API calls, POSTs and upgrades without a session get Sésame's
    401 JSON: no redirect, no login cookie, nothing reaches the upstream."""
    path = unique_path("/api")
    counters = Counters(sesame_envoy)

    r = browser().request(method, sesame_envoy.url + path, headers=headers,
                          allow_redirects=False, timeout=10)

    assert r.status_code == 401, describe(r)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"] == "unauthenticated"
    assert "Location" not in r.headers
    assert set_cookies(r) == []
    assert counters.delta() == {"requests_unauthenticated": 1}
    assert_not_upstream(upstream, path)


# --------------------------------------------------------------------------
# A successful sign-in


def test_sign_in_returns_to_the_original_path_with_a_session_cookie(
        sesame_envoy, upstream):
    """After the provider, the browser goes back to the path and query it
    asked for, with the session cookie set and the login cookie cleared; the
    page then comes from the upstream."""
    path = unique_path("/reports") + "?year=2025&q=a%20b"
    b = browser()
    counters = Counters(sesame_envoy, ticked=True)
    auth_url = login_location(b, sesame_envoy.url, path)
    state = query(auth_url)["state"]

    r = deliver_callback(b, authorize(auth_url, "alice"))

    assert r.status_code == 302, describe(r)
    assert r.headers["Location"] == path
    session = set_cookie(r, COOKIE)
    assert session is not None, set_cookies(r)
    _, value, attrs = cookie_attributes(session)
    assert len(value) > 100
    assert attrs == {"path": "/", "max-age": "43200", "httponly": "", "samesite": "Lax"}
    assert is_clearing(set_cookie(r, f"{COOKIE}_csrf_{state[:16]}"))
    assert not [c for c in b.cookies if "_csrf_" in c.name], "login cookie left behind"
    assert counters.delta() == {"login_started": 1, "login_success": 1}
    assert_not_upstream(upstream, path.split("?")[0])

    page = b.get(sesame_envoy.url + r.headers["Location"], headers=HTML,
                 allow_redirects=False, timeout=10)

    assert page.status_code == 200, describe(page)
    assert "Sésame demo upstream" in page.text
    assert 'id="email">alice.martin@numerique.gouv.fr<' in page.text
    assert counters.delta()["requests_passed"] == 1
    assert path.split("?")[0] in upstream_paths(upstream)


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_upstream_receives_the_identity_headers(sesame_envoy, user):
    """By default the upstream gets the user's sub and email under
    oauth2-proxy's header names and the configured claim headers, and no
    token at all (``pass_access_token`` and ``pass_id_token`` are off, as
    oauth2-proxy's ``pass_access_token`` is); no preferred-username headers
    (the provider has no such claim), no Authorization header."""
    b = logged_in(sesame_envoy.url, user)
    expected = USERS[user]

    headers = upstream_view(b, sesame_envoy.url, "/whoami")["headers"]

    assert headers["x-forwarded-user"] == expected["sub"]
    assert headers["x-forwarded-email"] == expected["email"]
    assert headers["x-forwarded-siret"] == expected["siret"]
    for absent in ("x-forwarded-id-token", "x-auth-request-access-token", "authorization",
                   "x-forwarded-preferred-username"):
        assert absent not in headers, absent
    # Nor does /oauth2/auth, which any script of the page can fetch.
    auth = b.get(sesame_envoy.url + "/oauth2/auth", timeout=10)
    assert auth.status_code == 202
    assert auth.headers["X-Auth-Request-Email"] == expected["email"]
    assert not {"X-Forwarded-Id-Token", "X-Auth-Request-Access-Token",
                "Authorization"} & set(auth.headers)


def test_upstream_receives_the_tokens_when_asked(make_envoy, make_config, provider):
    """With ``pass_id_token`` and ``pass_access_token``, the upstream gets
    the ID token and the access token too; ``/oauth2/auth`` still answers
    without them unless ``auth_endpoint_tokens`` is set."""
    envoy = make_envoy(make_config(pass_id_token=True, pass_access_token=True))
    b = logged_in(envoy.url, "bob")
    expected = USERS["bob"]

    headers = upstream_view(b, envoy.url, "/whoami")["headers"]

    assert headers["x-forwarded-user"] == expected["sub"]
    assert headers["x-forwarded-email"] == expected["email"]
    assert headers["x-auth-request-user"] == expected["sub"]
    assert headers["x-auth-request-email"] == expected["email"]
    assert headers["x-forwarded-siret"] == expected["siret"]
    assert headers["x-forwarded-idp-id"] == expected["idp_id"]
    assert "x-forwarded-preferred-username" not in headers
    assert "x-auth-request-preferred-username" not in headers
    assert "authorization" not in headers
    claims = jwt_claims(headers["x-forwarded-id-token"])
    assert claims["sub"] == expected["sub"]
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == CLIENT_ID
    assert headers["x-auth-request-access-token"]
    assert headers["x-auth-request-access-token"] != headers["x-forwarded-id-token"]
    auth = b.get(envoy.url + "/oauth2/auth", timeout=10)
    assert auth.status_code == 202
    assert "X-Forwarded-Id-Token" not in auth.headers
    assert "X-Auth-Request-Access-Token" not in auth.headers


def test_auth_endpoint_answers_with_tokens_only_when_asked(make_envoy, make_config):
    """``auth_endpoint_tokens: true``: ``/oauth2/auth`` answers with the
    token headers ``pass_*`` turn on (for a proxy in front that hands them
    on, as oauth2-proxy's ``set_xauthrequest`` did)."""
    envoy = make_envoy(make_config(pass_id_token=True, pass_access_token=True,
                                   auth_endpoint_tokens=True))
    b = logged_in(envoy.url, "alice")
    auth = b.get(envoy.url + "/oauth2/auth", timeout=10)
    assert auth.status_code == 202
    assert jwt_claims(auth.headers["X-Forwarded-Id-Token"])["sub"] == USERS["alice"]["sub"]
    assert auth.headers["X-Auth-Request-Access-Token"]


def test_return_target_of_sign_in_must_be_local(sesame_envoy):
    """``/oauth2/sign_in?rd=`` starts a sign-in that returns to a local path,
    and never to another site."""
    for rd, expected in [("/local/page?x=1", "/local/page?x=1"),
                         ("//evil.example/", "/"),
                         ("https://evil.example/", "/")]:
        b = browser()
        r = b.get(sesame_envoy.url + "/oauth2/sign_in?" + urlencode({"rd": rd}),
                  headers=HTML, allow_redirects=False, timeout=10)
        assert r.status_code == 302, describe(r)
        done = deliver_callback(b, authorize(r.headers["Location"], "alice"))
        assert done.status_code == 302, describe(done)
        assert done.headers["Location"] == expected, rd


# --------------------------------------------------------------------------
# Spoofed identity headers


FORGED = {
    "X-Forwarded-Email": "boss@evil.example",
    "x-forwarded-user": "boss",
    "X_Forwarded_User": "boss-underscore",
    "X-AUTH-REQUEST-EMAIL": "boss@evil.example",
    "X-Auth-Request_User": "boss-mixed",
    "X-Forwarded-Preferred-Username": "boss",
    "X-Auth-Request-Preferred-Username": "boss",
    "X-Forwarded-Siret": "00000000000000",
    "x_forwarded_idp_id": "forged-idp",
    "X-Forwarded-Id-Token": "forged.id.token",
    "X-Auth-Request-Access-Token": "forged-access-token",
}


def test_spoofed_identity_headers_are_replaced_for_a_signed_in_user(sesame_envoy, alice):
    """Copies of the identity headers sent by the client, in any case and
    with ``_`` for ``-``, are removed before Sésame adds the real ones; an
    Authorization header of the application's own passes (Sésame does not
    set one in this configuration)."""
    headers = upstream_view(alice, sesame_envoy.url, "/spoof",
                            {**FORGED, "Authorization": "Basic YXBwOmFwcA=="})["headers"]

    assert forged_values_seen(headers, FORGED) == {}
    assert headers["x-forwarded-email"] == USERS["alice"]["email"]
    assert headers["x-forwarded-user"] == USERS["alice"]["sub"]
    assert headers["x-auth-request-user"] == USERS["alice"]["sub"]
    assert headers["x-forwarded-siret"] == USERS["alice"]["siret"]
    assert headers["x-forwarded-idp-id"] == USERS["alice"]["idp_id"]
    assert "x-forwarded-preferred-username" not in headers
    assert not [k for k in headers if "_" in k], headers
    assert headers["authorization"] == "Basic YXBwOmFwcA=="


def test_spoofed_identity_headers_are_removed_on_public_routes(sesame_envoy, upstream):
    """A public route (``GET /ping``) passes without a session, but never
    with identity headers made up by the client."""
    counters = Counters(sesame_envoy, ticked=True)

    view = upstream_view(None, sesame_envoy.url, "/ping?probe=1", FORGED)

    assert view["path"] == "/ping?probe=1"
    assert forged_values_seen(view["headers"], FORGED) == {}
    assert not [k for k in view["headers"] if "forwarded-user" in k or "auth-request" in k]
    assert counters.delta() == {"requests_public": 1}


# --------------------------------------------------------------------------
# Public routes (skip_auth_routes)


def test_public_route_passes_without_session_only_for_its_method(sesame_envoy, upstream):
    """``GET=^/ping$`` lets GET /ping through without login (the query does
    not matter); POST /ping and /ping/more need a session."""
    counters = Counters(sesame_envoy, ticked=True)
    mark = upstream_mark(upstream)

    assert browser().get(sesame_envoy.url + "/ping?x=1", headers=JSON,
                         timeout=10).status_code == 200
    post = browser().post(sesame_envoy.url + "/ping", headers=JSON, timeout=10)
    longer = browser().get(sesame_envoy.url + "/ping/more", headers=JSON, timeout=10)

    assert post.status_code == 401, describe(post)
    assert post.json()["error"] == "unauthenticated"
    assert longer.status_code == 401, describe(longer)
    assert counters.delta() == {"requests_public": 1, "requests_unauthenticated": 2}
    assert_not_upstream(upstream, "/ping/more", since=mark)
    assert ("POST", "/ping", "200") not in upstream_log(upstream)[mark:]


@pytest.mark.parametrize("target", [
    "/public/../secret",
    "/public/./../secret",
    "/public/%2e%2e/secret",
    "/public/%2E%2E%2Fsecret",
    "/public/..%2fsecret",
    "/public/..\\secret",
    "/public/x;/../../secret",
])
def test_paths_that_could_escape_a_public_prefix_are_not_public(
        sesame_envoy, upstream, target):
    """``^/public/`` makes /public/... public, but not a path that a server
    could normalise into something outside it (dot segments, encoded
    slashes or dots, backslashes, path parameters)."""
    mark = upstream_mark(upstream)
    status, headers, body = http_request(sesame_envoy.port, "GET", target, JSON)
    assert status == 401, (target, status, body[:200])
    assert b"unauthenticated" in body
    assert_not_upstream(upstream, target, since=mark)


def test_public_prefix_route_passes_for_a_plain_path(sesame_envoy, upstream):
    """Control for the test above: a plain /public/... path does pass."""
    status, _, body = http_request(sesame_envoy.port, "POST", "/public/form", JSON)
    assert status == 200, body[:200]
    assert b'"path":"/public/form"' in body


# --------------------------------------------------------------------------
# Callback failures


def test_callback_from_another_browser_is_refused(sesame_envoy, upstream):
    """A callback that no sign-in of this browser started (login CSRF: an
    attacker's code delivered to a victim) is a 400 page, counted
    ``login_failure.missing_login_cookie``, and gives no session."""
    attacker = browser()
    callback = authorize(login_location(attacker, sesame_envoy.url, "/x"), "eve")
    victim = browser()
    counters = Counters(sesame_envoy)

    r = deliver_callback(victim, callback)

    assert_failure_page(r, 400)
    assert "missing_login_cookie" in r.text
    assert counters.delta() == {"login_failure.missing_login_cookie": 1}
    assert not victim.cookies.get(COOKIE)


def test_callback_with_a_state_of_another_sign_in_is_refused(sesame_envoy):
    """A browser in the middle of a sign-in that receives a callback with a
    state it did not start gets 400 (``state_mismatch``); its own sign-in
    is not disturbed and still completes."""
    b = browser()
    own_auth = login_location(b, sesame_envoy.url, "/mine")
    foreign = authorize(login_location(browser(), sesame_envoy.url, "/theirs"), "bob")
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, foreign)

    assert_failure_page(r, 400)
    assert counters.delta() == {"login_failure.state_mismatch": 1}

    done = deliver_callback(b, authorize(own_auth, "alice"))
    assert done.status_code == 302 and done.headers["Location"] == "/mine", describe(done)
    assert b.cookies.get(COOKIE)


def test_callback_cannot_be_replayed(sesame_envoy):
    """The login cookie is cleared by a successful callback: the same
    callback URL a second time is refused."""
    b = browser()
    callback = authorize(login_location(b, sesame_envoy.url, "/once"), "alice")
    assert deliver_callback(b, callback).status_code == 302
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, callback)

    assert_failure_page(r, 400)
    assert counters.delta() == {"login_failure.missing_login_cookie": 1}


def test_cancelling_at_the_provider_says_so_and_offers_to_start_again(sesame_envoy):
    """The person cancels at the provider (``error=access_denied``): a page
    that says the sign-in was cancelled (not that the provider refused it)
    and offers to start again, ``login_failure.cancelled``, the login cookie
    cleared."""
    b = browser()
    auth_url = login_location(b, sesame_envoy.url, "/cancelled")
    callback = authorize(auth_url, deny=True)
    assert query(callback)["error"] == "access_denied"
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, callback)

    assert_failure_page(r, 401)
    assert "Connexion annulée" in r.text and "a refusé" not in r.text
    assert counters.delta() == {"login_failure.cancelled": 1}
    assert is_clearing(set_cookie(r, f"{COOKIE}_csrf_{query(auth_url)['state'][:16]}"))


def test_id_token_with_another_nonce_is_refused(sesame_envoy, upstream):
    """The provider is asked for a token with a nonce other than Sésame's
    (the rest of the sign-in untouched): the ID token carries the wrong
    nonce, and Sésame answers a 401 page (``login_failure.nonce_mismatch``)."""
    b = browser()
    path = unique_path("/nonce")
    auth_url = login_location(b, sesame_envoy.url, path)
    parts = urlsplit(auth_url)
    params = query(auth_url)
    params["nonce"] = "N" * 43
    tampered = urlunsplit(parts._replace(query=urlencode(params)))
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, authorize(tampered, "alice"))

    assert_failure_page(r, 401)
    assert "nonce_mismatch" in r.text
    assert counters.delta() == {"login_failure.nonce_mismatch": 1}
    assert_not_upstream(upstream, path)


def test_callback_naming_another_issuer_is_refused(sesame_envoy):
    """A callback whose ``iss`` is not the provider's (mix-up attack) is a
    400 page before any code is exchanged."""
    b = browser()
    callback = authorize(login_location(b, sesame_envoy.url, "/mixup"), "alice")
    parts = urlsplit(callback)
    params = query(callback)
    params["iss"] = "https://evil.example"
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, urlunsplit(parts._replace(query=urlencode(params))))

    assert_failure_page(r, 400)
    assert counters.delta() == {"login_failure.issuer_mismatch": 1}


@pytest.mark.parametrize("query_string, reason", [
    ("code=abc", "missing_state"),
    ("code=abc&state=not%20ours%21", "invalid_state"),
    ("code=abc&state=aaa&state=bbb", "malformed_callback"),
])
def test_malformed_callbacks_are_400_pages(sesame_envoy, query_string, reason):
    """Callbacks without a state, with a state Sésame never makes, or with a
    repeated parameter: 400 pages, counted by reason."""
    counters = Counters(sesame_envoy)

    r = deliver_callback(browser(), sesame_envoy.url + "/oauth2/callback?" + query_string)

    assert_failure_page(r, 400)
    assert r.history and r.history[0].status_code == 302, "refused at a clean address"
    assert counters.delta() == {f"login_failure.{reason}": 1}
