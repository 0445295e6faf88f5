"""Attacks on the sign-in, through the real Envoy, against an OpenID provider
that misbehaves on command (``tests/hostile/server.mjs``): forged and
tampered ID tokens, forged userinfo, key rotation, hostile callbacks, open
redirects, spoofed identity headers and forged session cookies.

Each refused sign-in is checked the same way (``assert_refused``): Sésame's
HTML page with the status for the reason, never a 500; no session cookie;
the page offers to sign in again; exactly the expected counter moved; the
reason (and the detail) in Envoy's log, without the token; nothing reached
the upstream, and the browser is still not signed in.

Cases already covered elsewhere are listed in docs/SECURITY.md with the test
that covers them, and not repeated here.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import requests

from oidc_client import (
    CLIENT_ID,
    COOKIE,
    HTML,
    JSON,
    USERS,
    XHR,
    Counters,
    assert_not_upstream,
    authorize,
    bare_request,
    browser,
    cookie_attributes,
    deliver_callback,
    describe,
    forged_values_seen,
    http_request,
    is_clearing,
    jwt_claims,
    login_location,
    query,
    raw_get,
    session_cookie_sets,
    set_cookie,
    set_cookies,
    unique_path,
    upstream_mark,
    upstream_view,
)

ALICE = USERS["alice"]
LOG_TIMEOUT = 5.0


# --------------------------------------------------------------------------
# Helpers


def sign_in(envoy, path: str, b=None):
    """A whole sign-in from a navigation to ``path`` (the hostile provider
    signs its user in at once): (browser, Envoy's answer to the callback)."""
    b = b or browser()
    auth_url = login_location(b, envoy.url, path)
    return b, deliver_callback(b, authorize(auth_url))


def wait_for_log(envoy, text: str, timeout: float = LOG_TIMEOUT) -> str:
    """Envoy's log once it contains ``text`` (log lines may be written a
    little after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        log = envoy.log_text()
        if text in log:
            return log
        assert time.monotonic() < deadline, f"{text!r} not in {envoy.log_path}"
        time.sleep(0.05)


def assert_refused(envoy, upstream, counters: Counters, b, r, path: str, *,
                   status: int, reason: str, detail: str | None = None,
                   secret: str | None = None) -> None:
    """A refused sign-in (see the module's docstring)."""
    assert r.status_code == status, describe(r)
    assert r.headers["Content-Type"].startswith("text/html"), describe(r)
    assert "/oauth2/sign_in?rd=" in r.text, "the page offers to sign in again"
    assert reason in r.text, "the page names the reason"
    assert not session_cookie_sets(r), f"session cookie set: {set_cookies(r)}"
    assert not b.cookies.get(COOKIE)
    assert counters.delta() == {"login_started": 1, f"login_failure.{reason}": 1}
    line = f"login failed ({reason})" + (f": {detail}" if detail else "")
    log = wait_for_log(envoy, line)
    if secret:
        assert secret not in log, "a token was written to Envoy's log"
    again = b.get(envoy.url + path, headers=JSON, allow_redirects=False, timeout=10)
    assert again.status_code == 401, describe(again)
    assert_not_upstream(upstream, path)


def assert_signed_in(envoy, b, r, path: str, user: dict[str, str] = ALICE) -> None:
    assert r.status_code == 302 and r.headers["Location"] == path, describe(r)
    headers = upstream_view(b, envoy.url, path)["headers"]
    assert headers["x-forwarded-user"] == user["sub"]


# --------------------------------------------------------------------------
# Control: the hostile provider signs in normally until told otherwise


def test_hostile_provider_signs_in_when_it_behaves(hostile_envoy, hostile, upstream):
    """Control for every test below: untouched, the hostile provider's
    sign-in succeeds (ID token, then signed userinfo)."""
    path = unique_path("/control")
    counters = Counters(hostile_envoy)

    b, r = sign_in(hostile_envoy, path)

    assert_signed_in(hostile_envoy, b, r, path)
    assert counters.delta()["login_success"] == 1
    assert hostile.requests() == {"discovery": 0, "jwks": 0, "authorize": 1,
                                  "token": 1, "userinfo": 1, "introspect": 0, "revoke": 0}


# --------------------------------------------------------------------------
# ID token


def _in(seconds: int) -> int:
    return int(time.time()) + seconds


# (id, changes to the ID token, counter reason, detail in the log)
ID_TOKEN_ATTACKS: list[tuple[str, Any, str, str]] = [
    ("alg-none", lambda: {"sign": "none"},
     "id_token_invalid", 'algorithm "none" is not allowed'),
    ("alg-none-without-kid", lambda: {"sign": "none", "header": {"kid": None}},
     "id_token_invalid", 'algorithm "none" is not allowed'),
    ("hs256-keyed-with-the-public-key", lambda: {"sign": "hs256-public-key"},
     "id_token_invalid", 'algorithm "HS256" is not allowed'),
    ("bad-signature", lambda: {"sign": "corrupt"},
     "id_token_invalid", "bad_signature"),
    ("unpublished-key-with-our-kid", lambda: {"sign": "foreign"},
     "id_token_invalid", "bad_signature"),
    ("unpublished-key-without-kid", lambda: {"sign": "foreign", "header": {"kid": None}},
     "id_token_invalid", "bad_signature"),
    ("wrong-iss", lambda: {"claims": {"iss": "https://evil.example"}},
     "id_token_invalid", "wrong_issuer"),
    ("iss-with-trailing-slash", lambda: {"claims": {"iss": "ISSUER/"}},
     "id_token_invalid", "wrong_issuer"),
    ("iss-missing", lambda: {"claims": {"iss": None}},
     "id_token_invalid", "wrong_issuer"),
    ("wrong-aud", lambda: {"claims": {"aud": "another-client"}},
     "id_token_invalid", "wrong_audience"),
    ("aud-missing", lambda: {"claims": {"aud": None}},
     "id_token_invalid", "claim `aud` is missing"),
    ("several-aud-without-azp", lambda: {"claims": {"aud": ["sesame", "another-client"]}},
     "id_token_invalid", "wrong_azp"),
    ("several-aud-azp-not-ours",
     lambda: {"claims": {"aud": ["sesame", "another-client"], "azp": "another-client"}},
     "id_token_invalid", "wrong_azp"),
    ("azp-not-ours", lambda: {"claims": {"azp": "another-client"}},
     "id_token_invalid", "wrong_azp"),
    ("expired", lambda: {"claims": {"iat": _in(-7200), "exp": _in(-3600)}},
     "id_token_invalid", "expired"),
    ("exp-missing", lambda: {"claims": {"exp": None}},
     "id_token_invalid", "claim `exp` is missing"),
    ("iat-far-in-the-future", lambda: {"claims": {"iat": _in(3600), "exp": _in(7200)}},
     "id_token_invalid", "issued_in_future"),
    ("nbf-in-the-future", lambda: {"claims": {"nbf": _in(3600)}},
     "id_token_invalid", "not_yet_valid"),
    ("sub-missing", lambda: {"claims": {"sub": None}},
     "id_token_invalid", "claim `sub` is missing"),
    ("nonce-missing", lambda: {"claims": {"nonce": None}},
     "nonce_mismatch", "nonce_mismatch"),
]


@pytest.mark.parametrize("changes, reason, detail",
                         [a[1:] for a in ID_TOKEN_ATTACKS],
                         ids=[a[0] for a in ID_TOKEN_ATTACKS])
def test_forged_id_token_is_refused(hostile_envoy, hostile, upstream, changes, reason, detail):
    """The provider's token endpoint answers an ID token that is unsigned,
    signed with the wrong algorithm or key, or whose claims are not for us
    (issuer, audience, authorised party, times, subject, nonce): a 401 page,
    counted by reason, the detail in the log, no session."""
    spec = changes()
    claims = spec.get("claims", {})
    if claims.get("iss") == "ISSUER/":
        claims["iss"] = hostile.issuer + "/"
    hostile.control(id_token=spec)
    path = unique_path("/idt")
    counters = Counters(hostile_envoy)

    b, r = sign_in(hostile_envoy, path)

    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=401,
                   reason=reason, detail=detail, secret=hostile.state()["last_id_token"])
    assert hostile.requests()["userinfo"] == 0, "userinfo fetched for a refused ID token"


def test_id_token_without_kid_is_checked_against_every_published_key(
        make_hostile_envoy, hostile, upstream):
    """The provider publishes several keys and signs without ``kid``: Sésame
    tries each published key that fits the algorithm, so the provider's own
    signature passes while a key it does not publish is refused, after one
    refetch of the keys (the provider may have rotated an unnamed key)."""
    hostile.control(extra_keys=3)
    envoy = make_hostile_envoy()
    assert len(hostile.state()["keys"]) == 4

    hostile.control(id_token={"header": {"kid": None}})
    ok_path = unique_path("/nokid-ok")
    b, r = sign_in(envoy, ok_path)
    assert_signed_in(envoy, b, r, ok_path)

    hostile.control(id_token={"sign": "foreign", "header": {"kid": None}})
    jwks_before = hostile.requests()["jwks"]
    path = unique_path("/nokid-forged")
    counters = Counters(envoy)
    b, r = sign_in(envoy, path)

    assert_refused(envoy, upstream, counters, b, r, path, status=401,
                   reason="id_token_invalid", detail="bad_signature")
    assert hostile.requests()["jwks"] == jwks_before + 1


def test_a_rotated_key_without_kid_is_fetched_once(hostile_envoy, hostile, upstream):
    """The provider signs with a single key and no ``kid``, then replaces
    that key: the next sign-in's token verifies against none of the keys
    Sésame holds, so Sésame fetches the keys once, tries again, and the
    sign-in succeeds without waiting for the hourly refresh. A second
    sign-in needs no further fetch."""
    hostile.control(id_token={"header": {"kid": None}})
    _, r = sign_in(hostile_envoy, "/before-unnamed-rotation")
    assert r.status_code == 302, describe(r)

    hostile.control(rotate=True)
    assert_two_sign_ins_after_one_key_fetch(hostile_envoy, hostile)


def assert_two_sign_ins_after_one_key_fetch(envoy, hostile) -> None:
    """After a rotation: a sign-in succeeds with one fetch of the keys, and
    a second one needs no further fetch."""
    counters = Counters(envoy)
    for name in ("/after-rotation", "/again"):
        path = unique_path(name)
        b, r = sign_in(envoy, path)
        assert_signed_in(envoy, b, r, path)
        assert hostile.requests()["jwks"] == 1
    assert counters.delta()["login_success"] == 2


def test_unknown_kid_refetches_the_keys_once_then_refuses(hostile_envoy, hostile, upstream):
    """An ID token naming a ``kid`` the provider does not publish: Sésame
    fetches the JWKS exactly once (the keys may have rotated), still does
    not find it, and refuses."""
    hostile.control(id_token={"sign": "foreign", "header": {"kid": "kid-nobody-has"}})
    path = unique_path("/kid")
    counters = Counters(hostile_envoy)

    b, r = sign_in(hostile_envoy, path)

    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=401,
                   reason="id_token_invalid",
                   detail='no provider key has kid "kid-nobody-has"')
    assert hostile.requests()["jwks"] == 1


