"""The session cookie: what Sésame accepts as a session and what it treats as
"not signed in" (tampered, truncated, sealed with another secret, expired),
and session chunks.

Cookies are sent as raw ``Cookie:`` headers, so that what Sésame receives is
exactly what the test says (a cookie jar would drop an expired cookie itself).
"""

from __future__ import annotations

import time

import pytest

from oidc_client import (
    COOKIE,
    HTML,
    JSON,
    OTHER_COOKIE_SECRET,
    USERS,
    XHR,
    Counters,
    assert_not_upstream,
    authorize,
    browser,
    cookie_attributes,
    deliver_callback,
    describe,
    is_clearing,
    logged_in,
    login,
    query,
    raw_get,
    set_cookie,
    set_cookies,
    unique_path,
)


@pytest.fixture(scope="module")
def alice_cookie(sesame_envoy) -> str:
    """The value of a valid session cookie of alice on the shared Envoy."""
    return logged_in(sesame_envoy.url, "alice").cookies[COOKIE]


def flip(text: str, index: int) -> str:
    """``text`` with one base64url character changed."""
    c = text[index]
    return text[:index] + ("B" if c == "A" else "A") + text[index + 1:]


def test_valid_session_cookie_passes(sesame_envoy, alice_cookie):
    """Control for the tests below: the untouched cookie, sent raw, passes."""
    r = raw_get(sesame_envoy.url, "/control", f"{COOKIE}={alice_cookie}", JSON)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-email"] == USERS["alice"]["email"]


