"""API access through the real Envoy: scripts calling routes with bearer
tokens issued by the real provider — JWT access tokens checked locally,
opaque ones introspected (JSON, signed JWT, encrypted JWT) — next to browser
routes on the same Envoy.

The provider runs with ``--api-resources``: resource ``https://api.example.fr``
gets JWT access tokens, ``https://opaque.example.fr`` opaque ones, both with
scopes ``api:read api:write``. Tokens are obtained by the script itself, with
the authorization code flow as the client, for a given user.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable, Iterator

import pytest
import requests

from conftest import CALLBACK_PATH
from harness import Envoy, Provider
from oidc_client import (
    COOKIE,
    JSON,
    USERS,
    Counters,
    api_tokens,
    assert_not_upstream,
    describe,
    logged_in,
    raw_get,
    resource_server_keys,
    revoke_token,
    sesame_config,
    unique_path,
)

JWT_RESOURCE = "https://api.example.fr"
OPAQUE_RESOURCE = "https://opaque.example.fr"

# alice and bob may use the API; eve may sign in at the provider but not here.
API_PEOPLE = {"sub": [USERS["alice"]["sub"], USERS["bob"]["sub"]]}

ROUTES = [
    {"path": "^/api/write/", "mode": "bearer", "scopes": ["api:write"],
     "allowed_claims": API_PEOPLE},
    {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"], "allowed_claims": API_PEOPLE},
    {"path": "^/app/", "mode": "session_or_bearer", "scopes": ["api:read"],
     "allowed_claims": API_PEOPLE},
    {"methods": ["GET"], "path": "^/health$", "mode": "public"},
]


def api_config(provider: Provider, envoy_port: int, audience: str, **changes: Any) -> dict:
    return sesame_config(
        provider.issuer,
        f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}",
        routes=ROUTES,
        bearer_audience=audience,
        pass_access_token=True,
        **changes,
    )


@pytest.fixture(scope="module")
def api_provider(envoy_port: int) -> Iterator[Provider]:
    with Provider(redirect_uris=[f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}"],
                  api_resources=True) as idp:
        yield idp


@pytest.fixture
def api_envoy(make_envoy: Callable[..., Envoy], envoy_port: int,
              api_provider: Provider) -> Callable[..., Envoy]:
    def make(audience: str = JWT_RESOURCE, provider: Provider | None = None,
             **changes: Any) -> Envoy:
        idp = provider or api_provider
        return make_envoy(api_config(idp, envoy_port, audience, **changes),
                          provider_port=idp.port)

    return make


def call(envoy: Envoy, path: str, token: str | None, **headers: str):
    sent = dict(JSON)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers)
    return raw_get(envoy.url, path, None, sent)


def stats_delta(provider: Provider, before: dict[str, int]) -> dict[str, int]:
    after = provider.test_stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_jwt_access_token_reaches_the_api_with_identity_headers(api_envoy, api_provider):
    envoy = api_envoy()
    token = api_tokens(api_provider, "alice", JWT_RESOURCE, "openid api:read")["access_token"]
    assert token.count(".") == 2, "the provider should issue a JWT access token here"
    counters = Counters(envoy, ticked=True)
    stats = api_provider.test_stats()
    path = unique_path("/api/items")

    r = call(envoy, path, token, **{"X-Forwarded-User": "mallory"})

    assert r.status_code == 200, describe(r)
    seen = r.json()["headers"]
    assert seen["x-forwarded-user"] == USERS["alice"]["sub"]
    assert seen["authorization"] == f"Bearer {token}"
    assert seen["x-auth-request-access-token"] == token
    # Checked locally: the provider was not asked.
    for _ in range(5):
        assert call(envoy, path, token).status_code == 200
    assert "introspection_requests" not in stats_delta(api_provider, stats)
    assert counters.delta() == {"bearer_passed": 6}


def test_bad_tokens_are_refused_and_never_reach_the_api(api_envoy, api_provider, upstream):
    envoy = api_envoy()
    read_only = api_tokens(api_provider, "bob", JWT_RESOURCE, "openid api:read")["access_token"]
    eve = api_tokens(api_provider, "eve", JWT_RESOURCE, "openid api:read")["access_token"]
    head, payload, signature = read_only.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    path = unique_path("/api/write/x")

    cases = [
        (None, path, 401, None),
        ("not-a-jwt-and-unknown", unique_path("/api/y"), 401, "invalid_token"),
        (forged, unique_path("/api/y"), 401, "invalid_token"),
        (read_only, path, 403, "insufficient_scope"),
    ]
    for token, target, status, error in cases:
        r = call(envoy, target, token)
        assert r.status_code == status, (token, describe(r))
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="sesame"'), challenge
        if error:
            assert f'error="{error}"' in challenge, challenge
        else:
            assert "error=" not in challenge, challenge
        assert_not_upstream(upstream, target)
    assert 'scope="api:write"' in call(envoy, path, read_only).headers["WWW-Authenticate"]

    # A valid token of someone the route does not admit.
    target = unique_path("/api/z")
    r = call(envoy, target, eve)
    assert r.status_code == 403, describe(r)
    assert r.json()["error"] == "access_denied"
    assert_not_upstream(upstream, target)


def test_token_for_another_audience_is_refused(api_envoy, api_provider):
    envoy = api_envoy(audience="https://another-service.example.fr")
    token = api_tokens(api_provider, "alice", JWT_RESOURCE, "openid api:read")["access_token"]
    r = call(envoy, unique_path("/api/x"), token)
    assert r.status_code == 401, describe(r)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert Counters(envoy).read().get("bearer_refused.wrong_audience") == 1


def test_opaque_token_is_introspected_once_for_many_requests(api_envoy, api_provider):
    envoy = api_envoy(audience=OPAQUE_RESOURCE)
    token = api_tokens(api_provider, "alice", OPAQUE_RESOURCE, "openid api:read")["access_token"]
    assert token.count(".") != 2, "the provider should issue an opaque token here"
    stats = api_provider.test_stats()

    for _ in range(20):
        r = call(envoy, unique_path("/api/items"), token)
        assert r.status_code == 200, describe(r)
        assert r.json()["headers"]["x-forwarded-user"] == USERS["alice"]["sub"]

    assert stats_delta(api_provider, stats) == {"introspection_requests": 1}


def test_revoked_opaque_token_is_refused(api_envoy, api_provider, upstream):
    envoy = api_envoy(audience=OPAQUE_RESOURCE)
    token = api_tokens(api_provider, "alice", OPAQUE_RESOURCE, "openid api:read")["access_token"]
    revoke_token(api_provider, token)
    path = unique_path("/api/items")

    r = call(envoy, path, token)

    assert r.status_code == 401, describe(r)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert_not_upstream(upstream, path)
    assert Counters(envoy).read().get("bearer_refused.inactive_token") == 1


def test_a_body_waits_with_its_request_while_the_token_is_introspected(api_envoy, api_provider,
                                                                       upstream):
    """A request whose opaque token is being introspected waits with its
    body, sent in chunks while Sésame waits: a refused token's request never
    reaches the API, body or not, and an admitted one's body arrives whole."""
    envoy = api_envoy(audience=OPAQUE_RESOURCE)
    body = os.urandom(300_000)

    def chunks():
        for at in range(0, len(body), 16_384):
            yield body[at:at + 16_384]

    refused = api_tokens(api_provider, "alice", OPAQUE_RESOURCE, "openid api:write")["access_token"]
    revoke_token(api_provider, refused)
    path = unique_path("/api/write/upload")
    r = requests.post(envoy.url + path, data=chunks(), timeout=10,
                      headers={**JSON, "Authorization": f"Bearer {refused}"})
    assert r.status_code == 401, describe(r)
    assert_not_upstream(upstream, path)

    admitted = api_tokens(api_provider, "bob", OPAQUE_RESOURCE, "openid api:write")["access_token"]
    path = unique_path("/api/write/upload")
    r = requests.post(envoy.url + path, data=chunks(), timeout=10,
                      headers={**JSON, "Authorization": f"Bearer {admitted}"})
    assert r.status_code == 200, describe(r)
    assert r.json()["body"] == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("encryption", [None, "RSA-OAEP-256", "ECDH-ES"])
