"""The plugin configuration: what Envoy refuses to start with (and what it
logs then), and options that change what Sésame does (Secure cookies, the
cookie name and endpoint prefix, which identity headers are sent).
"""

from __future__ import annotations

import re

import pytest

from oidc_client import (
    COOKIE,
    HTML,
    JSON,
    USERS,
    Counters,
    authorize,
    browser,
    cookie_attributes,
    deliver_callback,
    describe,
    jwt_claims,
    logged_in,
    login,
    login_location,
    query,
    set_cookie,
    set_cookies,
    upstream_view,
)

CLIENT_SECRET_MARK = "client-secret-must-never-be-logged"
COOKIE_SECRET_MARK = "c2hvcnQtY29va2llLXNlY3JldA=="  # base64 of 19 bytes: too short

CONFIG_LINE = re.compile(r"invalid configuration: configuration key `([^`]+)`: (.*)$")


def refusal(make_envoy, config) -> tuple[list[str], str]:
    """Start Envoy with ``config``, expecting a refusal: (the keys named by
    the ``invalid configuration`` lines, in order, and the whole log)."""
    envoy = make_envoy(config, start=False)
    log = envoy.start(expect_failure=True)
    keys = [m.group(1) for line in log.splitlines() if (m := CONFIG_LINE.search(line))]
    return keys, log


def test_unknown_key_is_refused(make_envoy, make_config):
    """A misspelt key is not ignored (it would silently drop a rule)."""
    keys, log = refusal(make_envoy, make_config(alowed_email_domains=["*"]))
    assert keys == ["alowed_email_domains"], log[-3000:]


def test_configuration_without_access_rule_is_refused(make_envoy, make_config):
    """No allowed_emails, allowed_email_domains or allowed_claims: refused
    (admitting everyone must be asked for, with ``["*"]``)."""
    keys, log = refusal(make_envoy, make_config(allowed_email_domains=[]))
    assert keys == ["allowed_email_domains"], log[-3000:]
    assert 'allowed_email_domains: ["*"]' in log


# Independent mistakes, all in one configuration: (key, wrong value) and the
# keys named in the log (a list may give one line per bad item).
MISTAKES = {
    "issuer": ("idp.example", ["issuer"]),
    "redirect_uri": ("/oauth2/callback", ["redirect_uri"]),
    "provider": ("keycloak", ["provider"]),
    "token_endpoint_auth_method": ("private_key_jwt", ["token_endpoint_auth_method"]),
    "scopes": (["email"], ["scopes"]),
    "cookie_secret": ("not base64 at all!!", ["cookie_secret"]),
    "cookie_secure": ("false", ["cookie_secure"]),
    "cookie_name": ("my cookie", ["cookie_name"]),
    "skip_auth_routes": (["GET=^/ping($"], ["skip_auth_routes"]),
    "allowed_email_domains": (["*.", "gouv fr"],
                              ["allowed_email_domains", "allowed_email_domains"]),
    "allowed_emails": (["alice"], ["allowed_emails"]),
    "allowed_claims": ({"siret": []}, ["allowed_claims"]),
    "session_lifetime": (0, ["session_lifetime"]),
    "proxy_prefix": ("/oauth2/", ["proxy_prefix"]),
    "claim_headers": ({"Host": "email"}, ["claim_headers"]),
    "id_token_signing_algs": (["HS256", "none"],
                              ["id_token_signing_algs", "id_token_signing_algs"]),
    "clock_skew": (-1, ["clock_skew"]),
    "provider_timeout_ms": (10, ["provider_timeout_ms"]),
    "provider_refresh_interval": (5, ["provider_refresh_interval"]),
    "provider_retry_max": (0, ["provider_retry_max"]),
    "jwks_refetch_min_interval": ("30", ["jwks_refetch_min_interval"]),
    "pass_access_token": (1, ["pass_access_token"]),
}


