"""Sésame as the ProConnect relying party of the OpenGateLLM Playground (in
place of oauth2-proxy), through a real Envoy, against the local provider in
ProConnect mode (``--proconnect --issuer-path /api/v2``): a provider that
refuses ``client_secret_basic``, unknown authorization parameters and a
state or nonce shorter than 32 characters, signs its userinfo, knows the
eIDAS acr values and logs out without a confirmation page.

The shared ``proconnect_envoy`` has the Playground's configuration
(``oidc_client.proconnect_config``); tests that need another one start their
own with ``make_proconnect_envoy(**changes)``.  What the provider received
is read from its test endpoints (``last_authorize()``, ``last_end_session()``,
``test_stats()``), always as a change since the test began.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest

from oidc_client import (
    CLIENT_ID,
    CLIENT_SECRET,
    COOKIE,
    HTML,
    JSON,
    PROCONNECT_SCOPES,
    USERS,
    Counters,
    assert_not_upstream,
    authorize,
    browser,
    deliver_callback,
    describe,
    is_clearing,
    jwt_claims,
    logged_in,
    login,
    login_location,
    provider_logout,
    query,
    session_cookie_sets,
    set_cookie,
    set_cookies,
    start_login,
    unique_path,
    upstream_mark,
    upstream_paths,
    upstream_view,
)

# The parameters ProConnect's authorization endpoint accepts (any other one
# is an error there).
PROCONNECT_AUTHORIZE_PARAMS = {
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "claims", "prompt", "idp_hint", "login_hint", "siret_hint", "acr_values",
    "code_challenge", "code_challenge_method",
}
# What Sésame sends without hints, acr_values or claims.
BASE_AUTHORIZE_PARAMS = {
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method",
}
URLSAFE_43 = re.compile(r"[A-Za-z0-9_-]{43}")
CONFIG_LINE = re.compile(r"invalid configuration: configuration key `([^`]+)`: (.*)$")


def stats_delta(provider, before: dict[str, int]) -> dict[str, int]:
    """The provider's counters that changed since ``before``."""
    after = provider.test_stats()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def assert_signed_in_upstream(b, envoy, user: str) -> dict[str, str]:
    """``b`` reaches the upstream as ``user``; returns the headers it saw."""
    headers = upstream_view(b, envoy.url, unique_path("/as"))["headers"]
    assert headers["x-forwarded-email"] == USERS[user]["email"]
    return headers


@pytest.fixture(scope="module")
def alice(proconnect_envoy):
    """A browser signed in as alice on the shared ProConnect Envoy."""
    return logged_in(proconnect_envoy.url, "alice")


# --------------------------------------------------------------------------
# 1. A complete ProConnect sign-in