def test_valid_id_token_replayed_from_an_earlier_sign_in_is_refused(
        hostile_envoy, hostile, upstream):
    """An ID token that was valid for an earlier sign-in (right signature,
    issuer, audience, not expired) is sent again for a new one: its nonce
    is the earlier sign-in's, so it is refused (``nonce_mismatch``)."""
    first_path = unique_path("/first")
    b, r = sign_in(hostile_envoy, first_path)
    assert_signed_in(hostile_envoy, b, r, first_path)
    earlier = hostile.state()["last_id_token"]

    hostile.control(id_token={"raw": earlier})
    path = unique_path("/replay")
    counters = Counters(hostile_envoy)
    b, r = sign_in(hostile_envoy, path)

    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=401,
                   reason="nonce_mismatch", secret=earlier)


# --------------------------------------------------------------------------
# Key rotation


def test_key_rotation_is_picked_up_and_sessions_stay_valid(hostile_envoy, hostile, upstream):
    """The provider replaces its signing key (the old one is no longer
    published): the next sign-in fetches the new keys once and succeeds,
    without restarting Envoy; a session made before the rotation still
    works; a second sign-in needs no further fetch."""
    before = browser()
    _, r = sign_in(hostile_envoy, "/before-rotation", before)
    assert_signed_in(hostile_envoy, before, r, "/before-rotation")
    old_cookie = f"{COOKIE}={before.cookies[COOKIE]}"
    old_kid = hostile.state()["current_kid"]

    hostile.control(rotate=True)
    assert old_kid not in hostile.state()["keys"]
    assert_two_sign_ins_after_one_key_fetch(hostile_envoy, hostile)

    old = raw_get(hostile_envoy.url, unique_path("/old-session"), old_cookie, JSON)
    assert old.status_code == 200, describe(old)
    assert old.json()["headers"]["x-forwarded-user"] == ALICE["sub"]