def test_signed_and_encrypted_introspection(make_envoy, envoy_port, encryption):
    """The provider answers introspection as a signed JWT (RFC 9701), and
    encrypted to Sésame's key when asked; Sésame decrypts, verifies and
    admits. With a key the provider did not encrypt to, nothing passes."""
    kind = {"RSA-OAEP-256": "rsa", "ECDH-ES": "ec"}.get(encryption or "")
    private, public = resource_server_keys(kind) if kind else (None, None)
    with Provider(redirect_uris=[f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}"],
                  api_resources=True, introspection_signed_alg="ES256",
                  introspection_encryption=encryption,
                  client_jwks={"keys": [public]} if public else None) as idp:
        changes: dict[str, Any] = {"introspection_format": "jwt"}
        if private:
            changes["resource_server_key"] = private
        envoy = make_envoy(api_config(idp, envoy_port, OPAQUE_RESOURCE, **changes),
                           provider_port=idp.port)
        token = api_tokens(idp, "bob", OPAQUE_RESOURCE, "openid api:read")["access_token"]

        r = call(envoy, unique_path("/api/items"), token)

        assert r.status_code == 200, describe(r)
        assert r.json()["headers"]["x-forwarded-user"] == USERS["bob"]["sub"]
        if private:
            served = raw_get(envoy.url, "/oauth2/jwks").json()
            assert served["keys"][0]["kid"] == public["kid"]
            assert "d" not in served["keys"][0]
            envoy.stop()
            other_private, _ = resource_server_keys(kind)
            other = make_envoy(api_config(idp, envoy_port, OPAQUE_RESOURCE,
                                          introspection_format="jwt",
                                          resource_server_key=other_private),
                               provider_port=idp.port)
            r = call(other, unique_path("/api/items"), token)
            assert r.status_code == 502, describe(r)
            assert Counters(other).read().get("bearer_refused.introspection_invalid") == 1