def test_proconnect_sign_in_passes_identity_as_oauth2_proxy_would(
        proconnect_envoy, proconnect_provider, upstream):
    """A navigation goes to ``/api/v2/auth`` with only parameters ProConnect
    accepts (state and nonce of 43 characters, PKCE S256, ProConnect's
    default scopes); the provider refuses nothing; after the callback the
    upstream receives oauth2-proxy's identity headers, the ID token (issuer
    with ``/api/v2``) also as ``Authorization: Bearer`` (a forged one is
    replaced), the access token and the ProConnect claims as headers."""
    issuer = proconnect_provider.issuer
    assert issuer.endswith("/api/v2")
    path = unique_path("/chat")
    b = browser()
    stats = proconnect_provider.test_stats()
    counters = Counters(proconnect_envoy)

    auth_url = login_location(b, proconnect_envoy.url, path)
    assert auth_url.startswith(issuer + "/auth?"), auth_url
    callback = authorize(auth_url, "alice")
    assert "code" in query(callback) and "error" not in query(callback), callback
    done = deliver_callback(b, callback)

    assert done.status_code == 302 and done.headers["Location"] == path, describe(done)
    assert b.cookies.get(COOKIE)
    assert counters.delta() == {"login_started": 1, "login_success": 1}

    sent = proconnect_provider.last_authorize()
    assert set(sent) == BASE_AUTHORIZE_PARAMS, sent
    assert set(sent) <= PROCONNECT_AUTHORIZE_PARAMS
    assert sent == query(auth_url)
    assert sent["response_type"] == "code"
    assert sent["client_id"] == CLIENT_ID
    assert sent["redirect_uri"] == proconnect_envoy.url + "/oauth2/callback"
    assert sent["scope"].split(" ") == PROCONNECT_SCOPES
    assert len(sent["state"]) >= 32 and URLSAFE_43.fullmatch(sent["state"])
    assert len(sent["nonce"]) >= 32 and URLSAFE_43.fullmatch(sent["nonce"])
    assert sent["code_challenge_method"] == "S256"
    assert URLSAFE_43.fullmatch(sent["code_challenge"])
    assert stats_delta(proconnect_provider, stats) == {"authorize_requests": 1}

    headers = upstream_view(b, proconnect_envoy.url, path,
                            {"Authorization": "Bearer forged.by.client"})["headers"]

    alice_ = USERS["alice"]
    assert headers["x-forwarded-email"] == alice_["email"]
    assert headers["x-auth-request-email"] == alice_["email"]
    assert headers["x-forwarded-user"] == alice_["sub"]
    assert headers["x-auth-request-user"] == alice_["sub"]
    assert headers["x-forwarded-siret"] == alice_["siret"]
    assert headers["x-forwarded-idp-id"] == alice_["idp_id"]
    assert headers["x-forwarded-uid"] == "alice"
    assert headers["x-forwarded-given-name"] == "Alice"
    assert headers["x-forwarded-usual-name"] == "Martin"
    id_token = headers["x-forwarded-id-token"]
    claims = jwt_claims(id_token)
    assert claims["iss"] == issuer
    assert claims["sub"] == alice_["sub"]
    assert claims["aud"] == CLIENT_ID
    assert claims["nonce"] == sent["nonce"]
    assert headers["authorization"] == f"Bearer {id_token}"
    assert "forged.by.client" not in json.dumps(headers)
    access_token = headers["x-auth-request-access-token"]
    assert access_token and access_token != id_token
    assert path in upstream_paths(upstream)


def test_userinfo_endpoint_names_the_person_from_given_and_usual_name(
        proconnect_envoy, alice):
    """ProConnect has no ``name`` claim: ``/oauth2/userinfo`` builds it from
    ``given_name`` and ``usual_name`` (claims that came from the signed
    userinfo, not the thin ID token)."""
    r = alice.get(proconnect_envoy.url + "/oauth2/userinfo", headers=JSON,
                  allow_redirects=False, timeout=10)

    assert r.status_code == 200, describe(r)
    assert r.json() == {"user": USERS["alice"]["sub"], "email": USERS["alice"]["email"],
                        "name": "Alice Martin"}


# --------------------------------------------------------------------------
# 2. Access rules with ProConnect identities


def assert_denied_page(envoy, upstream, user: str, lang_headers=None) -> str:
    """``user`` signs in at the provider and gets Sésame's 403 page (no
    session, nothing upstream, ``access_denied``); returns its text."""
    b = browser()
    path = unique_path("/denied")
    auth_url = login_location(b, envoy.url, path)
    callback = authorize(auth_url, user)
    counters = Counters(envoy)

    r = deliver_callback(b, callback, {**HTML, **(lang_headers or {})})

    assert r.status_code == 403, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert USERS[user]["email"] in r.text
    assert 'href="/oauth2/sign_out?rd=/oauth2/sign_in%3Fprompt%3Dlogin"' in r.text
    assert not session_cookie_sets(r), set_cookies(r)
    assert is_clearing(set_cookie(r, f"{COOKIE}_csrf_{query(auth_url)['state'][:16]}"))
    assert counters.delta() == {"access_denied": 1}
    assert_not_upstream(upstream, path)
    return r.text