# --------------------------------------------------------------------------
# Userinfo


USERINFO_ATTACKS = [
    ("jwt-bad-signature", {"sign": "corrupt"}, 401, "bad_signature"),
    ("jwt-unpublished-key", {"sign": "foreign"}, 401, "bad_signature"),
    ("jwt-alg-none", {"sign": "none"}, 401, 'algorithm "none" is not allowed'),
    ("jwt-another-sub", {"claims": {"sub": "mallory"}}, 401, "subject_mismatch"),
    ("jwt-no-sub", {"claims": {"sub": None}}, 401, "subject_mismatch"),
    ("json-another-sub", {"format": "json", "claims": {"sub": "mallory"}}, 401,
     "subject_mismatch"),
    ("json-as-text-html", {"format": "json", "content_type": "text/html"}, 502,
     'content type "text/html"'),
    ("jwt-as-text-plain", {"content_type": "text/plain"}, 502,
     'content type "text/plain"'),
    ("json-labelled-jwt", {"format": "json", "content_type": "application/jwt"}, 401,
     "malformed"),
]


@pytest.mark.parametrize("changes, status, detail",
                         [a[1:] for a in USERINFO_ATTACKS],
                         ids=[a[0] for a in USERINFO_ATTACKS])
def test_forged_userinfo_is_refused(hostile_envoy, hostile, upstream, changes, status, detail):
    """The ID token is right but userinfo is not: a bad or missing
    signature, another person's ``sub``, or a content type that is neither
    JSON nor a JWT. The sign-in is refused (``userinfo_invalid``)."""
    hostile.control(userinfo=changes)
    path = unique_path("/userinfo")
    counters = Counters(hostile_envoy)

    b, r = sign_in(hostile_envoy, path)

    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=status,
                   reason="userinfo_invalid", detail=detail)
    assert hostile.requests()["userinfo"] == 1


def test_plain_json_userinfo_is_refused_when_signed_userinfo_is_required(
        make_hostile_envoy, hostile, upstream):
    """With ``provider: "proconnect"`` userinfo must be a signed JWT: the
    same claims as plain JSON (right ``sub``) are refused (502 page)."""
    envoy = make_hostile_envoy(provider="proconnect", scopes=None)
    hostile.control(userinfo={"format": "json"})
    path = unique_path("/pc-json")
    counters = Counters(envoy)

    b, r = sign_in(envoy, path)

    assert_refused(envoy, upstream, counters, b, r, path, status=502,
                   reason="userinfo_invalid", detail='content type "application/json"')


@pytest.mark.parametrize("id_token_value, userinfo_value", [
    (False, "false"), (False, True), (False, "true"), ("false", "false"), (True, "false"),
    (True, 0),
], ids=["false-then-string-false", "false-then-true", "false-then-string-true",
        "string-false-both", "true-then-string-false", "true-then-zero"])
def test_an_unverified_email_is_never_admitted_by_a_domain_rule(
        hostile_envoy, hostile, upstream, id_token_value, userinfo_value):
    """``email_verified`` counts only as ``true`` (or the string ``"true"``):
    ``false``, ``"false"`` (as some providers send it) or ``0``, in the ID
    token or in userinfo, mean unverified, and userinfo never turns the ID
    token's unverified email into a verified one. Alice's domain is
    admitted (``*.gouv.fr``), her unverified address is not: 403 page."""
    hostile.control(id_token={"claims": {"email_verified": id_token_value}},
                    userinfo={"claims": {"email_verified": userinfo_value}})
    path = unique_path("/unverified")
    counters = Counters(hostile_envoy)

    b, r = sign_in(hostile_envoy, path)

    assert r.status_code == 403, describe(r)
    assert not session_cookie_sets(r)
    assert counters.delta() == {"login_started": 1, "access_denied": 1}
    wait_for_log(hostile_envoy, "the email address is not verified")
    assert_not_upstream(upstream, path)


def test_a_verified_email_is_admitted(hostile_envoy, hostile, upstream):
    """Control: ``true`` in the ID token, ``"true"`` in userinfo."""
    hostile.control(id_token={"claims": {"email_verified": True}},
                    userinfo={"claims": {"email_verified": "true"}})
    path = unique_path("/verified")
    b, r = sign_in(hostile_envoy, path)
    assert_signed_in(hostile_envoy, b, r, path)


def test_an_id_token_is_never_taken_for_a_bearer_access_token(
        make_hostile_envoy, hostile, upstream):
    """An ID token the provider really signed, for our client, without
    ``nonce`` (as providers issue them on refresh), sent as a bearer token:
    refused (401 ``invalid_token``), since a JWT access token must say
    ``typ: at+jwt``; nothing reaches the upstream. Before, such a token
    passed as an access token, and Sésame itself hands ID tokens to the
    upstream and puts them in ``id_token_hint`` URLs."""
    envoy = make_hostile_envoy(routes=[{"path": "^/api/", "mode": "bearer"}])
    hostile.control(id_token={"claims": {"nonce": None}})
    sign_in(envoy, unique_path("/no-nonce"))  # refused; the provider issued it all the same
    id_token = hostile.state()["last_id_token"]
    assert "nonce" not in jwt_claims(id_token)
    path = unique_path("/api/with-an-id-token")

    r = raw_get(envoy.url, path, headers={**JSON, "Authorization": f"Bearer {id_token}"})

    assert r.status_code == 401, describe(r)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert_not_upstream(upstream, path)


# --------------------------------------------------------------------------
# One request's call to the provider


def test_junk_tokens_whose_introspection_fails_never_block_sign_ins(
        make_hostile_envoy, hostile, upstream):
    """Anonymous requests with junk opaque tokens on a bearer route, whose
    introspection answers 503: each gets its own 503, and nothing more.
    Only the discovery and key fetches decide whether the provider is up,
    so sign-ins go on at once and the gauge ``provider_ready`` stays 1
    (before, the first such answer stopped every sign-in until the
    back-off ended, and anyone could repeat it)."""
    envoy = make_hostile_envoy(
        routes=[{"path": "^/api/", "mode": "bearer"}],
        introspection_endpoint=hostile.issuer + "/introspect")
    for i in range(4):
        r = raw_get(envoy.url, f"/api/items/{i}", headers={
            **JSON, "Authorization": f"Bearer junk-opaque-token-{i}"})
        assert r.status_code == 503, describe(r)
    assert hostile.requests()["introspect"] == 4

    path = unique_path("/after-junk")
    b, r = sign_in(envoy, path)
    assert_signed_in(envoy, b, r, path)
    time.sleep(Counters.TICK_S)
    assert envoy.stats("wasmcustom.sesame.provider_ready")[
        "wasmcustom.sesame.provider_ready"] == 1


