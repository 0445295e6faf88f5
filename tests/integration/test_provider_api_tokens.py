"""The local provider's API side (``--api-resources``), checked on its own
(no Envoy): the building blocks that the tests of Sésame's API protection
rely on.

A client (Sésame's credentials) gets access tokens for two resource servers
by the authorization code flow with a ``resource`` parameter:
``https://api.example.fr`` answers JWT access tokens (RFC 9068, ES256) and
``https://opaque.example.fr`` opaque ones.  The opaque ones are checked by
introspection (RFC 7662), answered as JSON or, on request, as a signed JWT
(RFC 9701), encrypted to the client's own key when the provider is told so;
they can be revoked.  Without ``--api-resources`` nothing changes for
sign-ins.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
import requests

from harness import NODE, Provider
from oidc_client import (
    API_RESOURCE,
    CLIENT_ID,
    CLIENT_SECRET,
    INTROSPECTION_JWT,
    OPAQUE_RESOURCE,
    PROVIDER_DIR,
    USERS,
    api_tokens,
    authorize,
    browser,
    describe,
    introspect,
    jose_decrypt,
    jose_verify,
    jwt_claims,
    jwt_header,
    provider_jwks,
    query,
    resource_server_keys,
    revoke_token,
)

REDIRECT_URI = "http://127.0.0.1:10000/oauth2/callback"
ACCESS_TOKEN_TTL = 3600
# What an active opaque API token's introspection answer holds.
INTROSPECTION_FIELDS = {"active", "sub", "scope", "client_id", "aud", "exp", "iat", "iss",
                        "email", "token_type"}


@pytest.fixture(scope="module")
def api_provider() -> Iterator[Provider]:
    """The provider with its resource servers, introspection answered in
    JSON or (on request) as a JWT signed with oidc-provider's default,
    RS256."""
    with Provider(REDIRECT_URI, api_resources=True) as idp:
        yield idp


@pytest.fixture(scope="module")
def es256_provider() -> Iterator[Provider]:
    """The client registered ``introspection_signed_response_alg: ES256``."""
    with Provider(REDIRECT_URI, api_resources=True, introspection_signed_alg="ES256") as idp:
        yield idp


def user_info(provider: Provider, access_token: str) -> requests.Response:
    return browser().get(provider.userinfo_url,
                         headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


# --------------------------------------------------------------------------
# JWT access tokens (https://api.example.fr)


def test_jwt_access_token_header_and_claims(api_provider: Provider) -> None:
    tokens = api_tokens(api_provider)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "api:read"
    assert tokens["expires_in"] == ACCESS_TOKEN_TTL
    assert "id_token" in tokens
    token = tokens["access_token"]

    header = jwt_header(token)
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    kids = {k["kid"]: k for k in provider_jwks(api_provider)["keys"]}
    assert header["kid"] in kids and kids[header["kid"]]["alg"] == "ES256"

    claims = jwt_claims(token)
    assert claims["aud"] == API_RESOURCE
    assert claims["iss"] == api_provider.issuer
    assert claims["sub"] == USERS["alice"]["sub"]
    assert claims["client_id"] == CLIENT_ID
    assert claims["scope"] == "api:read"
    assert claims["email"] == USERS["alice"]["email"]
    assert claims["exp"] - claims["iat"] == ACCESS_TOKEN_TTL
    assert claims["jti"]
    assert set(claims) == {"aud", "iss", "sub", "client_id", "scope", "email", "exp", "iat", "jti"}


def test_jwt_access_token_verifies_against_the_jwks(api_provider: Provider) -> None:
    token = api_tokens(api_provider, "bob", scope="openid api:read api:write")["access_token"]
    header, payload = jose_verify(token, provider_jwks(api_provider), issuer=api_provider.issuer,
                                  audience=API_RESOURCE, typ="at+jwt", algorithms=["ES256"])
    assert header["alg"] == "ES256"
    assert payload["sub"] == USERS["bob"]["sub"]
    assert payload["scope"] == "api:read api:write"
    # Another audience, or a tampered payload, does not verify.
    with pytest.raises(AssertionError, match="aud"):
        jose_verify(token, provider_jwks(api_provider), audience=OPAQUE_RESOURCE)
    head, body, sig = token.split(".")
    forged = jwt_claims(token) | {"scope": "api:read api:write api:admin"}
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    with pytest.raises(AssertionError, match="signature"):
        jose_verify(f"{head}.{body}.{sig}", provider_jwks(api_provider))


def test_api_scopes_only_the_ones_asked_for(api_provider: Provider) -> None:
    tokens = api_tokens(api_provider, "eve", scope="openid api:write")
    assert tokens["scope"] == "api:write"
    assert jwt_claims(tokens["access_token"])["scope"] == "api:write"
    # Scopes of no resource server (email) stay out of the API token.
    tokens = api_tokens(api_provider, scope="openid email api:read")
    assert jwt_claims(tokens["access_token"])["scope"] == "api:read"


def test_unknown_resource_is_refused(api_provider: Provider) -> None:
    params = {
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
        "scope": "openid api:read", "state": "s" * 40, "nonce": "n" * 40,
        "resource": "https://unknown.example.fr",
    }
    back = authorize(f"{api_provider.issuer}/auth?{urlencode(params)}")
    answer = query(back)
    assert answer["error"] == "invalid_target", back
    assert "code" not in answer


# --------------------------------------------------------------------------
# Opaque access tokens (https://opaque.example.fr) and JSON introspection


def test_opaque_access_token_is_not_a_jwt(api_provider: Provider) -> None:
    tokens = api_tokens(api_provider, resource=OPAQUE_RESOURCE)
    token = tokens["access_token"]
    assert tokens["scope"] == "api:read"
    assert "." not in token and len(token) >= 32


def test_json_introspection_of_an_opaque_token(api_provider: Provider) -> None:
    token = api_tokens(api_provider, "bob", OPAQUE_RESOURCE, "openid api:read api:write")["access_token"]
    r = introspect(api_provider, token)
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == INTROSPECTION_FIELDS, body
    assert body["active"] is True
    assert body["sub"] == USERS["bob"]["sub"]
    assert body["email"] == USERS["bob"]["email"]
    assert body["scope"] == "api:read api:write"
    assert body["client_id"] == CLIENT_ID
    assert body["aud"] == OPAQUE_RESOURCE
    assert body["iss"] == api_provider.issuer
    assert body["exp"] - body["iat"] == ACCESS_TOKEN_TTL
    assert body["token_type"] == "Bearer"


def test_json_introspection_of_a_jwt_access_token_is_refused(api_provider: Provider) -> None:
    # oidc-provider introspects only the tokens it stores: JWT access tokens
    # are for local validation.
    token = api_tokens(api_provider)["access_token"]
    r = introspect(api_provider, token)
    assert r.status_code == 400, describe(r)
    assert r.json()["error"] == "unsupported_token_type"
    # Nor revoked; and it is no token for userinfo.
    r = revoke_token(api_provider, token)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_token_type", describe(r)
    assert user_info(api_provider, token).status_code == 401


def test_introspection_of_an_unknown_token(api_provider: Provider) -> None:
    r = introspect(api_provider, "no-such-token-" + "x" * 30)
    assert r.status_code == 200, describe(r)
    assert r.json() == {"active": False}


def test_introspection_needs_the_client_credentials(api_provider: Provider) -> None:
    token = api_tokens(api_provider, resource=OPAQUE_RESOURCE)["access_token"]
    before = api_provider.test_stats()
    r = browser().post(api_provider.introspection_url,
                       data={"token": token, "client_id": CLIENT_ID, "client_secret": "wrong"},
                       timeout=10)
    assert r.status_code == 401, describe(r)
    assert r.json()["error"] == "invalid_client"
    # client_secret_post is enforced (no Authorization: Basic).
    r = browser().post(api_provider.introspection_url, data={"token": token},
                       auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert r.status_code == 401, describe(r)
    assert "client_secret_post" in r.json()["error_description"]
    delta = stats_delta(before, api_provider.test_stats())
    assert delta == {"introspection_requests": 2, "token_client_auth_refused": 1}, delta


def test_introspection_is_counted(api_provider: Provider) -> None:
    token = api_tokens(api_provider, resource=OPAQUE_RESOURCE)["access_token"]
    before = api_provider.test_stats()
    for jwt in (False, True, False):
        assert introspect(api_provider, token, jwt=jwt).status_code == 200
    delta = stats_delta(before, api_provider.test_stats())
    assert delta == {"introspection_requests": 3}, delta
    api_provider.reset_test_state()
    assert api_provider.test_stats()["introspection_requests"] == 0


def test_revoked_opaque_token_is_inactive(api_provider: Provider) -> None:
    token = api_tokens(api_provider, resource=OPAQUE_RESOURCE)["access_token"]
    assert introspect(api_provider, token).json()["active"] is True
    before = api_provider.test_stats()
    r = revoke_token(api_provider, token)
    assert r.status_code == 200, describe(r)
    assert introspect(api_provider, token).json() == {"active": False}
    assert introspect(api_provider, token, jwt=True).status_code == 200
    assert jwt_claims(introspect(api_provider, token, jwt=True).text)["token_introspection"] == {"active": False}
    delta = stats_delta(before, api_provider.test_stats())
    assert delta == {"revocation_requests": 1, "introspection_requests": 3}, delta


def test_sign_in_tokens_are_unchanged_with_api_resources(api_provider: Provider) -> None:
    # No resource parameter: the usual (opaque) access token, for userinfo.
    tokens = api_tokens(api_provider, resource=None, scope="openid email")
    assert "." not in tokens["access_token"]
    r = user_info(api_provider, tokens["access_token"])
    assert r.status_code == 200, describe(r)
    assert jwt_claims(r.text)["email"] == USERS["alice"]["email"]
    body = introspect(api_provider, tokens["access_token"]).json()
    assert body["active"] is True and "aud" not in body and "email" not in body
    # An API token is not one for userinfo.
    api_token = api_tokens(api_provider, resource=OPAQUE_RESOURCE)["access_token"]
    assert user_info(api_provider, api_token).status_code == 403


# --------------------------------------------------------------------------
# JWT introspection answers (RFC 9701)


def check_introspection_jwt(provider: Provider, jws: str, alg: str) -> dict[str, Any]:
    """The introspection JWT verifies against the provider's JWKS; returns its
    ``token_introspection`` claim."""
    header, payload = jose_verify(jws, provider_jwks(provider), issuer=provider.issuer,
                                  audience=CLIENT_ID, typ="token-introspection+jwt",
                                  algorithms=[alg])
    assert header["alg"] == alg
    assert set(payload) == {"token_introspection", "aud", "iss", "iat"}, payload
    return payload["token_introspection"]


def test_jwt_introspection_signed_rs256_by_default(api_provider: Provider) -> None:
    token = api_tokens(api_provider, resource=OPAQUE_RESOURCE)["access_token"]
    r = introspect(api_provider, token, jwt=True)
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].split(";")[0] == INTROSPECTION_JWT
    answer = check_introspection_jwt(api_provider, r.text, "RS256")
    assert answer == introspect(api_provider, token).json()
    assert answer["active"] is True and answer["aud"] == OPAQUE_RESOURCE


def test_jwt_introspection_signed_es256(es256_provider: Provider) -> None:
    token = api_tokens(es256_provider, "bob", OPAQUE_RESOURCE)["access_token"]
    r = introspect(es256_provider, token, jwt=True)
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].split(";")[0] == INTROSPECTION_JWT
    assert len(r.text.split(".")) == 3
    answer = check_introspection_jwt(es256_provider, r.text, "ES256")
    assert set(answer) == INTROSPECTION_FIELDS
    assert answer["sub"] == USERS["bob"]["sub"] and answer["scope"] == "api:read"
    # JSON is still served when asked for.
    r = introspect(es256_provider, token)
    assert r.status_code == 200 and r.json()["active"] is True


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RSA-OAEP-256"), ("ec", "ECDH-ES")])
def test_jwt_introspection_encrypted_to_the_client(kind: str, alg: str) -> None:
    private, public = resource_server_keys(kind)
    assert "d" in private and "d" not in public and private["kid"] == public["kid"]
    with Provider(REDIRECT_URI, api_resources=True, introspection_signed_alg="ES256",
                  introspection_encryption=alg, client_jwks={"keys": [public]}) as idp:
        token = api_tokens(idp, "alice", OPAQUE_RESOURCE, "openid api:read api:write")["access_token"]
        # The client must ask for the JWT form.
        r = introspect(idp, token)
        assert r.status_code == 400, describe(r)
        assert r.json()["error"] == "invalid_request"

        r = introspect(idp, token, jwt=True)
        assert r.status_code == 200, describe(r)
        assert r.headers["Content-Type"].split(";")[0] == INTROSPECTION_JWT
        assert len(r.text.split(".")) == 5
        header = jwt_header(r.text)
        assert header["alg"] == alg and header["enc"] == "A256GCM"
        assert header["kid"] == public["kid"] and header["cty"] == "JWT"

        header, inner = jose_decrypt(r.text, private)
        answer = check_introspection_jwt(idp, inner, "ES256")
        assert set(answer) == INTROSPECTION_FIELDS
        assert answer["active"] is True and answer["scope"] == "api:read api:write"
        assert answer["email"] == USERS["alice"]["email"]

        # Another key cannot read it.
        other, _ = resource_server_keys(kind)
        with pytest.raises(AssertionError, match="jose-tool"):
            jose_decrypt(r.text, other)

        # Revoked: still a JWE, saying inactive.
        assert revoke_token(idp, token).status_code == 200
        _, inner = jose_decrypt(introspect(idp, token, jwt=True).text, private)
        assert check_introspection_jwt(idp, inner, "ES256") == {"active": False}


def test_proconnect_mode_with_api_resources() -> None:
    # ProConnect mode then accepts `resource`; everything is under the issuer path.
    with Provider(REDIRECT_URI, api_resources=True, proconnect=True, issuer_path="/api/v2") as idp:
        token = api_tokens(idp, resource=API_RESOURCE)["access_token"]
        _, payload = jose_verify(token, provider_jwks(idp), issuer=idp.issuer, audience=API_RESOURCE)
        assert payload["iss"].endswith("/api/v2")
        token = api_tokens(idp, "bob", OPAQUE_RESOURCE)["access_token"]
        assert idp.introspection_url.startswith(idp.issuer + "/")
        body = introspect(idp, token).json()
        assert body["active"] is True and body["sub"] == USERS["bob"]["sub"]


# --------------------------------------------------------------------------
# Without --api-resources (the default): as before


def test_default_provider_has_no_api_side(provider: Provider) -> None:
    discovery = browser().get(provider.discovery_url, timeout=10).json()
    assert "introspection_endpoint" not in discovery
    r = browser().post(provider.introspection_url,
                       data={"token": "x", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                       timeout=10)
    assert r.status_code == 404, describe(r)
    tokens = api_tokens(provider, resource=None, scope="openid email")
    r = user_info(provider, tokens["access_token"])
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].startswith("application/jwt")
    assert jwt_claims(r.text)["sub"] == USERS["alice"]["sub"]


# --------------------------------------------------------------------------
# Command line and key generation


@pytest.mark.parametrize(("args", "message"), [
    (["--introspection-signed-alg", "ES256"], "needs --api-resources"),
    (["--api-resources", "--introspection-signed-alg", "HS256"], "must be ES256 or RS256"),
    (["--api-resources", "--introspection-encryption", "A128KW"], "must be RSA-OAEP-256 or ECDH-ES"),
    (["--api-resources", "--introspection-encryption", "ECDH-ES"], "needs --client-jwks"),
    (["--api-resources", "--client-jwks", "/dev/null"], "only used with --introspection-encryption"),
])
def test_bad_api_flags_are_refused(args: list[str], message: str) -> None:
    done = subprocess.run([NODE, str(PROVIDER_DIR / "server.mjs"), "--port", "0", *args],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize(("alg", "keys", "message"), [
    ("ECDH-ES", "rsa", "no key to encrypt to with ECDH-ES"),
    ("RSA-OAEP-256", "ec", "no key to encrypt to with RSA-OAEP-256"),
    ("RSA-OAEP-256", "private", "PUBLIC keys only"),
])
def test_unusable_client_jwks_are_refused(tmp_path: Path, alg: str, keys: str, message: str) -> None:
    private, public = resource_server_keys("ec" if keys == "ec" else "rsa")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [private if keys == "private" else public]}))
    done = subprocess.run([NODE, str(PROVIDER_DIR / "server.mjs"), "--port", "0", "--api-resources",
                           "--introspection-encryption", alg, "--client-jwks", str(path)],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize(("kind", "kty", "alg"), [("rsa", "RSA", "RSA-OAEP-256"), ("ec", "EC", "ECDH-ES")])
def test_resource_server_keys(kind: str, kty: str, alg: str) -> None:
    private, public = resource_server_keys(kind)
    for jwk in (private, public):
        assert jwk["kty"] == kty and jwk["alg"] == alg and jwk["use"] == "enc"
    assert private["kid"] == public["kid"]
    assert "d" in private and "d" not in public
    if kty == "EC":
        assert public["crv"] == "P-256"
    else:
        modulus = public["n"] + "=" * (-len(public["n"]) % 4)
        assert len(base64.urlsafe_b64decode(modulus)) == 256