BAD_COOKIES = {
    "flipped-start": lambda v: flip(v, 5),
    "flipped-middle": lambda v: flip(v, len(v) // 2),
    "flipped-end": lambda v: flip(v, len(v) - 3),
    "truncated": lambda v: v[: len(v) // 2],
    "one-char-less": lambda v: v[:-1],
    "extended": lambda v: v + "AAAA",
    "not-base64": lambda v: "%%%not*base64!!",
    "empty": lambda v: "",
}


@pytest.mark.parametrize("kind", list(BAD_COOKIES))
def test_damaged_session_cookie_is_no_session(sesame_envoy, upstream, alice_cookie, kind):
    """A damaged session cookie is "not signed in", never an error: a page
    navigation is sent to the provider, a script gets 401, and both answers
    clear the bad cookie; nothing reaches the upstream."""
    bad = BAD_COOKIES[kind](alice_cookie)
    path = unique_path("/damaged")
    counters = Counters(sesame_envoy)

    nav = raw_get(sesame_envoy.url, path, f"{COOKIE}={bad}", HTML)
    xhr = raw_get(sesame_envoy.url, path, f"{COOKIE}={bad}", XHR)

    assert nav.status_code == 302, describe(nav)
    assert "/auth?" in nav.headers["Location"]
    assert xhr.status_code == 401, describe(xhr)
    for r in (nav, xhr):
        assert is_clearing(set_cookie(r, COOKIE)), set_cookies(r)
        _, _, attrs = cookie_attributes(set_cookie(r, COOKIE))
        assert attrs["path"] == "/"
    assert counters.delta() == {"login_started": 1, "requests_unauthenticated": 1}
    assert_not_upstream(upstream, path)


def test_cookie_of_another_cookie_secret_is_no_session(
        make_envoy, make_config, sesame_envoy, upstream):
    """A session sealed by a Sésame with another ``cookie_secret`` (another
    deployment) does not open here."""
    other = make_envoy(make_config(cookie_secret=OTHER_COOKIE_SECRET))
    foreign = logged_in(other.url, "alice").cookies[COOKIE]
    assert raw_get(other.url, "/", f"{COOKIE}={foreign}", JSON).status_code == 200
    path = unique_path("/foreign")

    nav = raw_get(sesame_envoy.url, path, f"{COOKIE}={foreign}", HTML)
    xhr = raw_get(sesame_envoy.url, path, f"{COOKIE}={foreign}", XHR)

    assert nav.status_code == 302, describe(nav)
    assert xhr.status_code == 401, describe(xhr)
    assert is_clearing(set_cookie(xhr, COOKIE))
    assert_not_upstream(upstream, path)


def test_session_value_under_another_cookie_name_is_no_session(sesame_envoy, alice_cookie):
    """The cookie's name is part of what is sealed: the value copied into a
    chunk name of one piece (``_sesame_1``) does not open."""
    r = raw_get(sesame_envoy.url, "/moved", f"{COOKIE}_1={alice_cookie}", XHR)
    assert r.status_code == 401, describe(r)


def test_session_in_chunks_is_read_back(sesame_envoy, alice_cookie):
    """A session too big for one cookie is written as ``_sesame_0``,
    ``_sesame_1``..., the first chunk starting with the number of chunks
    (``2.``): the same sealed value split in two chunks opens."""
    half = len(alice_cookie) // 2
    chunks = f"{COOKIE}_0=2.{alice_cookie[:half]}; {COOKIE}_1={alice_cookie[half:]}"

    ok = raw_get(sesame_envoy.url, "/chunks", chunks, JSON)
    swapped = raw_get(sesame_envoy.url, "/chunks",
                      f"{COOKIE}_0=2.{alice_cookie[half:]}; {COOKIE}_1={alice_cookie[:half]}",
                      XHR)

    assert ok.status_code == 200, describe(ok)
    assert ok.json()["headers"]["x-forwarded-user"] == USERS["alice"]["sub"]
    assert swapped.status_code == 401, describe(swapped)
    cleared = {cookie_attributes(c)[0] for c in set_cookies(swapped) if is_clearing(c)}
    assert cleared == {f"{COOKIE}_0", f"{COOKIE}_1"}


def test_session_expires_after_session_lifetime(make_envoy, make_config, upstream):
    """With ``session_lifetime`` 2 s the cookie says Max-Age=2 and Sésame
    itself refuses the session once it has expired, even if the browser
    still sends it: a page navigation starts a new sign-in that returns to
    the same page, a script gets 401."""
    envoy = make_envoy(make_config(session_lifetime=2))
    b = browser()
    r = login(b, envoy.url, "alice", "/before")
    assert r.status_code == 302, describe(r)
    _, value, attrs = cookie_attributes(set_cookie(r, COOKIE))
    assert attrs["max-age"] == "2"
    signed_in_at = time.monotonic()
    fresh = raw_get(envoy.url, "/fresh", f"{COOKIE}={value}", JSON)
    assert fresh.status_code == 200, describe(fresh)

    time.sleep(max(0.0, signed_in_at + 2.2 - time.monotonic()))
    path = unique_path("/after") + "?tab=3"
    counters = Counters(envoy)
    nav = raw_get(envoy.url, path, f"{COOKIE}={value}", HTML)
    xhr = raw_get(envoy.url, path, f"{COOKIE}={value}", XHR)

    assert nav.status_code == 302, describe(nav)
    assert xhr.status_code == 401, describe(xhr)
    assert is_clearing(set_cookie(xhr, COOKIE))
    assert counters.delta() == {"login_started": 1, "requests_unauthenticated": 1}
    assert_not_upstream(upstream, path.split("?")[0])

    # The new sign-in goes back to the page asked for.
    auth_url = nav.headers["Location"]
    state = query(auth_url)["state"]
    login_cookie = set_cookie(nav, f"{COOKIE}_csrf_{state[:16]}")
    name, login_value, _ = cookie_attributes(login_cookie)
    again = browser()
    again.cookies.set(name, login_value, domain="127.0.0.1", path="/oauth2/callback")
    done = deliver_callback(again, authorize(auth_url, "alice"))
    assert done.status_code == 302, describe(done)
    assert done.headers["Location"] == path


def test_session_of_another_issuer_or_client_with_the_same_secret_is_no_session(
        make_envoy, make_config, sesame_envoy, hostile_envoy, upstream, alice_cookie):
    """The sealing keys are bound to the provider's issuer and to the
    client id, not to ``cookie_secret`` alone: a staging deployment that
    reuses the secret and the cookie name (at another issuer, or as another
    client) cannot mint sessions this one accepts. Both Envoys here share
    the secret and the cookie name."""
    path = unique_path("/elsewhere")
    # Another issuer (the hostile provider's), the same secret and name.
    r = raw_get(hostile_envoy.url, path, f"{COOKIE}={alice_cookie}", XHR)
    assert r.status_code == 401, describe(r)
    # The same issuer, another client id.
    staging = make_envoy(make_config(client_id="staging-client"))
    r = raw_get(staging.url, path, f"{COOKIE}={alice_cookie}", XHR)
    assert r.status_code == 401, describe(r)
    assert_not_upstream(upstream, path)
    # Control: where it was sealed, it opens.
    ok = raw_get(sesame_envoy.url, "/sealed-here", f"{COOKIE}={alice_cookie}", JSON)
    assert ok.status_code == 200, describe(ok)


def test_a_session_cookie_sent_twice_is_no_session(sesame_envoy, upstream, alice_cookie):
    """Two cookies of the session's name in one request (one planted by a
    sibling sub-domain for the parent domain, or for a longer path, beside
    ours): which is ours cannot be told, so neither is used, whichever
    comes first. A ``__Host-`` cookie name prevents the planting itself."""
    bob_cookie = logged_in(sesame_envoy.url, "bob").cookies[COOKIE]
    path = unique_path("/twice")
    for header in (f"{COOKIE}={bob_cookie}; {COOKIE}={alice_cookie}",
                   f"{COOKIE}={alice_cookie}; {COOKIE}={bob_cookie}",
                   f"{COOKIE}={alice_cookie}; {COOKIE}={alice_cookie}"):
        r = raw_get(sesame_envoy.url, path, header, XHR)
        assert r.status_code == 401, describe(r)
    assert_not_upstream(upstream, path)


def test_sesames_cookies_never_reach_the_application(sesame_envoy, alice_cookie):
    """The session cookie (and a sign-in's) are taken out of the request
    before it goes upstream; the application's own cookies go on, in
    order."""
    cookie = (f"_ga=GA1.1.1; {COOKIE}={alice_cookie}; theme=dark; "
              f"{COOKIE}_csrf_abcdef=x; lang=fr")
    r = raw_get(sesame_envoy.url, unique_path("/cookies"), cookie, JSON)
    assert r.status_code == 200, describe(r)
    headers = r.json()["headers"]
    assert headers["x-forwarded-email"] == USERS["alice"]["email"]
    assert headers["cookie"] == "_ga=GA1.1.1; theme=dark; lang=fr"
    # Only ours: no Cookie header at all.
    r = raw_get(sesame_envoy.url, unique_path("/cookies"), f"{COOKIE}={alice_cookie}", JSON)
    assert r.status_code == 200, describe(r)
    assert "cookie" not in r.json()["headers"]
