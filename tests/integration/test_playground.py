"""The OpenGateLLM Playground behind Sésame with ProConnect, as it used to be
behind oauth2-proxy: the ``/oauth2/auth`` check the OpenGateLLM API makes
with the browser's cookies, the Playground's own routes (the Reflex
WebSocket ``/_event``, ``POST /_upload``, the public ``GET /ping``), and the
sign-in page with the ProConnect button (``skip_provider_button: false``).

Through the shared ``proconnect_envoy`` (see ``test_proconnect.py``) and, for
other configurations, ``make_proconnect_envoy``.
"""

from __future__ import annotations

import json
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest

from oidc_client import (
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
    deliver_callback,
    describe,
    logged_in,
    query,
    unique_path,
    upstream_mark,
    upstream_paths,
    upstream_view,
    websocket,
)


@pytest.fixture(scope="module")
def alice(proconnect_envoy):
    """A browser signed in as alice on the shared ProConnect Envoy."""
    return logged_in(proconnect_envoy.url, "alice")


def browser_cookies(b) -> str:
    """The ``Cookie:`` header the browser sends to the Playground, among
    cookies of the Playground's own."""
    ours = "; ".join(f"{c.name}={c.value}" for c in b.cookies)
    return f"_ga=GA1.1.1234567890.1700000000; {ours}; theme=dark"


# --------------------------------------------------------------------------
# 5. /oauth2/auth as the OpenGateLLM API calls it


def auth_check(envoy, cookie: str | None):
    """``GET /oauth2/auth`` with nothing but ``Host`` and ``Cookie``."""
    return bare_request(envoy.port, "GET", "/oauth2/auth",
                        {"Cookie": cookie} if cookie is not None else {})


def test_auth_check_with_browser_cookies_is_202_with_identity(
        proconnect_envoy, upstream, alice):
    """A server-to-server ``GET /oauth2/auth`` with only the browser's
    cookies (no Accept, no User-Agent): 202 with ``X-Auth-Request-Email``
    and ``X-Auth-Request-User``; the upstream is not involved."""
    mark = upstream_mark(upstream)
    counters = Counters(proconnect_envoy, ticked=True)

    status, headers, body = auth_check(proconnect_envoy, browser_cookies(alice))

    assert status == 202, (status, headers, body[:300])
    assert headers["x-auth-request-email"] == USERS["alice"]["email"]
    assert headers["x-auth-request-user"] == USERS["alice"]["sub"]
    assert headers["x-forwarded-siret"] == USERS["alice"]["siret"]
    assert "location" not in headers
    assert counters.delta() == {"endpoint_authorized": 1}
    assert_not_upstream(upstream, "/oauth2/auth", since=mark)


@pytest.mark.parametrize("cookie", [
    None,
    f"{COOKIE}=garbage",
    f"_ga=GA1.1.1; {COOKIE}=AAAA{'x' * 200}; theme=dark",
], ids=["no-cookie", "garbage-cookie", "forged-cookie"])
def test_auth_check_without_a_valid_session_is_401(proconnect_envoy, cookie):
    """Without a (valid) session the answer is 401, never a redirect to the
    provider (the caller is a server, not a browser)."""
    counters = Counters(proconnect_envoy)

    status, headers, body = auth_check(proconnect_envoy, cookie)

    assert status == 401, (status, headers, body[:300])
    assert "location" not in headers
    assert "x-auth-request-email" not in headers
    assert counters.delta() == {"endpoint_unauthorized": 1}


def test_auth_check_with_an_expired_session_is_401(make_proconnect_envoy, proconnect_envoy):
    """A session past its lifetime (``session_lifetime: 1``) is 401, on the
    Envoy that made it and on the shared one (same cookie secret)."""
    envoy = make_proconnect_envoy(session_lifetime=1)
    b = logged_in(envoy.url, "alice")
    signed_in_at = time.monotonic()
    cookie = browser_cookies(b)
    assert auth_check(envoy, cookie)[0] == 202

    time.sleep(max(0.0, signed_in_at + 1.2 - time.monotonic()))

    assert auth_check(envoy, cookie)[0] == 401
    status, headers, _ = auth_check(proconnect_envoy, cookie)
    assert status == 401 and "location" not in headers, (status, headers)


def test_auth_check_for_a_person_the_rules_refuse_is_403(
        make_proconnect_envoy, proconnect_envoy):
    """eve signed in where everyone is admitted; the Playground
    (``*.gouv.fr``) answers 403 to her cookie, without identity headers."""
    open_door = make_proconnect_envoy(allowed_email_domains=["*"])
    cookie = browser_cookies(logged_in(open_door.url, "eve"))
    assert auth_check(open_door, cookie)[0] == 202
    counters = Counters(proconnect_envoy)

    status, headers, body = auth_check(proconnect_envoy, cookie)

    assert status == 403, (status, headers, body[:300])
    assert "x-auth-request-email" not in headers
    assert "location" not in headers
    assert counters.delta() == {"access_denied": 1}


