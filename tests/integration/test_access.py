"""Access rules: allowed_email_domains, allowed_emails, allowed_claims, and
what a signed-in person who is not admitted sees (a 403 page, no session,
nothing upstream).

The provider's users: alice (numerique.gouv.fr, siret 13002526500013,
idp_id fia1v2), bob (interieur.gouv.fr, 11000201100044, fia2v2), eve
(example.com, 40483304800022, other-idp).
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest

from oidc_client import (
    COOKIE,
    HTML,
    JSON,
    USERS,
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
    login_location,
    query,
    raw_get,
    session_cookie_sets,
    set_cookie,
    unique_path,
    upstream_view,
)


def assert_admitted(envoy, user: str) -> None:
    b = logged_in(envoy.url, user)
    headers = upstream_view(b, envoy.url, "/admitted")["headers"]
    assert headers["x-forwarded-email"] == USERS[user]["email"]


def assert_denied(envoy, upstream, user: str) -> None:
    """The sign-in of ``user`` ends on the 403 page: no session, nothing
    upstream, counted ``access_denied``."""
    path = unique_path("/denied")
    counters = Counters(envoy)

    r = login(browser(), envoy.url, user, path)

    assert r.status_code == 403, describe(r)
    assert not session_cookie_sets(r), r.headers
    assert counters.delta() == {"login_started": 1, "access_denied": 1}
    assert_not_upstream(upstream, path)


def test_user_outside_allowed_domains_gets_a_403_page(sesame_envoy, upstream):
    """``*.gouv.fr``: eve (example.com) signs in at the provider but gets a
    403 page naming her address with a link to sign out and change
    account; no session cookie, the login cookie cleared, nothing upstream."""
    b = browser()
    path = unique_path("/eve")
    auth_url = login_location(b, sesame_envoy.url, path)
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, authorize(auth_url, "eve"))

    assert r.status_code == 403, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    assert "eve@example.com" in r.text
    assert 'href="/oauth2/sign_out?rd=/oauth2/sign_in%3Fprompt%3Dlogin"' in r.text
    assert not session_cookie_sets(r)
    assert is_clearing(set_cookie(r, f"{COOKIE}_csrf_{query(auth_url)['state'][:16]}"))
    assert not b.cookies.get(COOKIE)
    assert counters.delta() == {"access_denied": 1}
    assert_not_upstream(upstream, path)
    # Still not signed in afterwards.
    assert b.get(sesame_envoy.url + path, headers=JSON, timeout=10).status_code == 401


def test_a_refusal_ends_on_a_clean_address_that_a_reload_does_not_replay(sesame_envoy):
    """The refused callback answers with a redirect to
    ``/oauth2/failed?reason=…``: the address bar never keeps the code and
    state, a reload shows the same page without replaying the callback, and
    the address shared with someone else tells the reason, never who."""
    b = browser()
    callback = authorize(login_location(b, sesame_envoy.url, "/"), "eve")
    counters = Counters(sesame_envoy)

    r = deliver_callback(b, callback, follow_refusal=False)

    assert r.status_code == 302, describe(r)
    location = r.headers["Location"]
    assert location == "/oauth2/failed?reason=denied&status=403&rd=%2F", location
    refusal = set_cookie(r, f"{COOKIE}_refusal")
    assert refusal and "eve" not in refusal, refusal
    attrs = cookie_attributes(refusal)[2]
    assert attrs["path"] == "/oauth2/failed" and "httponly" in attrs, refusal
    for _ in range(2):  # the page, then a reload
        page = b.get(sesame_envoy.url + location, headers=HTML, allow_redirects=False, timeout=10)
        assert page.status_code == 403, describe(page)
        assert "eve@example.com" in page.text
    assert counters.delta() == {"access_denied": 1}, "counted once, at the callback"
    shared = browser().get(sesame_envoy.url + location, headers=HTML, allow_redirects=False,
                           timeout=10)
    assert shared.status_code == 403, describe(shared)
    assert "denied" in shared.text and "eve@" not in shared.text


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_users_in_allowed_domains_are_admitted(sesame_envoy, user):
    """``*.gouv.fr`` admits numerique.gouv.fr and interieur.gouv.fr."""
    assert_admitted(sesame_envoy, user)


def test_exact_email_domain(make_envoy, make_config, upstream):
    """``numerique.gouv.fr`` (no ``*.``) admits that domain only."""
    envoy = make_envoy(make_config(allowed_email_domains=["numerique.gouv.fr"]))
    assert_admitted(envoy, "alice")
    assert_denied(envoy, upstream, "bob")
    assert_denied(envoy, upstream, "eve")


def test_allowed_emails(make_envoy, make_config, upstream):
    """``allowed_emails`` (compared without case) admits the listed addresses
    and no one else."""
    envoy = make_envoy(make_config(
        allowed_email_domains=None,
        allowed_emails=["Bob.Durand@Interieur.GOUV.fr", "eve@example.com"],
    ))
    assert_admitted(envoy, "bob")
    assert_admitted(envoy, "eve")
    assert_denied(envoy, upstream, "alice")


def test_allowed_claims_siret(make_envoy, make_config, upstream):
    """``allowed_claims: {"siret": [...]}`` admits people of the listed
    organisations only, whatever their email domain."""
    envoy = make_envoy(make_config(
        allowed_email_domains=None,
        allowed_claims={"siret": ["13002526500013", "40483304800022"]},
    ))
    assert_admitted(envoy, "alice")
    assert_admitted(envoy, "eve")
    assert_denied(envoy, upstream, "bob")


def test_allowed_claims_and_domains_must_all_pass(make_envoy, make_config, upstream):
    """Rules of different kinds combine with AND: ``*.gouv.fr`` plus
    ``idp_id`` in [fia2v2, other-idp] admits bob only (alice fails the
    claim, eve the domain)."""
    envoy = make_envoy(make_config(
        allowed_email_domains=["*.gouv.fr"],
        allowed_claims={"idp_id": ["fia2v2", "other-idp"]},
    ))
    assert_admitted(envoy, "bob")
    assert_denied(envoy, upstream, "alice")
    assert_denied(envoy, upstream, "eve")


def test_rules_are_checked_on_every_request_not_only_at_sign_in(
        make_envoy, make_config, upstream):
    """A session made when eve was admitted no longer passes once the rules
    exclude her (same cookie secret, new configuration): 403 page for pages
    and API calls, 403 from /oauth2/auth, nothing upstream."""
    open_door = make_envoy(make_config(allowed_email_domains=["*"]))
    eve_cookie = f"{COOKIE}={logged_in(open_door.url, 'eve').cookies[COOKIE]}"
    assert raw_get(open_door.url, "/", eve_cookie, JSON).status_code == 200
    open_door.stop()

    strict = make_envoy(make_config(allowed_email_domains=["*.gouv.fr"]))
    path = unique_path("/strict")
    counters = Counters(strict)

    page = raw_get(strict.url, path, eve_cookie, HTML)
    api = raw_get(strict.url, path, eve_cookie, JSON)
    auth = raw_get(strict.url, "/oauth2/auth", eve_cookie)

    assert page.status_code == 403, describe(page)
    assert "eve@example.com" in page.text
    assert api.status_code == 403, describe(api)
    assert auth.status_code == 403, describe(auth)
    assert "x-auth-request-email" not in {k.lower() for k in auth.headers}
    assert counters.delta() == {"access_denied": 3}
    assert_not_upstream(upstream, path)


def provider_signs_in_at_once(provider_browser, auth_url: str, envoy_url: str) -> bool:
    """Whether the provider, for this browser, sends it straight back to
    Sésame's callback (its session still open) without asking anything."""
    url = auth_url
    for _ in range(8):
        r = provider_browser.get(url, allow_redirects=False, timeout=10)
        if r.status_code not in (301, 302, 303, 307):
            return False
        url = urljoin(url, r.headers["Location"])
        if url.startswith(envoy_url):
            return True
    return False