def test_every_problem_is_reported_at_once(make_envoy, make_config):
    """One configuration with a mistake in each key: Envoy does not start
    and the log has one ``invalid configuration: configuration key `X`:``
    line per problem, all from the same start."""
    config = make_config(**{key: value for key, (value, _) in MISTAKES.items()})

    keys, log = refusal(make_envoy, config)

    expected = sorted(k for _, names in MISTAKES.values() for k in names)
    assert sorted(keys) == expected, log[-6000:]
    assert f"configuration refused ({len(expected)} problem(s))" in log


def test_refusal_never_logs_the_secrets(make_envoy, make_config):
    """Neither the client secret nor a (too short) cookie secret appears in
    the log of a refused configuration."""
    config = make_config(
        client_secret=CLIENT_SECRET_MARK,
        cookie_secret=COOKIE_SECRET_MARK,
        session_lifetme=3600,
        provider="proconnect",
        token_endpoint_auth_method="client_secret_basic",
    )

    keys, log = refusal(make_envoy, config)

    assert sorted(keys) == ["cookie_secret", "session_lifetme", "token_endpoint_auth_method"]
    assert CLIENT_SECRET_MARK not in log
    assert COOKIE_SECRET_MARK not in log
    assert COOKIE_SECRET_MARK.rstrip("=") not in log


@pytest.mark.parametrize("text, expected", [
    ("{not json", "(document)"),
    ("[]", "(document)"),
    ("", "(document)"),
], ids=["malformed", "array", "empty"])
def test_configuration_that_is_not_a_json_object_is_refused(make_envoy, text, expected):
    keys, log = refusal(make_envoy, text)
    assert keys == [expected], log[-3000:]


# --------------------------------------------------------------------------
# Options


def test_cookies_are_secure_by_default(make_envoy, make_config):
    """Without ``cookie_secure`` (default true), the login and session
    cookies are ``Secure``.  (A real cookie jar would not send them back
    over plain http: the login cookie is sent by hand here.)"""
    envoy = make_envoy(make_config(cookie_secure=None))
    start = browser().get(envoy.url + "/secure", headers=HTML, allow_redirects=False,
                          timeout=10)
    auth_url = start.headers["Location"]
    state = query(auth_url)["state"]
    login_header = set_cookie(start, f"{COOKIE}_csrf_{state[:16]}")
    name, value, attrs = cookie_attributes(login_header)
    assert "secure" in attrs, login_header
    callback = authorize(auth_url, "alice")

    r = browser().get(callback, headers={**HTML, "Cookie": f"{name}={value}"},
                      allow_redirects=False, timeout=10)

    assert r.status_code == 302, describe(r)
    session = set_cookie(r, COOKIE)
    assert session is not None, set_cookies(r)
    assert "secure" in cookie_attributes(session)[2], session
    assert "secure" in cookie_attributes(set_cookie(r, name))[2]


def test_cookie_name_and_proxy_prefix(make_envoy, make_config, upstream):
    """``cookie_name`` names the session and login cookies; ``proxy_prefix``
    moves Sésame's endpoints (the callback stays at the redirect_uri's
    path), and the old /oauth2/... paths then belong to the application."""
    envoy = make_envoy(make_config(cookie_name="sso", proxy_prefix="/_auth"))
    b = browser()
    auth_url = login_location(b, envoy.url, "/named")
    assert [c.name for c in b.cookies] == [f"sso_csrf_{query(auth_url)['state'][:16]}"]

    r = deliver_callback(b, authorize(auth_url, "alice"))

    assert r.status_code == 302, describe(r)
    assert set_cookie(r, "sso") is not None and set_cookie(r, COOKIE) is None
    info = b.get(envoy.url + "/_auth/userinfo", headers=JSON, timeout=10)
    assert info.status_code == 200 and info.json()["user"] == USERS["alice"]["sub"]
    app = upstream_view(b, envoy.url, "/oauth2/userinfo")
    assert app["path"] == "/oauth2/userinfo"  # the application's own path now
    assert app["headers"]["x-forwarded-email"] == USERS["alice"]["email"]
    out = b.get(envoy.url + "/_auth/sign_out?rd=/", allow_redirects=False, timeout=10)
    assert out.status_code == 302 and not b.cookies.get("sso"), describe(out)