def test_gouv_fr_domains_admit_alice_and_bob(proconnect_envoy):
    """``allowed_email_domains: ["*.gouv.fr"]``: numerique.gouv.fr and
    interieur.gouv.fr are in."""
    for user in ("alice", "bob"):
        assert_signed_in_upstream(logged_in(proconnect_envoy.url, user), proconnect_envoy, user)


def test_outside_gouv_fr_gets_a_french_403_page(proconnect_envoy, upstream):
    """eve (example.com) gets the 403 page, in French by default, naming her
    address, with a link to sign out and change account."""
    text = assert_denied_page(proconnect_envoy, upstream, "eve")

    assert '<html lang="fr"' in text
    assert "Accès refusé" in text
    assert "Se déconnecter et changer de compte" in text


def test_403_page_is_in_english_for_an_english_browser(proconnect_envoy, upstream):
    """The same refusal with ``Accept-Language: en`` is in English."""
    text = assert_denied_page(proconnect_envoy, upstream, "eve", {"Accept-Language": "en"})

    assert '<html lang="en"' in text
    assert "Access denied" in text
    assert "Accès refusé" not in text


def test_allowed_emails_with_proconnect(make_proconnect_envoy, upstream):
    """``allowed_emails`` alone: bob is in, alice (same ``*.gouv.fr``) is not."""
    envoy = make_proconnect_envoy(allowed_email_domains=None,
                                  allowed_emails=["bob.durand@interieur.gouv.fr"])
    assert_signed_in_upstream(logged_in(envoy.url, "bob"), envoy, "bob")
    assert_denied_page(envoy, upstream, "alice")


def test_allowed_claims_siret_with_proconnect(make_proconnect_envoy, upstream):
    """``allowed_claims.siret`` (a claim only ProConnect's userinfo carries):
    alice's organisation is in, bob's is not, whatever the domain."""
    envoy = make_proconnect_envoy(allowed_email_domains=None,
                                  allowed_claims={"siret": [USERS["alice"]["siret"]]})
    assert_signed_in_upstream(logged_in(envoy.url, "alice"), envoy, "alice")
    assert_denied_page(envoy, upstream, "bob")


def test_allowed_claims_idp_id_with_proconnect(make_proconnect_envoy, upstream):
    """``allowed_claims.idp_id``: people of the listed identity providers
    only (eve's ``other-idp`` admitted, whatever her domain; alice's
    ``fia1v2`` not)."""
    envoy = make_proconnect_envoy(allowed_email_domains=None,
                                  allowed_claims={"idp_id": ["fia2v2", "other-idp"]})
    assert_signed_in_upstream(logged_in(envoy.url, "eve"), envoy, "eve")
    assert_signed_in_upstream(logged_in(envoy.url, "bob"), envoy, "bob")
    assert_denied_page(envoy, upstream, "alice")


# --------------------------------------------------------------------------
# 3. ACR (eIDAS levels) and the claims request


@pytest.fixture
def eidas2_envoy(make_proconnect_envoy):
    return make_proconnect_envoy(acr_values=["eidas2"])


def test_acr_values_are_sent_to_the_provider(eidas2_envoy, proconnect_provider):
    """``acr_values: ["eidas2"]`` adds ``acr_values=eidas2`` to the
    authorization request, which the provider accepts."""
    stats = proconnect_provider.test_stats()
    b = browser()
    auth_url = login_location(b, eidas2_envoy.url, "/acr")

    assert query(auth_url)["acr_values"] == "eidas2"
    callback = authorize(auth_url, "alice")
    sent = proconnect_provider.last_authorize()
    assert sent["acr_values"] == "eidas2"
    assert set(sent) == BASE_AUTHORIZE_PARAMS | {"acr_values"}
    assert stats_delta(proconnect_provider, stats) == {"authorize_requests": 1}
    assert deliver_callback(b, callback).status_code == 302