def test_eve_can_switch_accounts_from_the_403_page(sesame_envoy, upstream):
    """Eve is refused (403). The page's button signs her out and starts a
    sign-in with ``prompt=login``: the provider, where eve's session is still
    open, then asks who is signing in, where without it it signs eve straight
    back in (which ended on the same 403 page, twice). Alice signs in."""
    b, provider_browser = browser(), browser()
    auth_url = login_location(b, sesame_envoy.url, unique_path("/switch"))
    r = deliver_callback(b, authorize(auth_url, "eve", provider_browser=provider_browser))
    assert r.status_code == 403, describe(r)

    button = re.search(r'href="(/oauth2/sign_out\?[^"]+)"', r.text).group(1)
    out = b.get(sesame_envoy.url + button, headers=HTML, allow_redirects=False, timeout=10)
    assert out.status_code == 302, describe(out)
    assert out.headers["Location"] == "/oauth2/sign_in?prompt=login"
    start = b.get(sesame_envoy.url + out.headers["Location"], headers=HTML,
                  allow_redirects=False, timeout=10)
    assert start.status_code == 302, describe(start)
    switch_url = start.headers["Location"]
    assert query(switch_url)["prompt"] == "login"

    # Control: without prompt=login, eve's provider session signs her in at once.
    plain = login_location(browser(), sesame_envoy.url, unique_path("/plain"))
    assert provider_signs_in_at_once(provider_browser, plain, sesame_envoy.url)
    # With it, the provider asks.
    assert not provider_signs_in_at_once(provider_browser, switch_url, sesame_envoy.url)

    done = deliver_callback(b, authorize(switch_url, "alice"))
    assert done.status_code == 302, describe(done)
    headers = upstream_view(b, sesame_envoy.url, unique_path("/as-alice"))["headers"]
    assert headers["x-forwarded-email"] == USERS["alice"]["email"]