def test_token_and_header_options(make_envoy, make_config):
    """``set_authorization_header``: ``Authorization: Bearer <ID token>``
    (replacing the client's); ``pass_access_token``/``pass_id_token`` false:
    no token headers; a claim header mapped to null is not sent (but a
    client's copy is still removed); an added claim header is sent."""
    envoy = make_envoy(make_config(
        set_authorization_header=True,
        pass_access_token=False,
        pass_id_token=False,
        claim_headers={"X-Auth-Request-User": None, "X-Given-Name": "given_name"},
    ))
    b = logged_in(envoy.url, "alice")

    headers = upstream_view(b, envoy.url, "/options", {
        "Authorization": "Bearer forged",
        "X-Auth-Request-User": "boss",
        "X-Given-Name": "Boss",
        "X-Forwarded-Id-Token": "forged",
    })["headers"]

    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    assert jwt_claims(token)["sub"] == USERS["alice"]["sub"]
    assert "x-forwarded-id-token" not in headers
    assert "x-auth-request-access-token" not in headers
    assert "x-auth-request-user" not in headers
    assert headers["x-forwarded-user"] == USERS["alice"]["sub"]
    assert headers["x-given-name"] == "Alice"
    assert not {"forged", "Bearer forged", "boss", "Boss"} & set(headers.values())


def test_counters_of_the_standard_flow(make_envoy, make_config):
    """One sign-in and one request, counted on a fresh Envoy (absolute
    values): discovery fetched, login started and succeeded, request passed."""
    envoy = make_envoy(make_config())
    counters = Counters(envoy, ticked=True)
    b = logged_in(envoy.url, "bob")
    upstream_view(b, envoy.url, "/counted")

    assert counters.delta() == {"login_started": 1, "login_success": 1,
                                "requests_passed": 1}
    stats = counters.read()
    assert stats["provider_fetch_success"] >= 1
    assert stats.get("provider_fetch_failure", 0) == 0
    assert stats["provider_ready"] == 1
    assert "invalid configuration" not in envoy.log_text(whole=False)


def test_proconnect_provider_defaults(make_envoy, make_config):
    """``provider: proconnect`` without ``scopes`` asks for ProConnect's
    scopes (siret, idp_id...), so the organisation claims reach the
    upstream."""
    envoy = make_envoy(make_config(provider="proconnect", scopes=None))
    b = browser()
    auth_url = login_location(b, envoy.url, "/pc")
    assert query(auth_url)["scope"].split(" ") == [
        "openid", "email", "given_name", "usual_name", "uid", "siret", "idp_id"]

    r = deliver_callback(b, authorize(auth_url, "bob"))

    assert r.status_code == 302, describe(r)
    headers = upstream_view(b, envoy.url, "/pc")["headers"]
    assert headers["x-forwarded-siret"] == USERS["bob"]["siret"]
    assert headers["x-forwarded-idp-id"] == USERS["bob"]["idp_id"]


def test_without_userinfo_only_the_id_token_claims_are_known(make_envoy, make_config, provider):
    """``fetch_userinfo: false``: the userinfo endpoint is not called; the
    provider's thin ID token has no email, so an email rule denies the
    person (the 403 page names the ``sub`` instead)."""
    envoy = make_envoy(make_config(fetch_userinfo=False, allowed_email_domains=["*"]))
    calls_before = provider.log_text().count("GET /me ")
    counters = Counters(envoy)

    r = login(browser(), envoy.url, "alice", "/thin")

    assert r.status_code == 403, describe(r)
    assert USERS["alice"]["sub"] in r.text
    assert counters.delta() == {"login_started": 1, "access_denied": 1}
    assert provider.log_text().count("GET /me ") == calls_before