def test_lower_acr_than_required_is_refused(eidas2_envoy, upstream):
    """The person signs in with eidas1 although eidas2 was asked for (the
    provider lets it happen; refusing is the relying party's job): Sésame's
    403 page "Niveau d’authentification insuffisant", counted
    ``login_failure.acr_not_satisfied``, no session, nothing upstream."""
    b = browser()
    path = unique_path("/acr-low")
    auth_url = login_location(b, eidas2_envoy.url, path)
    callback = authorize(auth_url, "alice", acr="eidas1")
    counters = Counters(eidas2_envoy)

    r = deliver_callback(b, callback)

    assert r.status_code == 403, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert "Niveau d’authentification insuffisant" in r.text
    assert "acr_not_satisfied" in r.text
    assert "/oauth2/sign_in?rd=" in r.text
    assert not session_cookie_sets(r), set_cookies(r)
    assert is_clearing(set_cookie(r, f"{COOKIE}_csrf_{query(auth_url)['state'][:16]}"))
    assert not b.cookies.get(COOKIE)
    assert counters.delta() == {"login_failure.acr_not_satisfied": 1}
    assert 'login failed (acr_not_satisfied): acr "eidas1" is not among eidas2' \
        in eidas2_envoy.log_text()
    assert b.get(eidas2_envoy.url + path, headers=JSON, timeout=10).status_code == 401
    assert_not_upstream(upstream, path)


@pytest.mark.parametrize("acr", ["eidas2", None], ids=["chosen", "as-requested"])
def test_required_acr_signs_in(eidas2_envoy, acr):
    """Signing in with eidas2 (chosen, or "as requested") is accepted; the
    ID token passed on says eidas2."""
    b = browser()
    callback = authorize(login_location(b, eidas2_envoy.url, "/acr-ok"), "bob", acr=acr)
    done = deliver_callback(b, callback)

    assert done.status_code == 302 and done.headers["Location"] == "/acr-ok", describe(done)
    headers = assert_signed_in_upstream(b, eidas2_envoy, "bob")
    assert jwt_claims(headers["x-forwarded-id-token"])["acr"] == "eidas2"


def test_claims_request_is_forwarded(make_proconnect_envoy, proconnect_provider):
    """``claims: {"id_token": {"amr": {"essential": true}}}`` is sent as the
    ``claims`` parameter (accepted by ProConnect); the ID token then carries
    ``amr`` and the sign-in works."""
    wanted = {"id_token": {"amr": {"essential": True}}}
    envoy = make_proconnect_envoy(claims=wanted)
    stats = proconnect_provider.test_stats()
    b = browser()

    done = login(b, envoy.url, "alice", "/amr")

    assert done.status_code == 302 and done.headers["Location"] == "/amr", describe(done)
    sent = proconnect_provider.last_authorize()
    assert json.loads(sent["claims"]) == wanted
    assert set(sent) == BASE_AUTHORIZE_PARAMS | {"claims"}
    assert stats_delta(proconnect_provider, stats) == {"authorize_requests": 1}
    headers = assert_signed_in_upstream(b, envoy, "alice")
    assert jwt_claims(headers["x-forwarded-id-token"])["amr"] == ["pwd"]


def test_essential_acr_in_the_claims_request_is_enforced(make_proconnect_envoy, upstream):
    """``claims: {"id_token": {"acr": {"essential": true, "value":
    "eidas2"}}}`` (no ``acr_values``): ProConnect does not refuse a lower
    level (the provider here neither), so the relying party must; a sign-in
    at eidas1 should end like the ``acr_values`` case, on the 403 page
    (``login_failure.acr_not_satisfied``), without a session."""
    envoy = make_proconnect_envoy(
        claims={"id_token": {"acr": {"essential": True, "value": "eidas2"}}})
    b = browser()
    path = unique_path("/essential-acr")
    callback = authorize(login_location(b, envoy.url, path), "alice", acr="eidas1")
    counters = Counters(envoy)

    r = deliver_callback(b, callback)

    assert r.status_code == 403, (
        f"signed in with acr eidas1 although eidas2 is essential: {describe(r)}")
    assert counters.delta() == {"login_failure.acr_not_satisfied": 1}
    assert not session_cookie_sets(r)