def test_introspection_answers_without_aud_are_checked_on_client_id(
        make_hostile_envoy, hostile, upstream):
    """An introspection answer without `aud` (LemonLDAP::NG sends
    `client_id` instead): the audience is checked on `client_id`. Another
    client's token is refused, and so is an answer with neither claim, with
    a log line that names the claim it lacked."""
    envoy = make_hostile_envoy(
        routes=[{"path": "^/api/", "mode": "bearer"}],
        introspection_endpoint=hostile.issuer + "/introspect")
    answer = {"active": True, "sub": USERS["alice"]["sub"], "scope": "openid",
              "exp": int(time.time()) + 3600, "email": USERS["alice"]["email"]}

    def call(i: int, **claims: Any) -> requests.Response:
        hostile.control(introspection={**answer, **claims})
        return raw_get(envoy.url, f"/api/items/{i}", headers={
            **JSON, "Authorization": f"Bearer opaque-token-{i}"})

    r = call(1, client_id=CLIENT_ID)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-email"] == USERS["alice"]["email"]
    r = call(2, client_id="another-client")
    assert r.status_code == 401, describe(r)
    assert "client_id" in r.headers["WWW-Authenticate"]
    r = call(3)
    assert r.status_code == 401, describe(r)
    assert "has no `client_id`" in r.json()["error_description"]
    deadline = time.monotonic() + 5
    while "has no `client_id`" not in envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "bearer token refused (wrong_audience): the introspection answer has no `client_id`" \
        in envoy.log_text()
    # An `aud` that names another service is not overridden by `client_id`.
    r = call(4, aud="https://other.example", client_id=CLIENT_ID)
    assert r.status_code == 401, describe(r)
    assert hostile.requests()["introspect"] == 4


def test_an_introspection_answer_without_email_is_completed_by_userinfo_once(
        make_hostile_envoy, hostile, upstream):
    """LemonLDAP::NG's introspection answers carry no email, so an email
    rule would refuse every opaque token: the provider's userinfo is asked
    once, with the token, and its email is remembered with the token. A
    token userinfo does not know stays refused, and the log says why."""
    envoy = make_hostile_envoy(
        routes=[{"path": "^/api/", "mode": "bearer"}],
        introspection_endpoint=hostile.issuer + "/introspect",
        pass_access_token=True)
    path = unique_path("/for-a-token")
    b, r = sign_in(envoy, path)
    assert_signed_in(envoy, b, r, path)
    token = upstream_view(b, envoy.url, path)["headers"]["x-auth-request-access-token"]
    hostile.control(introspection={
        "active": True, "sub": USERS["alice"]["sub"], "scope": "openid",
        "exp": int(time.time()) + 3600, "client_id": CLIENT_ID})
    before = hostile.requests()["userinfo"]

    for i in range(3):
        r = raw_get(envoy.url, f"/api/items/{i}",
                    headers={**JSON, "Authorization": f"Bearer {token}"})
        assert r.status_code == 200, describe(r)
        assert r.json()["headers"]["x-forwarded-email"] == USERS["alice"]["email"]
    assert hostile.requests()["userinfo"] == before + 1, "asked once, then remembered"

    r = raw_get(envoy.url, "/api/items/x",
                headers={**JSON, "Authorization": "Bearer opaque-unknown-to-userinfo"})
    assert r.status_code == 403, describe(r)
    assert r.json()["error"] == "access_denied"
    assert "userinfo userinfo_error: userinfo answered HTTP 401" in wait_for_log(
        envoy, "userinfo answered HTTP 401")
    assert "opaque-unknown-to-userinfo" not in envoy.log_text()


def test_sign_out_goes_on_when_the_revocation_endpoint_is_down(hostile_envoy, hostile):
    """The provider's revocation endpoint answers 503: the session's token
    is offered for revocation once, the sign-out goes on to `rd` at once,
    and the counter and the log line say the revocation failed."""
    path = unique_path("/revoke")
    b, r = sign_in(hostile_envoy, path)
    assert_signed_in(hostile_envoy, b, r, path)
    counters = Counters(hostile_envoy)
    r = b.get(hostile_envoy.url + "/oauth2/sign_out?rd=/bye", headers=HTML,
              allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == "/bye", describe(r)
    assert is_clearing(set_cookie(r, COOKIE))
    assert hostile.requests()["revoke"] == 1, "the access token (no refresh token here)"
    assert counters.delta() == {"sign_out": 1, "revocation_failure": 1}
    line = "the provider's revocation failed"
    deadline = time.monotonic() + 5
    while line not in hostile_envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in hostile_envoy.log_text()
    r = b.get(hostile_envoy.url + path, headers=JSON, allow_redirects=False, timeout=10)
    assert r.status_code == 401, describe(r)


# --------------------------------------------------------------------------
# Callback


@pytest.mark.parametrize("error", ["server_error", "temporarily_unavailable",
                                   "login_required", "interaction_required",
                                   "invalid_scope", "unauthorized_client"])
def test_provider_errors_are_shown_clearly(hostile_envoy, hostile, upstream, error):
    """Whatever error the provider sends back (not only ``access_denied``),
    the person gets the "provider refused" page (403), and the error code
    is logged; no code is exchanged."""
    b = browser()
    path = unique_path("/error")
    counters = Counters(hostile_envoy)
    auth_url = login_location(b, hostile_envoy.url, path)
    callback = f"{hostile_envoy.url}/oauth2/callback?" + urlencode(
        {"state": query(auth_url)["state"], "error": error,
         "error_description": "The provider says no"})

    r = deliver_callback(b, callback)

    assert "Le fournisseur d’identité a refusé la connexion" in r.text or \
        "The identity provider refused the sign-in" in r.text
    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=403,
                   reason="provider_error", detail=f"{error}: The provider says no")
    assert hostile.requests()["token"] == 0