def test_browser_and_api_routes_on_one_envoy(api_envoy, api_provider, upstream):
    """The same Envoy: a browser with a session and a script with a token on
    the mixed route, the public health check, and a bearer-only route that a
    session cookie does not open."""
    envoy = api_envoy()
    b = logged_in(envoy.url, "alice", "/app/home")
    token = api_tokens(api_provider, "bob", JWT_RESOURCE, "openid api:read")["access_token"]

    page = b.get(envoy.url + "/app/home", headers=JSON, allow_redirects=False, timeout=10)
    script = call(envoy, "/app/home", token)
    health = raw_get(envoy.url, "/health", None, JSON)
    api_path = unique_path("/api/items")
    cookie_only = raw_get(envoy.url, api_path, f"{COOKIE}={b.cookies[COOKIE]}", JSON)

    assert page.status_code == 200, describe(page)
    assert page.json()["headers"]["x-forwarded-user"] == USERS["alice"]["sub"]
    assert script.status_code == 200, describe(script)
    assert script.json()["headers"]["x-forwarded-user"] == USERS["bob"]["sub"]
    assert health.status_code == 200, describe(health)
    assert cookie_only.status_code == 401, describe(cookie_only)
    assert "Location" not in cookie_only.headers
    assert_not_upstream(upstream, api_path)


def test_expired_token_is_refused_even_after_it_was_cached(make_envoy, envoy_port):
    """A JWT access token of 2 s: accepted while valid (and remembered), then
    refused once expired — the cache never outlives the token's ``exp``."""
    with Provider(redirect_uris=[f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}"],
                  api_resources=True, extra_args=["--access-token-ttl", "2"]) as idp:
        envoy = make_envoy(api_config(idp, envoy_port, JWT_RESOURCE, clock_skew=0),
                           provider_port=idp.port)
        token = api_tokens(idp, "alice", JWT_RESOURCE, "openid api:read")["access_token"]
        issued = time.time()
        assert call(envoy, unique_path("/api/items"), token).status_code == 200

        time.sleep(max(0.0, issued + 3.2 - time.time()))  # past exp (a wall-clock matter)
        r = call(envoy, unique_path("/api/items"), token)

        assert r.status_code == 401, describe(r)
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        assert Counters(envoy).read().get("bearer_refused.expired_token") == 1
