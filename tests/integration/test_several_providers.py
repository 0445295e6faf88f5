"""Several providers behind one Sésame, through a real Envoy: two OpenID
providers at once (two instances of the test provider, with their own
issuers, keys and clients; the second in ProConnect mode) and a plain
OAuth 2.0 server shaped like OpenStreetMap's (``tests/oauth2/server.mjs``:
numeric ids, no email, no ID token).

What is tried: the sign-in page, a sign-in at each provider, each
provider's own access rules, a route for one provider, the mix-up (a code
and state from one provider delivered to another's callback), bearer tokens
from both issuers, a refresh at the OAuth 2.0 server, sign-out of each
kind, and one provider down while the others go on.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import requests

from conftest import SIGNED_OUT_PATH
from harness import Envoy, OAuth2Server, Provider, Upstream, free_port
from oidc_client import (
    API_RESOURCE,
    COOKIE,
    COOKIE_SECRET,
    HTML,
    JSON,
    USERS,
    Counters,
    api_tokens,
    assert_not_upstream,
    authorize,
    browser,
    deliver_callback,
    describe,
    gauge,
    http_request,
    query,
    unique_path,
    upstream_mark,
    upstream_paths,
    upstream_view,
)

TIMEOUT = 10
KC_SECRET = "staff-provider-secret"


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def kc(port: int) -> Iterator[Provider]:
    """The staff's provider (a Keycloak in real life)."""
    base = f"http://127.0.0.1:{port}"
    with Provider(
        redirect_uris=[base + "/oauth2/callback/kc"],
        post_logout_redirect_uris=[base + SIGNED_OUT_PATH],
        client_id="sesame-kc",
        client_secret=KC_SECRET,
        api_resources=True,
    ) as idp:
        yield idp


@pytest.fixture(scope="module")
def pc(port: int) -> Iterator[Provider]:
    """ProConnect (the test provider in ProConnect mode)."""
    base = f"http://127.0.0.1:{port}"
    with Provider(
        redirect_uris=[base + "/oauth2/callback/pc"],
        post_logout_redirect_uris=[base + SIGNED_OUT_PATH],
        proconnect=True,
        issuer_path="/api/v2",
        api_resources=True,
    ) as idp:
        yield idp


@pytest.fixture(scope="module")
def osm(port: int) -> Iterator[OAuth2Server]:
    with OAuth2Server([f"http://127.0.0.1:{port}/oauth2/callback/osm"], enforce_pkce=True) as server:
        yield server


def several_config(port: int, kc: Provider, pc: Provider, osm: OAuth2Server, **changes: Any) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "providers": [
            {
                "id": "kc", "label": "Personnel", "issuer": kc.issuer, "idp_cluster": "kc",
                "client_id": "sesame-kc", "client_secret": KC_SECRET,
                "redirect_uri": base + "/oauth2/callback/kc",
                # The staff provider admits bob only (not alice, whom the
                # filter's rules would admit).
                "allowed_emails": [USERS["bob"]["email"]],
                "bearer_audience": API_RESOURCE,
            },
            {
                "id": "pc", "provider": "proconnect", "issuer": pc.issuer, "idp_cluster": "pc",
                "client_id": "sesame", "client_secret": "sesame-demo-secret-please-change",
                "redirect_uri": base + "/oauth2/callback/pc",
                "bearer_audience": API_RESOURCE,
            },
            {
                "id": "osm", "label": "OpenStreetMap", "provider": "oauth2", "idp_cluster": "osm",
                "client_id": osm.client_id, "client_secret": osm.client_secret,
                "redirect_uri": base + "/oauth2/callback/osm",
                "authorization_endpoint": osm.authorization_endpoint,
                "token_endpoint": osm.token_endpoint,
                "userinfo_endpoint": osm.userinfo_endpoint,
                "claims_map": {"sub": "/user/id", "preferred_username": "/user/display_name"},
                "allow_all_users": True,
            },
        ],
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        "allowed_email_domains": ["*.gouv.fr"],
        "qualified_user": True,
        "provider_retry_max": 1,
        "routes": [
            {"path": "^/staff/", "mode": "session", "providers": ["kc"]},
            {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]},
            {"path": "^/staff-api/", "mode": "bearer", "providers": ["kc"]},
        ],
    }
    config.update(changes)
    return config


def make_envoy(port: int, upstream: Upstream, kc: Provider, pc: Provider, osm: OAuth2Server,
               **changes: Any) -> Envoy:
    clusters = {"kc": kc.port, "pc": pc.port, "osm": osm.port}
    return Envoy(several_config(port, kc, pc, osm, **changes), port, upstream.port,
                 extra_clusters=clusters)