def test_provider_error_text_cannot_inject_html_or_log_lines(hostile_envoy, hostile, upstream):
    """An ``error`` and ``error_description`` carrying markup and CR/LF: the
    page shows none of it as markup, and the log line stays one line."""
    b = browser()
    path = unique_path("/inject")
    auth_url = login_location(b, hostile_envoy.url, path)
    callback = f"{hostile_envoy.url}/oauth2/callback?" + urlencode({
        "state": query(auth_url)["state"],
        "error": "<script>alert(1)</script>",
        "error_description": "bad\r\n[critical] forged log line <img src=x onerror=alert(2)>",
    })
    counters = Counters(hostile_envoy)

    r = deliver_callback(b, callback)

    assert r.status_code == 403, describe(r)
    assert "<script" not in r.text and "<img" not in r.text
    assert counters.delta() == {"login_failure.provider_error": 1}
    log = wait_for_log(hostile_envoy, "forged log line")
    forged = [line for line in log.splitlines() if "forged log line" in line]
    assert forged and all("login failed (provider_error)" in line for line in forged), forged
    assert_not_upstream(upstream, path)


def test_code_replayed_in_another_sign_in_is_refused(hostile_envoy, hostile, upstream):
    """A code that was already exchanged, delivered again with the state of
    a new sign-in (the attacker has a login cookie of their own): the
    provider refuses the code (single use, and the PKCE verifier is the new
    sign-in's), and Sésame shows a 502 page."""
    first = browser()
    first_callback = authorize(login_location(first, hostile_envoy.url, "/first-code"))
    assert deliver_callback(first, first_callback).status_code == 302
    used_code = query(first_callback)["code"]

    b = browser()
    path = unique_path("/code-replay")
    counters = Counters(hostile_envoy)
    auth_url = login_location(b, hostile_envoy.url, path)
    parts = urlsplit(authorize(auth_url))
    params = query(parts.geturl())
    params["code"] = used_code

    r = deliver_callback(b, urlunsplit(parts._replace(query=urlencode(params))))

    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=502,
                   reason="token_endpoint_error", detail="HTTP 400 invalid_grant")


def test_callback_without_code_is_refused(hostile_envoy, hostile, upstream):
    """A callback with this browser's state but no code: 400 page."""
    b = browser()
    path = unique_path("/nocode")
    counters = Counters(hostile_envoy)
    callback = authorize(login_location(b, hostile_envoy.url, path))
    parts = urlsplit(callback)
    params = {k: v for k, v in query(callback).items() if k != "code"}

    r = deliver_callback(b, urlunsplit(parts._replace(query=urlencode(params))))

    assert_refused(hostile_envoy, upstream, counters, b, r, path, status=400,
                   reason="missing_code")
    assert hostile.requests()["token"] == 0


MALFORMED_CALLBACKS = [
    ("empty", "", "missing_state"),
    ("empty-state", "code=abc&state=", "missing_state"),
    ("only-separators", "&&&==&", "missing_state"),
    ("bad-percent-encoding", "code=%ZZ&state=%ZZ%", "invalid_state"),
    ("nul-byte", "code=abc&state=abc%00def", "invalid_state"),
    ("not-utf8", "code=abc&state=%ff%fe%fd", "invalid_state"),
    ("crlf", "code=abc&state=abc%0d%0aSet-Cookie:%20x=y", "invalid_state"),
    ("state-too-long", "code=abc&state=" + "a" * 600, "invalid_state"),
    ("repeated-code", "code=a&code=b&state=abc", "malformed_callback"),
    ("query-over-8-kib", "code=abc&state=abc&pad=" + "x" * 9000, "malformed_callback"),
]


@pytest.mark.parametrize("query_string, reason",
                         [m[1:] for m in MALFORMED_CALLBACKS],
                         ids=[m[0] for m in MALFORMED_CALLBACKS])
def test_malformed_callback_is_a_400_page(hostile_envoy, hostile, upstream,
                                          query_string, reason):
    """Callbacks with broken encoding, control characters, oversized or
    repeated parameters: a 400 page counted by reason, never a 500, no
    session, nothing sent to the provider."""
    counters = Counters(hostile_envoy)
    mark = upstream_mark(upstream)

    status, headers, body = http_request(
        hostile_envoy.port, "GET", "/oauth2/callback?" + query_string, HTML)

    # Refused at a clean address, which keeps nothing of the callback's query.
    assert status == 302, (status, body[:300])
    location = headers["location"]
    assert location.startswith(f"/oauth2/failed?reason={reason}&status=400&"), location
    cookie = headers.get("set-cookie", "")
    assert not cookie or (cookie.startswith(f"{COOKIE}_csrf_") and "Max-Age=0" in cookie), cookie
    status, headers, body = http_request(hostile_envoy.port, "GET", location, HTML)
    assert status == 400, (status, body[:300])
    assert headers["content-type"].startswith("text/html")
    assert reason.encode() in body
    assert b"/oauth2/sign_in?rd=" in body
    assert counters.delta() == {f"login_failure.{reason}": 1}
    assert hostile.requests()["token"] == 0
    assert_not_upstream(upstream, "/oauth2/callback", since=mark)


def test_huge_callback_is_refused_by_envoy_before_sesame(hostile_envoy, hostile, upstream):
    """A callback URL beyond Envoy's header limit (60 KiB) is answered by
    Envoy itself (431), not by a crash of the filter; nothing upstream."""
    counters = Counters(hostile_envoy)
    mark = upstream_mark(upstream)

    status, _, _ = http_request(hostile_envoy.port, "GET",
                                "/oauth2/callback?code=a&state=b&pad=" + "x" * 70_000, HTML)

    assert status == 431, status
    assert counters.delta() == {}
    assert_not_upstream(upstream, "/oauth2/callback", since=mark)
    assert hostile_envoy.running


# --------------------------------------------------------------------------
# Redirect targets


EVIL_TARGETS = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "/\\/evil.example/",
    "\\\\evil.example/",
    "https://evil.example/",
    "HTTPS://evil.example/",
    "hTTp://evil.example/",
    "https:evil.example",
    "//EVIL.example/",
    "/%2F%2Fevil.example/",
    "%2F%2Fevil.example/",
    "/%2f%2fevil.example/",
    "/%5Cevil.example/",
    "/%5cevil.example/",
    "/%252F%252Fevil.example/",
    "/%09/evil.example/",
    "/\t/evil.example/",
    " //evil.example/",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "/ok%0d%0aLocation:%20https://evil.example/",
    "/ok%0D%0ASet-Cookie:%20_sesame=forged",
    "/ok\r\nSet-Cookie: _sesame=forged",
]


