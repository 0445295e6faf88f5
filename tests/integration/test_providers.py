"""Other provider set-ups: a provider that signs with RS256 and requires
``client_secret_basic`` at its token endpoint (the session provider signs
with ES256 and requires ``client_secret_post``), and the settings that must
match it; a provider that signs with ES384.
"""

from __future__ import annotations

import pytest

from harness import Provider
from oidc_client import (
    USERS,
    Counters,
    assert_not_upstream,
    browser,
    describe,
    jwt_header,
    logged_in,
    login,
    provider_jwks,
    session_cookie_sets,
    sesame_config,
    unique_path,
    upstream_view,
)


@pytest.fixture(scope="module")
def rs256_basic_provider(envoy_port):
    """A provider signing with RS256 that only accepts client_secret_basic."""
    with Provider(
        redirect_uris=[f"http://127.0.0.1:{envoy_port}/oauth2/callback"],
        alg="RS256",
        auth_method="client_secret_basic",
    ) as idp:
        yield idp


def signed_in_bob_with(envoy, path: str) -> dict:
    """Signs bob in through ``envoy``, checks that the upstream got his email
    on ``path``, and returns the JOSE header of the ID token it was passed."""
    headers = upstream_view(logged_in(envoy.url, "bob"), envoy.url, path)["headers"]
    assert headers["x-forwarded-email"] == USERS["bob"]["email"]
    return jwt_header(headers["x-forwarded-id-token"])


@pytest.fixture
def config_for(rs256_basic_provider, envoy_port):
    def make(**changes):
        return sesame_config(rs256_basic_provider.issuer,
                             f"http://127.0.0.1:{envoy_port}/oauth2/callback",
                             **{"pass_id_token": True, **changes})
    return make


def test_client_secret_basic_and_rs256(make_envoy, config_for, rs256_basic_provider):
    """With ``token_endpoint_auth_method: client_secret_basic`` Sésame signs
    in against that provider, and checks its RS256 ID token."""
    envoy = make_envoy(config_for(token_endpoint_auth_method="client_secret_basic"),
                       provider_port=rs256_basic_provider.port)
    assert signed_in_bob_with(envoy, "/rs256")["alg"] == "RS256"
    assert "POST /token 200" in rs256_basic_provider.log_text()


def test_wrong_token_endpoint_auth_method_fails_cleanly(
        make_envoy, config_for, rs256_basic_provider, upstream):
    """Control: client_secret_post against this provider is refused by its
    token endpoint; Sésame shows a 502 page (``token_endpoint_error``), no
    session, nothing upstream."""
    envoy = make_envoy(config_for(token_endpoint_auth_method="client_secret_post"),
                       provider_port=rs256_basic_provider.port)
    path = unique_path("/post")
    counters = Counters(envoy)

    r = login(browser(), envoy.url, "alice", path)

    assert r.status_code == 502, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert not session_cookie_sets(r)
    assert counters.delta() == {"login_started": 1, "login_failure.token_endpoint_error": 1}
    assert_not_upstream(upstream, path)


def test_id_token_algorithm_not_allowed_is_refused(
        make_envoy, config_for, rs256_basic_provider, upstream):
    """Control: with ``id_token_signing_algs: ["ES256"]`` the RS256 ID token
    is refused (401 page, ``login_failure.id_token_invalid``)."""
    envoy = make_envoy(config_for(token_endpoint_auth_method="client_secret_basic",
                                  id_token_signing_algs=["ES256"]),
                       provider_port=rs256_basic_provider.port)
    path = unique_path("/alg")
    counters = Counters(envoy)

    r = login(browser(), envoy.url, "alice", path)

    assert r.status_code == 401, describe(r)
    assert not session_cookie_sets(r)
    assert counters.delta() == {"login_started": 1, "login_failure.id_token_invalid": 1}
    assert_not_upstream(upstream, path)


def test_es384_id_token_and_userinfo(make_envoy, envoy_port):
    """A provider that signs its ID tokens and userinfo with ES384 (P-384):
    Sésame signs in against it through Envoy, with the provider's P-384 key,
    and passes the identity on (an ID token it does not accept fails the
    sign-in: the control above)."""
    callback = f"http://127.0.0.1:{envoy_port}/oauth2/callback"
    with Provider(redirect_uris=[callback], alg="ES384") as idp:
        jwks = provider_jwks(idp)
        p384_kids = [k["kid"] for k in jwks["keys"] if k.get("crv") == "P-384"]
        envoy = make_envoy(sesame_config(idp.issuer, callback, pass_id_token=True),
                           provider_port=idp.port)
        header = signed_in_bob_with(envoy, "/es384")

    assert header["alg"] == "ES384"
    assert header["kid"] in p384_kids, (header, jwks)