def wait_ready(envoy: Envoy, *ids: str, timeout: float = 15.0) -> None:
    """Wait until the gauges say providers ``ids`` are ready."""
    deadline = time.monotonic() + timeout
    while True:
        if all(gauge(envoy, f"provider_ready.{i}") == 1 for i in ids):
            return
        assert time.monotonic() < deadline, f"providers {ids} not ready: {envoy.stats('wasmcustom.sesame.')}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def envoy(port: int, upstream: Upstream, kc: Provider, pc: Provider, osm: OAuth2Server) -> Iterator[Envoy]:
    e = make_envoy(port, upstream, kc, pc, osm)
    e.start()
    try:
        wait_ready(e, "kc", "pc", "osm")
        yield e
    finally:
        e.stop()


def sign_in_page(b: requests.Session, envoy: Envoy, path: str) -> str:
    """Navigate to ``path`` without a session: the sign-in page's HTML."""
    r = b.get(envoy.url + path, headers=HTML, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, describe(r)
    page = r.headers["Location"]
    assert page.startswith("/oauth2/sign_in?rd="), page
    r = b.get(envoy.url + page, headers=HTML, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 200, describe(r)
    return r.text


def start_at(b: requests.Session, envoy: Envoy, provider: str, rd: str = "/") -> str:
    """Start a sign-in at ``provider``: the authorization URL."""
    r = b.get(f"{envoy.url}/oauth2/sign_in", params={"provider": provider, "rd": rd},
              headers=HTML, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, describe(r)
    return r.headers["Location"]


def osm_authorize(auth_url: str) -> str:
    """The OAuth 2.0 server signs its current user in at once: the callback URL."""
    r = requests.get(auth_url, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, describe(r)
    return r.headers["Location"]


def signed_in(envoy: Envoy, provider: str, user: str = "alice", rd: str = "/") -> requests.Session:
    b = browser()
    auth_url = start_at(b, envoy, provider, rd)
    back = osm_authorize(auth_url) if provider == "osm" else authorize(auth_url, user)
    assert urlsplit(back).path == f"/oauth2/callback/{provider}", back
    r = deliver_callback(b, back)
    assert r.status_code == 302 and r.headers["Location"] == rd, describe(r)
    return b


def test_the_sign_in_page_offers_each_provider(envoy: Envoy) -> None:
    html = sign_in_page(browser(), envoy, "/chat?x=1")
    for provider in ("kc", "pc", "osm"):
        assert f'href="/oauth2/sign_in?provider={provider}&amp;rd=%2Fchat%3Fx%3D1"' in html, html
    assert "Personnel" in html and "OpenStreetMap" in html
    assert "proconnect-button" in html, "ProConnect's own button"
    # A route for one provider: its navigation goes straight there.
    r = browser().get(envoy.url + "/staff/x", headers=HTML, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302 and r.headers["Location"].startswith(envoy_kc_auth(envoy)), describe(r)


def envoy_kc_auth(envoy: Envoy) -> str:
    kc_issuer = next(p["issuer"] for p in envoy.plugin_config["providers"] if p["id"] == "kc")
    return kc_issuer + "/auth?"


def test_an_unknown_provider_gets_a_400_page(envoy: Envoy) -> None:
    r = browser().get(envoy.url + "/oauth2/sign_in?provider=github&rd=/", headers=HTML,
                      allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 400, describe(r)
    assert "unknown_provider" in r.text


def test_sign_in_at_each_provider(envoy: Envoy, osm: OAuth2Server) -> None:
    path = unique_path("/who")
    staff = signed_in(envoy, "kc", "bob")
    h = upstream_view(staff, envoy.url, path)["headers"]
    assert h["x-auth-request-provider"] == "kc"
    assert h["x-forwarded-email"] == USERS["bob"]["email"]
    assert h["x-forwarded-user"] == "kc:" + USERS["bob"]["sub"], "qualified_user"

    agent = signed_in(envoy, "pc", "alice")
    h = upstream_view(agent, envoy.url, path)["headers"]
    assert h["x-auth-request-provider"] == "pc"
    assert h["x-forwarded-email"] == USERS["alice"]["email"]
    assert h["x-forwarded-user"] == "pc:" + USERS["alice"]["sub"]

    osm.reset()
    mapper = signed_in(envoy, "osm")
    h = upstream_view(mapper, envoy.url, path)["headers"]
    assert h["x-auth-request-provider"] == "osm"
    assert h["x-forwarded-user"] == "osm:4242"
    assert h["x-forwarded-preferred-username"] == "Carto Mapper"
    assert "x-forwarded-email" not in h
    # State, PKCE S256 (the server enforces it), and no nonce.
    sent = osm.stats()["last_authorize"]
    assert sent["code_challenge_method"] == "S256" and "nonce" not in sent
    # A client's copy of the provider header never reaches the application.
    h = upstream_view(mapper, envoy.url, path, headers={"X-Auth-Request-Provider": "kc"})["headers"]
    assert h["x-auth-request-provider"] == "osm"


def test_each_provider_applies_its_own_rules(envoy: Envoy) -> None:
    # The staff provider's rules (bob only) replace the filter's for the
    # people it signs in: alice, whom the filter's *.gouv.fr admits through
    # ProConnect, is refused there.
    b = browser()
    r = deliver_callback(b, authorize(start_at(b, envoy, "kc"), "alice"))
    assert r.status_code == 403, describe(r)
    assert not b.cookies.get(COOKIE)
    upstream_view(signed_in(envoy, "pc", "alice"), envoy.url, unique_path("/ok"))
    # The filter's rules for ProConnect: eve (example.com) is refused.
    b = browser()
    r = deliver_callback(b, authorize(start_at(b, envoy, "pc"), "eve"))
    assert r.status_code == 403, describe(r)
    assert not b.cookies.get(COOKIE)


def test_a_route_for_one_provider_refuses_the_others_sessions(envoy: Envoy, upstream: Upstream) -> None:
    agent = signed_in(envoy, "pc", "bob")
    path = unique_path("/staff/page")
    mark = upstream_mark(upstream)
    # A navigation is offered a sign-in with a provider the route admits.
    r = agent.get(envoy.url + path, headers=HTML, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, describe(r)
    assert r.headers["Location"] == "/oauth2/sign_in?rd=" + path.replace("/", "%2F")
    page = agent.get(envoy.url + r.headers["Location"], headers=HTML, timeout=TIMEOUT).text
    assert "provider=kc" in page and "provider=pc" not in page and "provider=osm" not in page
    # Anything else is refused.
    r = agent.get(envoy.url + path, headers=JSON, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 403, describe(r)
    assert_not_upstream(upstream, path, since=mark)
    # The same person signed in with the staff provider passes.
    staff = signed_in(envoy, "kc", "bob")
    assert upstream_view(staff, envoy.url, path)["headers"]["x-auth-request-provider"] == "kc"


@pytest.mark.parametrize("spelling", [
    "/staff/x", "//staff/x", "/x/../staff/x", "/%73taff/x", "/staff;p=1/x", "/public/..%2Fstaff/x",
])
def test_another_providers_session_stays_out_of_a_route_in_any_spelling(
        envoy: Envoy, upstream: Upstream, spelling: str) -> None:
    """The staff-only route, asked for in spellings that servers read as
    `/staff/...`: ProConnect's session never reaches the upstream."""
    agent = signed_in(envoy, "pc", "bob")
    cookie = "; ".join(f"{c.name}={c.value}" for c in agent.cookies)
    mark = upstream_mark(upstream)
    status, _, body = http_request(envoy.port, "GET", spelling, {**JSON, "Cookie": cookie})
    assert status in (400, 403), (status, body[:300])
    assert not (upstream_paths(upstream, since=mark) & {spelling, "/staff/x"}), spelling


def test_a_session_cannot_be_relabelled_as_another_providers(envoy: Envoy) -> None:
    """The first byte of the sealed session names the provider whose keys
    sealed it: changed to name another provider, it opens nothing."""
    agent = signed_in(envoy, "pc", "bob")
    value = agent.cookies.get(COOKIE)
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    assert raw[0] == 2, "pc is the second provider"
    for other in (1, 3):
        raw[0] = other
        forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        r = requests.get(envoy.url + unique_path("/relabelled"),
                         headers={**JSON, "Cookie": f"{COOKIE}={forged}"}, timeout=TIMEOUT)
        assert r.status_code == 401, describe(r)


def test_a_code_and_state_from_one_provider_are_refused_at_another_callback(envoy: Envoy) -> None:
    counters = Counters(envoy)
    b = browser()
    back = authorize(start_at(b, envoy, "pc"), "alice")
    assert urlsplit(back).path == "/oauth2/callback/pc"
    stolen = back.replace("/oauth2/callback/pc", "/oauth2/callback/kc", 1)
    # The browser holds the sign-in's cookie for pc's callback path only;
    # sent along anyway (as a __Host- cookie with Path=/ would be), it
    # still names the provider the sign-in started at.
    login_cookie = "; ".join(f"{c.name}={c.value}" for c in b.cookies if "_csrf_" in c.name)
    assert login_cookie
    for cookie, reason in (("", "missing_login_cookie"), (login_cookie, "provider_mismatch")):
        r = requests.get(stolen, headers={**HTML, "Cookie": cookie}, allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 302, describe(r)
        assert r.headers["Location"].startswith(f"/oauth2/failed?reason={reason}&status=400&")
        assert not any(c.startswith(COOKIE + "=") for c in r.headers.get("set-cookie", "").split(", "))
    delta = counters.delta()
    assert delta.get("login_failure.provider_mismatch") == 1, delta
    assert delta.get("login_failure.missing_login_cookie") == 1, delta
    assert "login_success" not in delta
    # No token request spent the code: at its own callback it still signs in.
    r = deliver_callback(b, back)
    assert r.status_code == 302, describe(r)


def test_bearer_tokens_from_both_issuers(envoy: Envoy, kc: Provider, pc: Provider) -> None:
    path = unique_path("/api/read")
    for provider, pid, user in ((kc, "kc", "bob"), (pc, "pc", "alice")):
        token = api_tokens(provider, user, scope="openid api:read")["access_token"]
        r = requests.get(envoy.url + path, headers={**JSON, "Authorization": f"Bearer {token}"},
                         timeout=TIMEOUT)
        assert r.status_code == 200, describe(r)
        assert r.json()["headers"]["x-auth-request-provider"] == pid
        assert r.json()["headers"]["x-forwarded-email"] == USERS[user]["email"]
    # A route for the staff provider: pc's token is refused there (its
    # issuer picks pc's keys, and the route does not admit pc), fresh, or
    # remembered from a route that admitted it.
    token = api_tokens(pc, "alice", scope="openid api:read")["access_token"]
    bearer = {**JSON, "Authorization": f"Bearer {token}"}
    counters = Counters(envoy)
    r = requests.get(envoy.url + unique_path("/staff-api/x"), headers=bearer, timeout=TIMEOUT)
    assert r.status_code == 401, describe(r)
    assert r.json()["error"] == "invalid_token", r.text
    assert counters.delta() == {"bearer_refused.wrong_issuer": 1}
    r = requests.get(envoy.url + unique_path("/api/x"), headers=bearer, timeout=TIMEOUT)
    assert r.status_code == 200, describe(r)
    counters = Counters(envoy)
    r = requests.get(envoy.url + unique_path("/staff-api/x"), headers=bearer, timeout=TIMEOUT)
    assert r.status_code == 401, describe(r)
    assert counters.delta() == {"bearer_refused.wrong_issuer": 1}


def test_the_oauth2_session_is_refreshed_with_its_refresh_token(envoy: Envoy, osm: OAuth2Server) -> None:
    osm.reset()
    osm.set_expires_in(30)  # within refresh_margin (60 s): due at once
    mapper = signed_in(envoy, "osm")
    before = osm.stats()["token_refresh"]
    h = upstream_view(mapper, envoy.url, unique_path("/r"))["headers"]
    assert h["x-forwarded-user"] == "osm:4242"
    assert osm.stats()["token_refresh"] == before + 1
    osm.reset()


def test_sign_out_of_each_kind(envoy: Envoy, kc: Provider) -> None:
    # An OpenID provider with an end_session_endpoint: on to its logout.
    staff = signed_in(envoy, "kc", "bob")
    r = staff.get(envoy.url + "/oauth2/sign_out?rd=/bye", allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, describe(r)
    assert r.headers["Location"].startswith(kc.issuer), r.headers["Location"]
    assert query(r.headers["Location"])["post_logout_redirect_uri"].endswith(SIGNED_OUT_PATH)
    # A plain OAuth 2.0 provider has no logout: straight to rd.
    mapper = signed_in(envoy, "osm")
    r = mapper.get(envoy.url + "/oauth2/sign_out?rd=/bye", allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302 and r.headers["Location"] == "/bye", describe(r)
    r = mapper.get(envoy.url + "/x", headers=JSON, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 401, describe(r)


def test_one_provider_down_never_blocks_the_others(
    port: int, upstream: Upstream, kc: Provider, pc: Provider, osm: OAuth2Server, envoy: Envoy
) -> None:
    envoy.stop()
    kc.stop()
    try:
        # Started with the staff provider down.
        other = make_envoy(port, upstream, kc, pc, osm)
        other.start()
        try:
            wait_ready(other, "pc", "osm")
            assert gauge(other, "provider_ready.kc") == 0
            html = sign_in_page(browser(), other, "/")
            assert "provider=kc" not in html and "provider=pc" in html and "provider=osm" in html
            assert "indisponible" in html or "unavailable" in html
            r = browser().get(other.url + "/oauth2/sign_in?provider=kc&rd=/", headers=HTML,
                              allow_redirects=False, timeout=TIMEOUT)
            assert r.status_code == 503, describe(r)
            upstream_view(signed_in(other, "pc", "alice"), other.url, unique_path("/up"))
            upstream_view(signed_in(other, "osm"), other.url, unique_path("/up"))
            # The staff provider comes back: its button too.
            kc.start()
            wait_ready(other, "kc")
            upstream_view(signed_in(other, "kc", "bob"), other.url, unique_path("/up"))
        finally:
            other.stop()
    finally:
        if not kc.running:
            kc.start()
        envoy.start()
        wait_ready(envoy, "kc", "pc", "osm")