@pytest.mark.parametrize("rd", EVIL_TARGETS, ids=[repr(t) for t in EVIL_TARGETS])
def test_sign_in_rd_never_leaves_the_host(hostile_envoy, hostile, rd):
    """``/oauth2/sign_in?rd=`` with another host, a scheme, backslashes,
    percent-encoded or mixed-case variants or CR/LF: the sign-in succeeds
    and returns to ``/`` on this host."""
    b = browser()
    r = b.get(hostile_envoy.url + "/oauth2/sign_in?" + urlencode({"rd": rd}),
              headers=HTML, allow_redirects=False, timeout=10)
    assert r.status_code == 302, describe(r)

    done = deliver_callback(b, authorize(r.headers["Location"]))

    assert done.status_code == 302, describe(done)
    assert done.headers["Location"] == "/", rd
    assert b.cookies.get(COOKIE)


@pytest.mark.parametrize("target", ["//evil.example/x", "/%2F%2Fevil.example/x",
                                    "/%5Cevil.example/x"])
def test_return_after_sign_in_never_leaves_the_host(hostile_envoy, hostile, target):
    """The page a navigation asked for is where the browser returns after
    signing in: a request target that a browser could read as another
    host returns to ``/`` instead."""
    status, headers, body = bare_request(hostile_envoy.port, "GET", target, HTML)
    assert status == 302, (status, body[:200])
    auth_url = headers["location"]
    name, value, _ = cookie_attributes(headers["set-cookie"])
    b = browser()
    b.cookies.set(name, value, domain="127.0.0.1", path="/oauth2/callback")

    done = deliver_callback(b, authorize(auth_url))

    assert done.status_code == 302, describe(done)
    assert done.headers["Location"] == "/", target


def test_escaped_control_character_in_the_path_is_a_400(hostile_envoy, hostile, upstream):
    """``/%09/evil.example/x``: an escaped tab, which a browser would drop
    from a return address, cannot be read safely as a path at all: 400,
    no sign-in started, nothing upstream."""
    status, headers, body = bare_request(hostile_envoy.port, "GET", "/%09/evil.example/x", HTML)
    assert status == 400, (status, body[:200])
    assert "location" not in headers and "set-cookie" not in headers
    assert_not_upstream(upstream, "/%09/evil.example/x")


# --------------------------------------------------------------------------
# Identity headers sent by the client


FORGED_HEADERS = {
    "Authorization": "Bearer forged.by.client",
    "X-Forwarded-User": "boss",
    "x-forwarded-email": "boss@evil.example",
    "X_FORWARDED_EMAIL": "boss-underscore@evil.example",
    "X-Forwarded-Preferred-Username": "boss",
    "X-Forwarded-Groups": "admins",
    "X-Forwarded-Access-Token": "forged-access-token",
    "X-Forwarded-Id-Token": "forged.id.token",
    "x_forwarded_id_token": "forged.id.token.underscore",
    "X-Auth-Request-User": "boss",
    "X-AUTH-REQUEST-EMAIL": "boss@evil.example",
    "X-Auth-Request-Preferred-Username": "boss",
    "X-Auth-Request-Groups": "admins",
    "x_auth_request_groups": "admins-underscore",
    "X-Auth-Request-Access-Token": "forged-access-token",
    "X-Auth-Request-Roles": "admin",
    "X-Forwarded-Siret": "00000000000000",
}


def test_identity_headers_from_the_client_never_reach_the_upstream(
        make_hostile_envoy, hostile, upstream):
    """With ``set_authorization_header``, a signed-in person's request
    carrying every identity header oauth2-proxy's applications may read
    (``X-Forwarded-*``, ``X-Auth-Request-*``, ``Authorization``), in any
    case and with ``_`` for ``-``: the upstream sees only Sésame's values,
    and none of the client's copies."""
    envoy = make_hostile_envoy(set_authorization_header=True, pass_id_token=True)
    b, r = sign_in(envoy, "/me")
    assert r.status_code == 302, describe(r)

    headers = upstream_view(b, envoy.url, unique_path("/spoof"), FORGED_HEADERS)["headers"]

    assert forged_values_seen(headers, FORGED_HEADERS) == {}
    assert headers["authorization"] == "Bearer " + headers["x-forwarded-id-token"]
    assert headers["x-forwarded-user"] == ALICE["sub"]
    assert headers["x-forwarded-email"] == ALICE["email"]
    assert headers["x-auth-request-email"] == ALICE["email"]
    assert headers["x-forwarded-siret"] == ALICE["siret"]
    for absent in ("x-forwarded-groups", "x-auth-request-groups", "x-forwarded-access-token",
                   "x-auth-request-roles", "x-forwarded-preferred-username"):
        assert absent not in headers, absent
    assert not [k for k in headers if "_" in k], headers


def test_identity_headers_without_a_session_never_reach_the_upstream(
        make_hostile_envoy, hostile, upstream):
    """The same forged headers without a session: a public route passes
    without any of them; any other route is refused before the upstream."""
    envoy = make_hostile_envoy(set_authorization_header=True)
    path = unique_path("/nosession")

    public = upstream_view(None, envoy.url, "/ping", FORGED_HEADERS)["headers"]
    r = raw_get(envoy.url, path, None, {**JSON, **FORGED_HEADERS})

    assert forged_values_seen(public, FORGED_HEADERS) == {}
    assert "authorization" not in public
    assert r.status_code == 401, describe(r)
    assert_not_upstream(upstream, path)


def _raw_get(port: int, path: str, headers: list[tuple[str, bytes]]) -> tuple[int, bytes]:
    """A GET written byte for byte (header values may hold any byte HTTP
    allows, UTF-8 or not), on a connection of its own: (status, body)."""
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_header_values_that_are_not_utf8_are_served(hostile_envoy, upstream):
    """HTTP lets header values carry bytes beyond ASCII (obs-text) that need
    not be UTF-8: here a Latin-1 ``é`` in a header and in another
    application's cookie. A signed-in request passes with them untouched
    and with its identity; one without a session gets its 401; the filter
    goes on serving: nothing aborts its VM."""
    b, r = sign_in(hostile_envoy, "/latin1")
    assert r.status_code == 302, describe(r)
    ours = "; ".join(f"{c.name}={c.value}" for c in b.cookies if c.name.startswith(COOKIE))
    path = unique_path("/latin1")
    latin1 = [("Accept", b"application/json"), ("X-Note", b"caf\xe9")]

    status, body = _raw_get(hostile_envoy.port, path,
                            latin1 + [("Cookie", b"app=caf\xe9; " + ours.encode())])
    assert status == 200, body
    view = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])
    assert view["headers"]["x-note"] == "café", "the header reaches the upstream untouched"
    assert view["headers"]["x-forwarded-user"] == ALICE["sub"]

    status, _ = _raw_get(hostile_envoy.port, path, latin1 + [("Cookie", b"app=caf\xe9")])
    assert status == 401
    assert upstream_view(b, hostile_envoy.url, path)["headers"]["x-forwarded-user"] == ALICE["sub"]