# --------------------------------------------------------------------------
# 4. Sign-in hints


def test_sign_in_hints_are_forwarded_and_nothing_else(
        proconnect_envoy, proconnect_provider):
    """``/oauth2/sign_in`` passes ``idp_hint``, ``login_hint``,
    ``siret_hint`` and ``prompt`` on to ProConnect, drops anything else
    (``foo``, ``rd``), and the provider accepts the request; the sign-in
    returns to ``rd``."""
    hints = {
        "idp_hint": "fia1v2",
        "login_hint": "alice.martin@numerique.gouv.fr",
        "siret_hint": "13002526500013",
        "prompt": "login",
    }
    b = browser()
    stats = proconnect_provider.test_stats()
    r = b.get(proconnect_envoy.url + "/oauth2/sign_in?"
              + urlencode({"rd": "/x", **hints, "foo": "bar"}),
              headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)
    assert r.headers["Location"].startswith(proconnect_provider.issuer + "/auth?")

    callback = authorize(r.headers["Location"], "alice")

    sent = proconnect_provider.last_authorize()
    assert set(sent) == BASE_AUTHORIZE_PARAMS | set(hints), sent
    assert {k: sent[k] for k in hints} == hints
    assert "error" not in query(callback), callback
    assert stats_delta(proconnect_provider, stats) == {"authorize_requests": 1}
    done = deliver_callback(b, callback)
    assert done.status_code == 302 and done.headers["Location"] == "/x", describe(done)


@pytest.mark.parametrize("name, value, message", [
    ("siret_hint", "123", "siret_hint must be a SIRET: 14 digits"),
    ("login_hint", "nope", "login_hint must be an email address"),
    ("prompt", "always", "prompt must be login, consent or none"),
])
def test_bad_sign_in_hints_are_refused_before_the_provider(
        proconnect_envoy, proconnect_provider, name, value, message):
    """A hint ProConnect would refuse is refused by Sésame: a 400 page
    naming the problem (``login_failure.invalid_sign_in_parameter``), no
    redirect, no login cookie, the provider never asked."""
    stats = proconnect_provider.test_stats()
    counters = Counters(proconnect_envoy)

    r = browser().get(proconnect_envoy.url + "/oauth2/sign_in?"
                      + urlencode({"rd": "/x", name: value}),
                      headers=HTML, allow_redirects=False, timeout=10)

    assert r.status_code == 400, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert message in r.text
    assert "Location" not in r.headers
    assert set_cookies(r) == []
    assert counters.delta() == {"login_failure.invalid_sign_in_parameter": 1}
    assert stats_delta(proconnect_provider, stats) == {}