# --------------------------------------------------------------------------
# 7. The Playground's routes


EVENT_PATH = "/_event/?EIO=4&transport=websocket"


def test_event_websocket_without_session_is_401(proconnect_envoy, upstream):
    """Reflex's WebSocket before sign-in: 401, and the upstream never sees
    the upgrade."""
    mark = upstream_mark(upstream)
    counters = Counters(proconnect_envoy)

    result = websocket(proconnect_envoy.port, EVENT_PATH, {"Origin": proconnect_envoy.url},
                       [uuid.uuid4().hex])

    assert result.status == 401, result
    assert b"unauthenticated" in result.body
    assert counters.delta() == {"requests_unauthenticated": 1}
    assert_not_upstream(upstream, "/_event/", since=mark)


def test_event_websocket_with_session_reaches_the_playground(
        proconnect_envoy, upstream, alice):
    """After sign-in the upgrade goes through: 101 with the subprotocol
    echoed; the Playground sees the identity headers (Authorization: Bearer
    included) and the original ``Sec-WebSocket-Protocol``."""
    token = str(uuid.uuid4())
    mark = upstream_mark(upstream)
    counters = Counters(proconnect_envoy, ticked=True)

    result = websocket(proconnect_envoy.port, EVENT_PATH,
                       {"Cookie": browser_cookies(alice), "Origin": proconnect_envoy.url},
                       [token])

    assert result.status == 101, result
    assert result.headers["sec-websocket-protocol"] == token
    seen = json.loads(result.messages[0])
    assert seen["path"] == EVENT_PATH
    headers = seen["headers"]
    assert headers["sec-websocket-protocol"] == token
    assert headers["upgrade"].lower() == "websocket"
    assert headers["x-forwarded-email"] == USERS["alice"]["email"]
    assert headers["x-forwarded-user"] == USERS["alice"]["sub"]
    assert headers["x-forwarded-siret"] == USERS["alice"]["siret"]
    assert headers["authorization"] == "Bearer " + headers["x-forwarded-id-token"]
    assert counters.delta() == {"requests_passed": 1}
    assert "/_event/" in upstream_paths(upstream, since=mark)


def upload(b, envoy):
    return b.post(envoy.url + "/_upload",
                  files={"files": ("note.txt", b"Bonjour\n" * 50, "text/plain")},
                  headers={"Accept": "application/json, text/plain, */*",
                           "Reflex-Client-Token": str(uuid.uuid4()),
                           "Reflex-Event-Handler": "state.handle_upload"},
                  allow_redirects=False, timeout=10)


def test_upload_with_session_reaches_the_playground(proconnect_envoy, alice):
    """``POST /_upload`` (multipart/form-data) with the session: passed on,
    body and all, with the identity headers."""
    r = upload(alice, proconnect_envoy)

    assert r.status_code == 200, describe(r)
    seen = r.json()
    assert seen["method"] == "POST" and seen["path"] == "/_upload"
    headers = seen["headers"]
    assert headers["content-type"] == r.request.headers["Content-Type"]
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert headers["content-length"] == str(len(r.request.body))
    assert headers["x-forwarded-email"] == USERS["alice"]["email"]
    assert headers["x-auth-request-email"] == USERS["alice"]["email"]


def test_upload_without_session_is_401(proconnect_envoy, upstream):
    mark = upstream_mark(upstream)

    r = upload(browser(), proconnect_envoy)

    assert r.status_code == 401, describe(r)
    assert r.json()["error"] == "unauthenticated"
    assert "Location" not in r.headers
    assert_not_upstream(upstream, "/_upload", since=mark)


def test_ping_is_open_without_session(proconnect_envoy, upstream):
    """``GET /ping`` (the health check) passes without a session, without
    identity made up by the client; ``POST /ping`` does not."""
    counters = Counters(proconnect_envoy, ticked=True)

    view = upstream_view(None, proconnect_envoy.url, "/ping",
                         {"X-Forwarded-Email": "boss@evil.example",
                          "Authorization": "Bearer forged"})
    post = browser().post(proconnect_envoy.url + "/ping", headers=JSON, timeout=10)

    assert view["path"] == "/ping"
    assert "x-forwarded-email" not in view["headers"]
    assert "authorization" not in view["headers"]
    assert post.status_code == 401, describe(post)
    assert counters.delta() == {"requests_public": 1, "requests_unauthenticated": 1}


# --------------------------------------------------------------------------
# 8. The sign-in page with the ProConnect button