# --------------------------------------------------------------------------
# Cookies


def sign_in_again(envoy, b, rd: str):
    """A signed-in browser signs in again (``/oauth2/start?prompt=login``):
    Envoy's answer to the callback."""
    start = b.get(envoy.url + f"/oauth2/start?prompt=login&rd={rd}",
                  headers=HTML, allow_redirects=False, timeout=10)
    assert start.status_code == 302, describe(start)
    assert query(start.headers["Location"])["prompt"] == "login"
    return deliver_callback(b, authorize(start.headers["Location"]))


def test_a_new_sign_in_replaces_the_previous_session_whole(hostile_envoy, hostile, upstream):
    """Alice is signed in with a single session cookie; bob signs in on the
    same browser (``/oauth2/start?prompt=login``) and gets a chunked
    session: the callback clears alice's cookie, and the upstream sees bob.
    Then alice again, small: bob's chunks are cleared."""
    b, r = sign_in(hostile_envoy, "/as-alice")
    assert r.status_code == 302, describe(r)
    assert COOKIE in b.cookies

    hostile.control(user={**USERS["bob"], "bio": "bob" * 1400})
    r = sign_in_again(hostile_envoy, b, "/as-bob")

    assert r.status_code == 302, describe(r)
    assert is_clearing(set_cookie(r, COOKIE)), set_cookies(r)
    assert len(session_cookie_sets(r)) >= 2, set_cookies(r)
    assert upstream_view(b, hostile_envoy.url, unique_path("/who"))["headers"][
        "x-forwarded-user"] == USERS["bob"]["sub"]

    hostile.control(user=dict(ALICE))
    r = sign_in_again(hostile_envoy, b, "/alice-again")
    assert r.status_code == 302, describe(r)
    cleared = {cookie_attributes(c)[0] for c in set_cookies(r) if is_clearing(c)}
    assert {f"{COOKIE}_0", f"{COOKIE}_1"} <= cleared, set_cookies(r)
    assert upstream_view(b, hostile_envoy.url, unique_path("/who"))["headers"][
        "x-forwarded-user"] == ALICE["sub"]


def test_a_session_that_cannot_be_read_back_is_never_written(
        make_hostile_envoy, hostile, upstream):
    """A provider whose access tokens are 26 KB: passed upstream
    (``pass_access_token``), the session would need more than eight
    chunks, which Sésame never reads back; so the sign-in ends on a clear
    page counted ``login_failure.session_too_large``, without writing a
    session (with single sign-on at the provider, a session written and
    never read would loop for ever)."""
    hostile.control(access_token_bytes=19_500)
    envoy = make_hostile_envoy(pass_access_token=True)
    path = unique_path("/huge")
    counters = Counters(envoy)

    b, r = sign_in(envoy, path)

    assert_refused(envoy, upstream, counters, b, r, path, status=502,
                   reason="session_too_large")


def test_a_token_nothing_needs_is_left_out_so_the_session_fits(
        hostile_envoy, hostile, upstream):
    """The same provider with the default configuration (the access token
    is not passed upstream, and without a refresh token nothing else needs
    it): Sésame leaves the token out, the session fits, and the next
    request is signed in."""
    hostile.control(access_token_bytes=19_500)
    path = unique_path("/huge-default")
    b, r = sign_in(hostile_envoy, path)
    assert_signed_in(hostile_envoy, b, r, path)
    assert sum(len(c.value) for c in b.cookies if c.name.startswith(COOKIE)) < 8 * 3800


@pytest.fixture(scope="module")
def chunked_sessions(hostile_envoy, hostile_provider) -> dict[str, dict[str, str]]:
    """Sessions too big for one cookie (the provider adds a long claim):
    ``{"alice": {"_sesame_0": ..., "_sesame_1": ..., ...}, "bob": {...}}``."""
    sessions = {}
    for name in ("alice", "bob"):
        user = {**USERS[name], "bio": name * 1400}
        hostile_provider.control(reset=True, user=user)
        b, r = sign_in(hostile_envoy, f"/{name}")
        assert r.status_code == 302, describe(r)
        chunks = {c.name: c.value for c in b.cookies if c.name.startswith(COOKIE + "_")}
        assert len(chunks) >= 3, f"not chunked enough: {sorted(chunks)}"
        assert COOKIE not in b.cookies
        sessions[name] = chunks
    hostile_provider.control(reset=True)
    return sessions


def _cookie_header(chunks: dict[str, str] | list[tuple[str, str]]) -> str:
    pairs = chunks.items() if isinstance(chunks, dict) else chunks
    return "; ".join(f"{k}={v}" for k, v in pairs)


def _chunk(i: int) -> str:
    return f"{COOKIE}_{i}"


def test_chunked_session_passes_untouched(hostile_envoy, chunked_sessions):
    """Control for the tests below: the chunks as the browser got them,
    in any order in the header, open."""
    for name, chunks in chunked_sessions.items():
        r = raw_get(hostile_envoy.url, "/chunks", _cookie_header(chunks), JSON)
        assert r.status_code == 200, describe(r)
        assert r.json()["headers"]["x-forwarded-user"] == USERS[name]["sub"]
        backwards = list(reversed(list(chunks.items())))
        r = raw_get(hostile_envoy.url, "/chunks", _cookie_header(backwards), JSON)
        assert r.status_code == 200, describe(r)