def test_prompt_proconnect_refuses_is_not_forwarded(proconnect_envoy, proconnect_provider):
    """``prompt=select_account`` is valid OpenID Connect, but not for
    ProConnect: with ``provider: "proconnect"`` Sésame should refuse it with
    its 400 page, as it does ``prompt=always``, rather than send the person
    to ProConnect to be refused there (``invalid_request``) and end on the
    "provider refused" page."""
    stats = proconnect_provider.test_stats()

    r = browser().get(proconnect_envoy.url + "/oauth2/sign_in?rd=/x&prompt=select_account",
                      headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 400, describe(r)
    assert "prompt must be login, consent or none" in r.text
    assert "Location" not in r.headers
    assert stats_delta(proconnect_provider, stats) == {}


# --------------------------------------------------------------------------
# 6. Sign-out through ProConnect and back


def sign_out(b, envoy, rd: str):
    return b.get(envoy.url + "/oauth2/sign_out?" + urlencode({"rd": rd}),
                 headers=HTML, allow_redirects=False, timeout=10)


def test_sign_out_round_trip_through_proconnect(
        proconnect_envoy, proconnect_provider, upstream):
    """``/oauth2/sign_out?rd=/bye``: the session cookie cleared, a redirect
    to ``/api/v2/session/end`` with ``id_token_hint``, a 43-character
    ``state`` and the registered ``post_logout_redirect_uri``; the provider
    logs out at once (no confirmation page) and sends the browser back to
    ``/oauth2/signed_out?state=...``; Sésame checks the state and goes on to
    /bye.  The provider session is gone: the next sign-in shows its login
    page again."""
    pb = browser()  # the provider's cookies (its session)
    b = browser()
    done = deliver_callback(b, authorize(login_location(b, proconnect_envoy.url, "/in"),
                                         "alice", provider_browser=pb))
    assert done.status_code == 302 and b.cookies.get(COOKIE), describe(done)
    stats = proconnect_provider.test_stats()
    counters = Counters(proconnect_envoy)
    logouts = proconnect_provider.log_text().count("end_session: logged out without confirmation")

    r = sign_out(b, proconnect_envoy, "/bye")

    assert r.status_code == 302, describe(r)
    end_session = r.headers["Location"]
    assert end_session.startswith(proconnect_provider.issuer + "/session/end?"), end_session
    params = query(end_session)
    assert set(params) == {"id_token_hint", "state", "post_logout_redirect_uri"}
    assert URLSAFE_43.fullmatch(params["state"]), params["state"]
    assert params["post_logout_redirect_uri"] == proconnect_envoy.url + "/oauth2/signed_out"
    hint = jwt_claims(params["id_token_hint"])
    assert hint["sub"] == USERS["alice"]["sub"]
    assert hint["iss"] == proconnect_provider.issuer
    assert is_clearing(set_cookie(r, COOKIE)), set_cookies(r)
    assert not b.cookies.get(COOKIE)

    back = provider_logout(end_session, pb)

    assert back == f"{proconnect_envoy.url}/oauth2/signed_out?state={params['state']}", back
    assert proconnect_provider.last_end_session() == params
    # The session's access token revoked (ProConnect's discovery names a
    # revocation endpoint), then the logout.
    assert stats_delta(proconnect_provider, stats) == {"end_session_requests": 1,
                                                       "revocation_requests": 1}
    assert proconnect_provider.log_text().count(
        "end_session: logged out without confirmation") == logouts + 1
    final = b.get(back, headers=HTML, allow_redirects=False, timeout=10)
    assert final.status_code == 302, describe(final)
    assert final.headers["Location"] == "/bye"
    assert is_clearing(set_cookie(final, f"{COOKIE}_logout"))
    assert counters.delta().get("sign_out") == 1

    # Signed out here...
    path = unique_path("/after")
    assert b.get(proconnect_envoy.url + path, headers=JSON, timeout=10).status_code == 401
    assert_not_upstream(upstream, path)
    # ...and at the provider: its login page again for the same provider browser.
    again = pb.get(login_location(browser(), proconnect_envoy.url, "/again"),
                   allow_redirects=True, timeout=10)
    assert "/interaction/" in again.url and 'name="user"' in again.text, describe(again)


def test_sign_out_return_with_a_forged_state_is_refused(proconnect_envoy):
    """The return from the provider with a state that is not this browser's
    (another browser's genuine one) is a 400 page, no redirect
    (``login_failure.logout_state_mismatch``)."""
    victim, other = logged_in(proconnect_envoy.url, "alice"), logged_in(proconnect_envoy.url, "bob")
    sign_out(victim, proconnect_envoy, "/mine")
    other_state = query(sign_out(other, proconnect_envoy, "/theirs").headers["Location"])["state"]
    counters = Counters(proconnect_envoy)

    for state in (other_state, "x" * 43, ""):
        r = victim.get(f"{proconnect_envoy.url}/oauth2/signed_out?state={state}",
                       headers=HTML, allow_redirects=False, timeout=10)
        assert r.status_code == 400, describe(r)
        assert "Location" not in r.headers
        assert r.headers["Content-Type"].startswith("text/html")
        assert "Vous êtes déconnecté" in r.text

    assert counters.delta() == {"login_failure.logout_state_mismatch": 3}


@pytest.mark.parametrize("rd, expected", [
    ("https://evil.example/", "/"),
    ("https://app.example.fr/x?y=1", "https://app.example.fr/x?y=1"),
    ("https://sub.app.example.fr/", "/"),
])
def test_sign_out_return_target(proconnect_envoy, proconnect_provider, rd, expected):
    """After the round trip the browser ends on ``rd`` only when it is a
    local path or a host of ``allowed_redirect_domains`` (here exactly
    app.example.fr), otherwise on ``/``."""
    b = logged_in(proconnect_envoy.url, "alice")
    r = sign_out(b, proconnect_envoy, rd)
    assert r.headers["Location"].startswith(proconnect_provider.issuer + "/session/end?")

    final = b.get(provider_logout(r.headers["Location"]), headers=HTML,
                  allow_redirects=False, timeout=10)

    assert final.status_code == 302, describe(final)
    assert final.headers["Location"] == expected


# --------------------------------------------------------------------------
# 9. Configuration: what ProConnect would refuse, refused at load


def test_client_secret_basic_with_proconnect_is_refused_at_load(make_proconnect_envoy):
    """``provider: "proconnect"`` with ``client_secret_basic``: Envoy does
    not start, and the log names the key and the reason."""
    envoy = make_proconnect_envoy(start=False, token_endpoint_auth_method="client_secret_basic")

    log = envoy.start(expect_failure=True)

    lines = [m for line in log.splitlines() if (m := CONFIG_LINE.search(line))]
    assert [m.group(1) for m in lines] == ["token_endpoint_auth_method"], log[-3000:]
    assert "ProConnect does not accept client_secret_basic; use client_secret_post" \
        in lines[0].group(2)
    assert CLIENT_SECRET not in log


def test_client_secret_basic_fails_at_proconnect_token_endpoint(
        make_proconnect_envoy, proconnect_provider, upstream):
    """Why: the same method with ``provider: "oidc"`` loads, and every
    sign-in then fails at the token endpoint (401 ``invalid_client``, as
    ProConnect answers): a 502 page, ``login_failure.token_endpoint_error``."""
    envoy = make_proconnect_envoy(provider="oidc", scopes=PROCONNECT_SCOPES,
                                  token_endpoint_auth_method="client_secret_basic")
    stats = proconnect_provider.test_stats()
    path = unique_path("/basic")
    counters = Counters(envoy)

    r = login(browser(), envoy.url, "alice", path)

    assert r.status_code == 502, describe(r)
    assert "token_endpoint_error" in r.text
    assert not session_cookie_sets(r)
    assert counters.delta() == {"login_started": 1, "login_failure.token_endpoint_error": 1}
    assert stats_delta(proconnect_provider, stats) == {
        "authorize_requests": 1, "token_client_auth_refused": 1}
    assert "login failed (token_endpoint_error): HTTP 401 invalid_client" in envoy.log_text()
    assert_not_upstream(upstream, path)


def test_issuer_overrides_the_proconnect_environment(make_proconnect_envoy, proconnect_provider):
    """``proconnect_environment`` presets an https issuer; an explicit
    ``issuer`` wins (here the local provider), so the same configuration
    can be tested on loopback."""
    envoy = make_proconnect_envoy(proconnect_environment="integration")

    assert f"configured for provider \"proconnect\": issuer {proconnect_provider.issuer} " in envoy.log_text()
    assert_signed_in_upstream(logged_in(envoy.url, "alice"), envoy, "alice")