class Links(HTMLParser):
    """Every ``<a>`` of a page: (href, its text with whitespace collapsed)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._open: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open.append([dict(attrs).get("href") or "", ""])

    def handle_data(self, data):
        # Text pieces of separate elements (the button's two spans, shown as
        # blocks) are separate words.
        for link in self._open:
            link[1] += " " + data

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            href, text = self._open.pop()
            self.links.append((href, " ".join(text.split())))

    def find(self, text: str) -> str:
        found = [href for href, t in self.links if text in t]
        assert len(found) == 1, f"{text!r} in {self.links}"
        return found[0]


@pytest.fixture
def button_envoy(make_proconnect_envoy):
    return make_proconnect_envoy(skip_provider_button=False)


def test_sign_in_page_with_the_proconnect_button(button_envoy, proconnect_provider, upstream):
    """A navigation to /chat without a session goes to
    ``/oauth2/sign_in?rd=%2Fchat``: a French page with the ProConnect button
    ("S’identifier avec ProConnect") and the "Qu’est-ce que ProConnect ?"
    link; the button leads to the provider, and the whole sign-in lands on
    /chat."""
    b = browser()
    mark = upstream_mark(upstream)

    r = b.get(button_envoy.url + "/chat", headers=HTML, allow_redirects=False, timeout=10)

    assert r.status_code == 302, describe(r)
    assert r.headers["Location"] == "/oauth2/sign_in?rd=%2Fchat"

    page = b.get(button_envoy.url + r.headers["Location"], headers=HTML,
                 allow_redirects=False, timeout=10)

    assert page.status_code == 200, describe(page)
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert '<html lang="fr"' in page.text
    links = Links(page.text)
    button = links.find("S’identifier avec ProConnect")
    assert button == "/oauth2/start?rd=%2Fchat"
    assert links.find("Qu’est-ce que ProConnect ?") == "https://www.proconnect.gouv.fr/"
    assert_not_upstream(upstream, "/chat", since=mark)

    start = b.get(button_envoy.url + button, headers=HTML, allow_redirects=False, timeout=10)

    assert start.status_code == 302, describe(start)
    assert start.headers["Location"].startswith(proconnect_provider.issuer + "/auth?")
    done = deliver_callback(b, authorize(start.headers["Location"], "alice"))
    assert done.status_code == 302 and done.headers["Location"] == "/chat", describe(done)
    assert b.cookies.get(COOKIE)
    assert upstream_view(b, button_envoy.url, "/chat")["headers"]["x-forwarded-email"] \
        == USERS["alice"]["email"]


def test_sign_in_page_in_english_and_hints_through_the_button(
        button_envoy, proconnect_provider):
    """In English for an English browser; hints given to
    ``/oauth2/sign_in`` go with the button to the provider."""
    hints = {"idp_hint": "fia2v2", "login_hint": "bob.durand@interieur.gouv.fr"}
    b = browser()
    page = b.get(button_envoy.url + "/oauth2/sign_in?" + urlencode({"rd": "/models", **hints}),
                 headers={**HTML, "Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"},
                 allow_redirects=False, timeout=10)

    assert page.status_code == 200, describe(page)
    assert '<html lang="en"' in page.text
    links = Links(page.text)
    assert links.find("What is ProConnect?") == "https://www.proconnect.gouv.fr/"
    button = links.find("Sign in with ProConnect")

    start = b.get(button_envoy.url + button, headers=HTML, allow_redirects=False, timeout=10)
    assert start.status_code == 302, describe(start)
    auth_url = start.headers["Location"]
    assert {k: query(auth_url).get(k) for k in hints} == hints
    done = deliver_callback(b, authorize(auth_url, "bob"))
    assert done.status_code == 302 and done.headers["Location"] == "/models", describe(done)
    sent = proconnect_provider.last_authorize()
    assert {k: sent.get(k) for k in hints} == hints


def test_scripts_still_get_401_with_the_sign_in_page(button_envoy, upstream):
    """The sign-in page is for navigations only: an XHR without a session
    still gets 401, not a redirect."""
    path = unique_path("/api")
    r = browser().get(button_envoy.url + path, headers=XHR, allow_redirects=False, timeout=10)

    assert r.status_code == 401, describe(r)
    assert "Location" not in r.headers
    assert_not_upstream(upstream, path)


def test_sign_in_page_is_not_counted_as_an_auth_answer(button_envoy):
    """``endpoint_authorized`` counts ``/oauth2/auth`` and
    ``/oauth2/userinfo`` answers (docs/CONFIGURATION.md): a person merely
    looking at the sign-in page must not add to it (it would read as a
    successful auth_request check in monitoring)."""
    counters = Counters(button_envoy, ticked=True)

    page = browser().get(button_envoy.url + "/oauth2/sign_in?rd=%2Fchat", headers=HTML,
                         allow_redirects=False, timeout=10)

    assert page.status_code == 200, describe(page)
    changed = counters.delta()
    assert "endpoint_authorized" not in changed, changed