def _forged_chunks(kind: str, sessions: dict[str, dict[str, str]]) -> str:
    alice, bob = sessions["alice"], sessions["bob"]
    n = len(alice)
    values = [alice[_chunk(i)] for i in range(n)]
    if kind == "middle-chunk-missing":
        return _cookie_header({k: v for k, v in alice.items() if k != _chunk(1)})
    if kind == "last-chunk-missing":
        return _cookie_header({k: v for k, v in alice.items() if k != _chunk(n - 1)})
    if kind == "first-chunk-missing":
        return _cookie_header({k: v for k, v in alice.items() if k != _chunk(0)})
    if kind == "chunks-swapped":
        swapped = values[:]
        swapped[0], swapped[1] = swapped[1], swapped[0]
        return _cookie_header({_chunk(i): v for i, v in enumerate(swapped)})
    count, first = values[0].split(".", 1)
    assert int(count) == n
    if kind == "count-raised-with-an-extra-chunk":
        return _cookie_header({**alice, _chunk(0): f"{n + 1}.{first}", _chunk(n): values[-1]})
    if kind == "count-lowered":
        return _cookie_header({**alice, _chunk(0): f"{n - 1}.{first}"})
    if kind == "chunk-count-beyond-limit":
        return _cookie_header({**alice, _chunk(0): f"9.{first}",
                               **{_chunk(i): "AAAA" for i in range(n, 9)}})
    if kind == "no-count":
        return _cookie_header({**alice, _chunk(0): first})
    if kind == "chunk-of-another-user":
        return _cookie_header({**alice, _chunk(1): bob[_chunk(1)]})
    if kind == "chunk-truncated":
        return _cookie_header({**alice, _chunk(1): values[1][:-10]})
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "middle-chunk-missing", "last-chunk-missing", "first-chunk-missing", "chunks-swapped",
    "count-raised-with-an-extra-chunk", "count-lowered", "chunk-count-beyond-limit", "no-count",
    "chunk-of-another-user", "chunk-truncated",
])
def test_forged_chunks_are_no_session(hostile_envoy, upstream, chunked_sessions, kind):
    """Chunks missing, reordered, added under a raised count, a count
    changed, past the limit, or missing, chunks taken from another person's
    session, or truncated: "not signed in" (302 for a page, 401 for a
    script), the chunks cleared, nothing upstream."""
    cookie = _forged_chunks(kind, chunked_sessions)
    path = unique_path("/chunks")
    counters = Counters(hostile_envoy)

    nav = raw_get(hostile_envoy.url, path, cookie, HTML)
    xhr = raw_get(hostile_envoy.url, path, cookie, XHR)

    assert nav.status_code == 302, describe(nav)
    assert "/authorize?" in nav.headers["Location"]
    assert xhr.status_code == 401, describe(xhr)
    assert xhr.json()["error"] == "unauthenticated"
    for r in (nav, xhr):
        assert not session_cookie_sets(r), set_cookies(r)
    cleared = {cookie_attributes(c)[0] for c in set_cookies(xhr) if is_clearing(c)}
    assert cleared, "the forged cookies are not cleared"
    assert counters.delta() == {"login_started": 1, "requests_unauthenticated": 1}
    assert_not_upstream(upstream, path)


def test_chunks_left_over_from_a_longer_session_are_never_read(
        hostile_envoy, upstream, chunked_sessions):
    """The first chunk says how many chunks the session has (``N.``):
    chunks past that (left by a longer session whose clearing the browser
    lost, or added by anyone) are not read, and the session still opens
    as itself."""
    alice = chunked_sessions["alice"]
    n = len(alice)
    leftovers = {_chunk(n): alice[_chunk(1)], _chunk(n + 1): "AAAA"}
    r = raw_get(hostile_envoy.url, unique_path("/leftovers"),
                _cookie_header({**alice, **leftovers}), JSON)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-user"] == USERS["alice"]["sub"]


def test_login_cookie_is_not_a_session(hostile_envoy, upstream):
    """The sealed value of a login cookie (another purpose, another key)
    copied into the session cookie does not open."""
    r = browser().get(hostile_envoy.url + "/x", headers=HTML, allow_redirects=False,
                      timeout=10)
    state = query(r.headers["Location"])["state"]
    _, login_value, _ = cookie_attributes(set_cookie(r, f"{COOKIE}_csrf_{state[:16]}"))
    path = unique_path("/purpose")

    xhr = raw_get(hostile_envoy.url, path, f"{COOKIE}={login_value}", XHR)

    assert xhr.status_code == 401, describe(xhr)
    assert_not_upstream(upstream, path)


@pytest.mark.parametrize("kind", ["one-20-kib-cookie", "eight-full-chunks",
                                  "300-cookies-before-the-session"])
def test_oversized_cookies_are_no_session(hostile_envoy, upstream, chunked_sessions, kind):
    """A 20 KiB session cookie, eight chunks of junk, or a session cookie
    hidden behind 300 other cookies (Sésame reads the first 200): "not
    signed in", never a 500, nothing upstream."""
    if kind == "one-20-kib-cookie":
        cookie = f"{COOKIE}={'A' * 20_000}"
    elif kind == "eight-full-chunks":
        cookie = _cookie_header({_chunk(i): "A" * 3800 for i in range(8)})
    else:
        cookie = "; ".join(f"c{i}=v" for i in range(300)) + "; " + \
            _cookie_header(chunked_sessions["alice"])
    path = unique_path("/big")
    counters = Counters(hostile_envoy)

    xhr = raw_get(hostile_envoy.url, path, cookie, XHR)

    assert xhr.status_code == 401, describe(xhr)
    assert counters.delta() == {"requests_unauthenticated": 1}
    assert_not_upstream(upstream, path)


def test_many_cookies_after_the_session_do_not_hide_it(hostile_envoy, chunked_sessions):
    """Control for the case above: the same 300 cookies after the session's
    chunks leave the session readable."""
    cookie = _cookie_header(chunked_sessions["alice"]) + "; " + \
        "; ".join(f"c{i}=v" for i in range(300))
    r = raw_get(hostile_envoy.url, "/many", cookie, JSON)
    assert r.status_code == 200, describe(r)


def test_cookie_header_beyond_envoy_limit_is_refused_by_envoy(hostile_envoy, upstream):
    """A ``Cookie`` header past Envoy's 60 KiB header limit is answered by
    Envoy (431), before the filter; the filter keeps working."""
    path = unique_path("/huge-cookie")
    mark = upstream_mark(upstream)

    status, _, _ = bare_request(hostile_envoy.port, "GET", path,
                                {"Cookie": f"{COOKIE}={'A' * 70_000}", **JSON})

    assert status == 431, status
    assert_not_upstream(upstream, path, since=mark)
    assert raw_get(hostile_envoy.url, "/ping", None, JSON).status_code == 200
