"""The access document (``access_source``), API keys and personal tokens,
through a real Envoy, the real test provider (with its API resources, for
provider bearer tokens and introspection) and a real HTTP server of the
document (``harness.AccessServer``) whose answers change between steps.

One Envoy serves the module (``documents``), with ``refresh_interval: 1``
and one worker; each test starts with the base document in force (alice and
bob admitted by ``*.gouv.fr``, eve not; four API keys) and changes it as it
needs. Every document served carries one more API key of its own, the
*probe*: once the probe opens ``/__probe``, Envoy's worker enforces that
document (``Documents.put``). Tests that measure how soon a change takes
effect do not wait for the probe: they poll what they expect and compare
the time taken with ``WITHIN`` (``refresh_interval`` + the workers' one-second
tick + slack).

Two tests run an Envoy of their own: one started before any document is
served (two workers), one with API keys in its configuration and no
``access_source``.

Every secret the tests use (API keys, personal tokens, session cookies, the
secrets of the configuration, provider tokens) is collected in ``SECRETS``;
the last test checks that none appears in any Envoy log of the module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from typing import Any, Callable, Iterator, Mapping

import pytest
import requests

from conftest import CALLBACK_PATH, SIGNED_OUT_PATH
from harness import AccessServer, Envoy, Provider, Upstream, free_port, wait_until
from oidc_client import (
    CLIENT_ID,
    CLIENT_SECRET,
    COOKIE,
    COOKIE_SECRET,
    HTML,
    JSON,
    OPAQUE_RESOURCE,
    SCOPES,
    USERS,
    api_tokens,
    assert_not_upstream,
    authorize,
    browser,
    deliver_callback,
    describe,
    forged_values_seen,
    gauge,
    logged_in,
    login,
    login_location,
    raw_get,
    unique_path,
    upstream_view,
    with_changes,
)

TIMEOUT = 10
PROVIDER_ID = "pc"
REFRESH_INTERVAL = 1
# A change takes effect within refresh_interval + ~1 s (the workers' tick):
# what the tests allow, with slack for the fetch and the request.
WITHIN = REFRESH_INTERVAL + 3.0
POLL = 10.0  # how long a test waits for anything
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
AUDIT_EVENTS = {
    "sign_in", "sign_in_refused", "sign_in_failed", "access_refused", "sign_out",
    "api_key_refused", "personal_token_issued", "personal_token_refused",
    "access_document_changed",
}
# Identity headers a session gives the application (besides the claims').
IDENTITY_HEADERS = ("x-forwarded-user", "x-forwarded-email", "x-auth-request-user",
                    "x-auth-request-email", "x-forwarded-siret", "x-forwarded-idp-id")

ALICE, BOB, EVE = USERS["alice"], USERS["bob"], USERS["eve"]


def sha256_hex(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


# The API keys (recommended form: sesame_key_ + 64 hex), and one without
# the prefix, which works too.
CI_KEY = "sesame_key_" + secrets.token_hex(32)
WRITER_KEY = "sesame_key_" + secrets.token_hex(32)
EXPIRED_KEY = "sesame_key_" + secrets.token_hex(32)
PLAIN_KEY = "plain-" + secrets.token_hex(24)
API_KEYS = [
    {"id": "ci-bot", "sha256": sha256_hex(CI_KEY), "scopes": ["api:read"],
     "expires": "2099-06-30T00:00:00Z"},
    {"id": "writer", "sha256": sha256_hex(WRITER_KEY), "scopes": ["api:read", "api:write"]},
    {"id": "old-key", "sha256": sha256_hex(EXPIRED_KEY), "scopes": ["api:read"],
     "expires": "2021-01-01T00:00:00Z"},
    {"id": "plain.key_1", "sha256": sha256_hex(PLAIN_KEY), "scopes": ["api:read"]},
]
BASE_DOC: dict[str, Any] = {"allowed_email_domains": ["*.gouv.fr"], "api_keys": API_KEYS}

PT_SECRET = base64.b64encode(secrets.token_bytes(32)).decode()
PT_LIFETIME = 3600
PT_SCOPES = ["api:read"]

# Every secret string used by the module: none may appear in Envoy's logs.
SECRETS: list[str] = [CI_KEY, WRITER_KEY, EXPIRED_KEY, PLAIN_KEY, PT_SECRET,
                      COOKIE_SECRET, CLIENT_SECRET]
ENVOY_LOGS: list[Envoy] = []

PROBE_PATH = "/__probe"
ROUTES = [
    {"path": "^/__probe$", "mode": "bearer", "scopes": ["probe"]},
    {"path": "^/api/write/", "mode": "bearer", "scopes": ["api:write"]},
    {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]},
    {"path": "^/noscope/", "mode": "bearer"},
    {"path": "^/app/", "mode": "session_or_bearer", "scopes": ["api:read"]},
    # Its own rules replace the document's there (revocations still apply).
    {"path": "^/own-rules/", "mode": "session", "allowed_emails": [ALICE["email"]]},
    # Person rules never apply to API keys.
    {"path": "^/bob-api/", "mode": "bearer", "scopes": ["api:read"],
     "allowed_emails": [BOB["email"]], "providers": [PROVIDER_ID]},
]


def access_config(port: int, idp: Provider, access_url: str | None,
                  **changes: Any) -> dict[str, Any]:
    """The module's configuration for an Envoy on ``port``: one provider
    (id ``pc``) whose bearer tokens are opaque ones, introspected; the
    access document at ``access_url`` through cluster ``access``; personal
    tokens; ``ROUTES``. A change to None removes a key."""
    base = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "providers": [{
            "id": PROVIDER_ID, "issuer": idp.issuer, "idp_cluster": "idp",
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "token_endpoint_auth_method": "client_secret_post",
            "redirect_uri": base + CALLBACK_PATH,
            "scopes": list(SCOPES),
            "bearer_audience": OPAQUE_RESOURCE,
        }],
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        "skip_auth_routes": ["GET=^/ping$", "^/public/"],
        "claim_headers": {"X-Forwarded-Siret": "siret", "X-Forwarded-Idp-Id": "idp_id"},
        "provider_retry_max": 1,
        "provider_timeout_ms": 1000,
        "routes": ROUTES,
        "access_source": {"url": access_url, "cluster": "access",
                          "refresh_interval": REFRESH_INTERVAL},
        "personal_tokens": {"lifetime": PT_LIFETIME, "scopes": PT_SCOPES, "secret": PT_SECRET},
    }
    return with_changes(config, changes)


# --------------------------------------------------------------------------
# Requests


def bearer(envoy: Envoy, path: str, token: str | None,
           headers: Mapping[str, str] | None = None) -> requests.Response:
    """A script's GET of ``path`` with ``Authorization: Bearer <token>``."""
    sent = dict(JSON)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    return raw_get(envoy.url, path, None, sent)


def with_session(envoy: Envoy, path: str, cookie: str,
                 headers: Mapping[str, str] = JSON) -> requests.Response:
    return raw_get(envoy.url, path, cookie, headers)


def cookie_header(b: requests.Session) -> str:
    """The session cookie(s) of a browser as a raw ``Cookie`` header (kept
    by the test whatever Sésame answers later), remembered as secrets."""
    pairs = [(c.name, c.value) for c in b.cookies if c.name.startswith(COOKIE)]
    assert pairs, "no session cookie"
    SECRETS.extend(value for _, value in pairs)
    return "; ".join(f"{name}={value}" for name, value in pairs)


def sign_in(envoy: Envoy, user: str) -> tuple[requests.Session, str]:
    """A new browser signed in as ``user``, and its session cookie."""
    b = logged_in(envoy.url, user)
    return b, cookie_header(b)


def post_token(envoy: Envoy, cookie: str | None, headers: Mapping[str, str]) -> requests.Response:
    """``POST /oauth2/token`` with the session cookie and ``headers``."""
    sent = dict(headers)
    if cookie is not None:
        sent["Cookie"] = cookie
    return browser().post(envoy.url + "/oauth2/token", headers=sent,
                          allow_redirects=False, timeout=TIMEOUT)


def same_origin(envoy: Envoy, accept: Mapping[str, str] = JSON) -> dict[str, str]:
    return {**accept, "Origin": envoy.url, "Sec-Fetch-Site": "same-origin"}


def issue_token(envoy: Envoy, cookie: str) -> str:
    """A personal token for the person of ``cookie`` (remembered as a secret)."""
    r = post_token(envoy, cookie, same_origin(envoy))
    assert r.status_code == 200, describe(r)
    token = r.json()["token"]
    SECRETS.append(token)
    return token


def poll_status(request: Callable[[], requests.Response], statuses: int | tuple[int, ...],
                what: str, timeout: float = POLL) -> tuple[requests.Response, float]:
    """Repeat ``request()`` until it answers one of ``statuses``: (that
    answer, seconds it took)."""
    wanted = (statuses,) if isinstance(statuses, int) else statuses
    start = time.monotonic()
    last: list[requests.Response] = []

    def done() -> bool:
        last[:] = [request()]
        return last[0].status_code in wanted

    try:
        wait_until(done, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer:\n{describe(last[0])}") from None
    return last[0], time.monotonic() - start


def challenge(r: requests.Response) -> str:
    return r.headers.get("WWW-Authenticate", "")


# --------------------------------------------------------------------------
# Stats and audit lines


def stat(envoy: Envoy, name: str) -> int:
    return gauge(envoy, name) or 0


def wait_stat_above(envoy: Envoy, name: str, value: int) -> int:
    return wait_until(lambda: stat(envoy, name) > value and stat(envoy, name), POLL,
                      f"{name} above {value} ({envoy.stats('wasmcustom.sesame.access')})")


def find_audit(envoy: Envoy, event: str, since: int = 0, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in envoy.audit_events(since)
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]


def audit(envoy: Envoy, event: str, since: int = 0, **fields: Any) -> dict[str, Any]:
    """The first audit line ``event`` after the mark ``since`` whose fields
    include ``fields`` (waits for it: lines may come a little after the
    answer), checked as every audit line."""
    line = wait_until(lambda: (find_audit(envoy, event, since, **fields) or [None])[0], 5,
                      f"an audit line {event} with {fields} in {envoy.log_path}; "
                      f"seen: {[e for e in envoy.audit_events(since) if e.get('event') == event]}")
    check_audit_line(line)
    return line


def check_audit_line(line: dict[str, Any]) -> None:
    assert line.get("audit") == "sesame", line
    assert line.get("event") in AUDIT_EVENTS, line
    assert TIME_RE.match(str(line.get("time", ""))), line
    text = json.dumps(line)
    leaked = [s[:12] + "..." for s in SECRETS if s in text]
    assert not leaked, f"secrets in an audit line: {leaked}: {line}"
    if "path" in line:
        assert "?" not in line["path"], line


def request_audit(line: dict[str, Any]) -> None:
    """An audit line written for a request: it names its x-request-id."""
    assert isinstance(line.get("request_id"), str) and line["request_id"], line


def person_fields(line: dict[str, Any], user: dict[str, str]) -> None:
    assert line.get("provider") == PROVIDER_ID, line
    assert line.get("sub") == user["sub"], line
    assert line.get("email") == user["email"], line


def warning_lines(envoy: Envoy, since: int) -> list[str]:
    return [line for line in envoy.log_text_since(since).splitlines()
            if "access document refused:" in line]


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"main": free_port(), "startup": free_port(), "config": free_port()}


@pytest.fixture(scope="module")
def idp(ports: dict[str, int]) -> Iterator[Provider]:
    """The test provider, with API resources (opaque tokens, introspection)."""
    bases = [f"http://127.0.0.1:{p}" for p in ports.values()]
    with Provider(
        redirect_uris=[b + CALLBACK_PATH for b in bases],
        post_logout_redirect_uris=[b + p for b in bases for p in ("/", SIGNED_OUT_PATH)],
        api_resources=True,
    ) as provider:
        yield provider


def wait_envoy_ready(envoy: Envoy, document: bool = True) -> None:
    """The provider known, and (``document``) a document in force."""
    wait_until(lambda: stat(envoy, "provider_ready") == 1, 15,
               f"provider ready ({envoy.stats('wasmcustom.sesame.')}); log {envoy.log_path}")
    if document:
        wait_until(lambda: stat(envoy, "access_source_ready") == 1, 15,
                   f"a document in force ({envoy.stats('wasmcustom.sesame.')}); "
                   f"log {envoy.log_path}")


class Documents:
    """The module's Envoy and its access server: ``put(doc)`` serves a new
    version of the document (with a probe key of its own) and, unless
    ``wait=False``, waits until the worker enforces it."""

    def __init__(self, server: AccessServer, envoy: Envoy) -> None:
        self.server = server
        self.envoy = envoy
        self.versions = 0
        self.base_in_force = False

    def version(self, doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """``doc`` with a probe key of its own: (the document, the probe key)."""
        self.versions += 1
        probe = f"sesame_key_probe{self.versions}_{secrets.token_hex(16)}"
        SECRETS.append(probe)
        served = dict(doc)
        served["api_keys"] = [*doc.get("api_keys", []),
                              {"id": f"probe-{self.versions}", "sha256": sha256_hex(probe),
                               "scopes": ["probe"]}]
        return served, probe

    def put(self, doc: dict[str, Any], *, wait: bool = True) -> tuple[dict[str, Any], bytes]:
        served, probe = self.version(doc)
        self.base_in_force = False
        body = self.server.set(served)
        if wait:
            poll_status(lambda: bearer(self.envoy, PROBE_PATH, probe), 200,
                        f"the document's probe key opens {PROBE_PATH}: the document "
                        f"is not in force (log {self.envoy.log_path})")
        return served, body

    def reset(self) -> None:
        """Answering normally, the base document in force."""
        if not self.server.running:
            self.server.start()
        self.server.serve()
        if not self.base_in_force or self.server.body != self.base_body:
            _, self.base_body = self.put(BASE_DOC)
            self.base_in_force = True

    base_body: bytes | None = None


ACCESS_LOG_MARK = "access-log"


def access_log_user(envoy: Envoy) -> None:
    """Envoy's access log writes ``access-log user=<X-Forwarded-User>
    path=<path>`` for each request (the request headers as Sésame left
    them); run Envoy with ``--file-flush-interval-msec 100`` to read it at
    once."""
    hcm = envoy.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"][0]["typed_config"]
    hcm["access_log"][0]["typed_config"]["log_format"] = {"text_format_source": {
        "inline_string": f"{ACCESS_LOG_MARK} user=%REQ(X-FORWARDED-USER)% path=%REQ(:PATH)%\n"}}


def access_log_user_of(envoy: Envoy, path: str) -> str:
    """The X-Forwarded-User the access log wrote for ``path`` (waits)."""
    pattern = re.compile(rf"^{ACCESS_LOG_MARK} user=(\S+) path={re.escape(path)}$", re.M)
    found = wait_until(lambda: pattern.search(envoy.log_text()), 5,
                       f"the access log line of {path} in {envoy.log_path}")
    return found.group(1)


@pytest.fixture(scope="module")
def documents(ports: dict[str, int], upstream: Upstream, idp: Provider) -> Iterator[Documents]:
    port = ports["main"]
    with AccessServer() as server:
        envoy = Envoy(access_config(port, idp, server.url), port, upstream.port, idp.port,
                      extra_clusters={"access": server.port},
                      extra_args=["--file-flush-interval-msec", "100"])
        access_log_user(envoy)
        ENVOY_LOGS.append(envoy)
        docs = Documents(server, envoy)
        server.set(docs.version(BASE_DOC)[0])
        envoy.start()
        try:
            wait_envoy_ready(envoy)
            yield docs
        finally:
            envoy.stop()


@pytest.fixture
def docs(documents: Documents) -> Documents:
    """The module's Envoy with the base document in force."""
    documents.reset()
    return documents


@pytest.fixture
def envoy(docs: Documents) -> Envoy:
    return docs.envoy


# --------------------------------------------------------------------------
# Before the first document


def test_before_the_first_document_protected_requests_get_503_then_proceed(
        ports: dict[str, int], upstream: Upstream, idp: Provider) -> None:
    """Envoy (two workers) starts while the document's server answers 500:
    every request that needs an identity gets 503 with ``Retry-After: 5``
    (a page for a navigation, JSON otherwise), public routes pass. Once the
    document is served, the same navigation goes to the provider, a
    sign-in works, one worker fetches for all, and the new document is
    announced by one audit line."""
    port = ports["startup"]
    with AccessServer() as server:
        server.fail(500)
        envoy = Envoy(access_config(port, idp, server.url), port, upstream.port, idp.port,
                      extra_clusters={"access": server.port}, concurrency=2)
        ENVOY_LOGS.append(envoy)
        envoy.start()
        try:
            wait_envoy_ready(envoy, document=False)
            server.wait_requests(2)  # a refused fetch, and a retry
            wait_stat_above(envoy, "access_fetch_failure", 0)
            assert stat(envoy, "access_source_ready") == 0
            path = unique_path("/start")

            page = raw_get(envoy.url, path, None, HTML)
            assert page.status_code == 503, describe(page)
            assert page.headers.get("Retry-After") == "5", describe(page)
            assert page.headers["Content-Type"].startswith("text/html"), describe(page)
            api = raw_get(envoy.url, path, None, JSON)
            assert api.status_code == 503, describe(api)
            assert api.headers.get("Retry-After") == "5", describe(api)
            assert api.json()["error"] == "temporarily_unavailable", describe(api)
            for target, headers in [
                ("/api/items", {"Authorization": f"Bearer {CI_KEY}"}),
                ("/app/home", {}),
                ("/own-rules/x", {}),
                ("/oauth2/auth", {}),
                ("/oauth2/userinfo", {}),
                ("/oauth2/token", {}),
                (f"{CALLBACK_PATH}?code=abc&state={'s' * 43}", HTML),
            ]:
                r = raw_get(envoy.url, target, None, {**JSON, **headers})
                assert r.status_code == 503, (target, describe(r))
                assert r.headers.get("Retry-After") == "5", (target, describe(r))
            for public in ("/ping", unique_path("/public")):
                r = raw_get(envoy.url, public, None, JSON)
                assert r.status_code == 200, describe(r)
                assert r.json()["path"] == public
            assert_not_upstream(upstream, path)

            mark = envoy.log_mark()
            body = server.set(BASE_DOC)
            r, elapsed = poll_status(lambda: raw_get(envoy.url, path, None, HTML), 302,
                                     "the navigation goes on to the provider")
            assert r.headers["Location"].startswith(idp.issuer + "/auth?"), describe(r)
            assert elapsed <= WITHIN, f"in force after {elapsed:.1f} s"
            assert stat(envoy, "access_source_ready") == 1
            assert stat(envoy, "access_fetch_success") >= 1
            b, _ = sign_in(envoy, "alice")
            seen = upstream_view(b, envoy.url, path)["headers"]
            assert seen["x-forwarded-email"] == ALICE["email"]

            # One worker fetches for all: four more fetches take about four
            # intervals (three VMs fetching each would take one).
            start, count = time.monotonic(), server.requests
            server.wait_requests(4, since=count)
            assert time.monotonic() - start >= 2.0, server.if_none_match[count:]
            # One audit line for the new document, from the worker that fetched it.
            changed = audit(envoy, "access_document_changed", mark, sha256=sha256_hex(body)[:16])
            assert len(find_audit(envoy, "access_document_changed", mark)) == 1
            assert changed["emails"] == 0 and changed["domains"] == 1, changed
            assert changed["api_keys"] == len(API_KEYS) and changed["revoked"] == 0, changed
        finally:
            envoy.stop()


def test_a_document_older_than_max_age_admits_nobody_until_the_source_answers(
        ports: dict[str, int], upstream: Upstream, idp: Provider) -> None:
    """With ``max_age``, a source that stays down does not keep the last
    document in force for ever: once it is older than ``max_age`` (not
    given or confirmed by the source for that long), requests that need an
    identity get 503 and the gauge says no document is in force; public
    routes pass. The source back, the document is in force again."""
    port = ports["startup"]
    with AccessServer() as server:
        server.set(BASE_DOC)
        config = access_config(port, idp, server.url)
        config["access_source"]["max_age"] = 3
        envoy = Envoy(config, port, upstream.port, idp.port,
                      extra_clusters={"access": server.port})
        ENVOY_LOGS.append(envoy)
        envoy.start()
        try:
            wait_envoy_ready(envoy)
            assert bearer(envoy, unique_path("/api/items"), CI_KEY).status_code == 200
            server.stop()
            r, elapsed = poll_status(
                lambda: bearer(envoy, unique_path("/api/items"), CI_KEY), 503,
                "the document too old once the source has been down for max_age")
            # Last confirmed at most an interval before the stop; the clock a
            # request reads may be a second ahead.
            assert elapsed >= 3 - REFRESH_INTERVAL - 1.0, f"503 after {elapsed:.1f} s only"
            assert elapsed <= 3 + REFRESH_INTERVAL + 2.0, f"503 after {elapsed:.1f} s"
            assert r.headers.get("Retry-After") == "5", describe(r)
            wait_until(lambda: stat(envoy, "access_source_ready") == 0, POLL,
                       "access_source_ready 0 once the document is too old")
            assert raw_get(envoy.url, "/ping", None, JSON).status_code == 200
            server.start()
            server.serve()
            poll_status(lambda: bearer(envoy, unique_path("/api/items"), CI_KEY), 200,
                        "in force again once the source answers")
            wait_until(lambda: stat(envoy, "access_source_ready") == 1, POLL,
                       "access_source_ready 1 again")
        finally:
            if not server.running:
                server.start()
            envoy.stop()


# --------------------------------------------------------------------------
# Fetching: ETag, 304, the metrics


def test_the_document_is_fetched_as_json_then_confirmed_by_304(docs: Documents) -> None:
    """The first fetch asks for JSON without ``If-None-Match``; once the
    server gave an ``ETag``, each fetch sends it and a 304 keeps the
    document, which then stays young (``access_document_age``). Without an
    ``ETag``, no ``If-None-Match``."""
    server, envoy = docs.server, docs.envoy
    assert server.if_none_match[0] is None, server.if_none_match[:3]
    assert "application/json" in server.headers[0].get("accept", ""), server.headers[0]

    count = server.requests
    server.wait_requests(3, since=count)
    seen = list(zip(server.if_none_match[count:], server.statuses[count:]))
    assert seen and all(tag == server.etag for tag, _ in seen), (server.etag, seen)
    assert all(status == 304 for _, status in seen if status is not None), seen
    assert stat(envoy, "access_source_ready") == 1
    assert stat(envoy, "access_document_age") <= 2, envoy.stats("wasmcustom.sesame.access")
    assert stat(envoy, "access_fetch_success") >= 1

    # A server that gives no ETag is never sent an If-None-Match.
    # The same document fetched again is no new document.
    server.etags = False
    try:
        mark = envoy.log_mark()
        _, body = docs.put(BASE_DOC)
        count = server.requests
        server.wait_requests(2, since=count)
        seen = list(zip(server.if_none_match[count:], server.statuses[count:]))
        assert all(tag is None and status == 200 for tag, status in seen), seen
        changed = find_audit(envoy, "access_document_changed", mark)
        assert [line.get("sha256") for line in changed] == [sha256_hex(body)[:16]], changed
    finally:
        server.etags = True


# --------------------------------------------------------------------------
# People added, removed, revoked


def test_a_person_added_to_the_document_gets_in_without_restarting_envoy(docs: Documents) -> None:
    """eve is refused at sign-in (audit ``sign_in_refused``); once the
    document lists her address (any case), her next sign-in gets her in."""
    envoy = docs.envoy
    mark = envoy.log_mark()
    path = unique_path("/eve")
    refused = login(browser(), envoy.url, "eve", path)
    assert refused.status_code == 403, describe(refused)
    line = audit(envoy, "sign_in_refused", mark, email=EVE["email"])
    person_fields(line, EVE)
    assert line.get("reason") == "email_not_allowed" and line.get("detail"), line

    start = time.monotonic()
    docs.put({**BASE_DOC, "allowed_emails": ["Eve@Example.COM"]})
    assert time.monotonic() - start <= WITHIN
    mark = envoy.log_mark()
    b, _ = sign_in(envoy, "eve")
    seen = upstream_view(b, envoy.url, unique_path("/eve-in"))["headers"]
    assert seen["x-forwarded-email"] == EVE["email"]
    person_fields(audit(envoy, "sign_in", mark, email=EVE["email"]), EVE)


def test_a_person_removed_is_refused_at_the_next_request_then_readmitted(
        docs: Documents, upstream: Upstream) -> None:
    """alice's session works; the document drops her (bob only): her next
    request, page or not, is refused 403 with the same cookie within the
    interval (audit ``access_refused``), and so is a new sign-in (audit
    ``sign_in_refused``); bob goes on, and the route with its own rules
    still admits her. Put back, the same cookie gets her in again."""
    envoy = docs.envoy
    _, alice = sign_in(envoy, "alice")
    _, bob = sign_in(envoy, "bob")
    assert with_session(envoy, unique_path("/before"), alice).status_code == 200

    mark = envoy.log_mark()
    docs.put({"allowed_emails": [BOB["email"]], "api_keys": API_KEYS}, wait=False)
    paths: list[str] = []

    def alice_request() -> requests.Response:
        paths.append(unique_path("/removed"))
        return with_session(envoy, paths[-1] + "?q=1", alice)

    r, elapsed = poll_status(alice_request, 403, "alice refused")
    assert elapsed <= WITHIN, f"refused after {elapsed:.1f} s"
    refused_path = paths[-1]
    page = with_session(envoy, unique_path("/removed-page"), alice, HTML)
    assert page.status_code == 403, describe(page)
    assert page.headers["Content-Type"].startswith("text/html"), describe(page)
    assert with_session(envoy, "/oauth2/auth", alice, {}).status_code == 403
    assert with_session(envoy, unique_path("/bob"), bob).status_code == 200
    own = with_session(envoy, unique_path("/own-rules/x"), alice)
    assert own.status_code == 200, describe(own)
    line = audit(envoy, "access_refused", mark, path=refused_path)
    person_fields(line, ALICE)
    request_audit(line)
    assert line.get("reason") == "email_not_allowed" and line.get("detail"), line
    assert_not_upstream(upstream, refused_path, page.request.path_url)

    mark = envoy.log_mark()
    again = login(browser(), envoy.url, "alice", unique_path("/again"))
    assert again.status_code == 403, describe(again)
    person_fields(audit(envoy, "sign_in_refused", mark, email=ALICE["email"]), ALICE)

    docs.put(BASE_DOC, wait=False)
    r, elapsed = poll_status(lambda: with_session(envoy, unique_path("/back"), alice), 200,
                             "alice admitted again")
    assert elapsed <= WITHIN, f"admitted after {elapsed:.1f} s"
    assert r.json()["headers"]["x-forwarded-email"] == ALICE["email"]


def test_a_person_revoked_by_email_is_refused_everywhere(
        docs: Documents, idp: Provider, upstream: Upstream) -> None:
    """The base rules admit alice, but ``revoked`` names her address (in
    another case): her session is refused on every route, even one whose
    own rules name her, and so is her provider bearer token; bob goes on."""
    envoy = docs.envoy
    _, alice = sign_in(envoy, "alice")
    _, bob = sign_in(envoy, "bob")
    token = api_tokens(idp, "alice", OPAQUE_RESOURCE, "openid api:read")["access_token"]
    SECRETS.append(token)
    assert bearer(envoy, unique_path("/api/items"), token).json()["headers"][
        "x-forwarded-user"] == ALICE["sub"]
    assert with_session(envoy, unique_path("/own-rules/x"), alice).status_code == 200

    mark = envoy.log_mark()
    docs.put({**BASE_DOC, "revoked": [{"email": ALICE["email"].upper()}]}, wait=False)
    r, elapsed = poll_status(lambda: with_session(envoy, unique_path("/revoked"), alice), 403,
                             "alice's session refused")
    assert elapsed <= WITHIN, f"refused after {elapsed:.1f} s"
    paths = [unique_path("/own-rules/x"), unique_path("/app/x"), unique_path("/api/items")]
    own = with_session(envoy, paths[0], alice)
    assert own.status_code == 403, describe(own)
    app = with_session(envoy, paths[1], alice)
    assert app.status_code == 403, describe(app)
    api = bearer(envoy, paths[2], token)
    assert api.status_code == 403, describe(api)
    assert api.json()["error"] == "access_denied", describe(api)
    assert with_session(envoy, "/oauth2/auth", alice, {}).status_code == 403
    assert with_session(envoy, unique_path("/bob"), bob).status_code == 200
    assert_not_upstream(upstream, *paths)
    line = audit(envoy, "access_refused", mark, path=paths[2])
    person_fields(line, ALICE)
    assert line.get("reason") == "revoked" and line.get("detail"), line

    mark = envoy.log_mark()
    again = login(browser(), envoy.url, "alice", unique_path("/again"))
    assert again.status_code == 403, describe(again)
    person_fields(audit(envoy, "sign_in_refused", mark, email=ALICE["email"]), ALICE)


def test_a_person_revoked_by_sub_and_provider_is_refused(docs: Documents, idp: Provider) -> None:
    """``{"sub": bob, "provider": "pc"}`` refuses bob's session and his
    provider bearer token; an entry whose every field does not match (alice's
    sub with another address) refuses nobody."""
    envoy = docs.envoy
    _, alice = sign_in(envoy, "alice")
    _, bob = sign_in(envoy, "bob")
    token = api_tokens(idp, "bob", OPAQUE_RESOURCE, "openid api:read")["access_token"]
    SECRETS.append(token)
    assert bearer(envoy, unique_path("/api/items"), token).status_code == 200

    docs.put({**BASE_DOC, "revoked": [
        {"sub": BOB["sub"], "provider": PROVIDER_ID},
        {"sub": ALICE["sub"], "email": "someone.else@numerique.gouv.fr"},
    ]}, wait=False)
    r, elapsed = poll_status(lambda: with_session(envoy, unique_path("/revoked"), bob), 403,
                             "bob's session refused")
    assert elapsed <= WITHIN, f"refused after {elapsed:.1f} s"
    api = bearer(envoy, unique_path("/api/items"), token)
    assert api.status_code == 403, describe(api)
    still = with_session(envoy, unique_path("/alice"), alice)
    assert still.status_code == 200, describe(still)


# --------------------------------------------------------------------------
# A bad document, a source down: the last good one stays


BROKEN_DOCUMENTS = {
    # Each would refuse alice (and admit eve) if anything of it were used.
    "bad_json": (b'{"allowed_emails": ["eve@example.com"], ', []),
    "unknown_key": ({"allowed_emails": [EVE["email"]], "colour": "blue"}, ["colour"]),
    "bad_email": ({"allowed_emails": [EVE["email"], "not-an-email"]}, ["allowed_emails"]),
    "two_problems": ({"allowed_emails": ["not-an-email"], "colour": "blue",
                      "revoked": [{"email": ALICE["email"]}]},
                     ["colour", "allowed_emails"]),
    "bad_api_keys": ({"allowed_email_domains": ["*.gouv.fr"], "api_keys": [
        {"id": "bad id!", "sha256": "not-hex", "scopes": []},
        {"id": "twice", "sha256": "a" * 64, "scopes": ["api:read"]},
        {"id": "twice", "sha256": "b" * 64, "scopes": ["api:read"]}]}, ["api_keys"]),
    "unknown_provider": ({"allowed_emails": [EVE["email"]],
                          "revoked": [{"sub": ALICE["sub"], "provider": "nope"}]}, ["revoked"]),
}


@pytest.mark.parametrize("name", list(BROKEN_DOCUMENTS))
def test_a_broken_document_is_refused_and_the_last_good_one_stays(
        docs: Documents, name: str) -> None:
    """The document does not parse or validate: one warning line lists its
    problems, ``access_fetch_failure`` counts it, the gauge says a document
    is still in force, and alice (admitted by the last good one) still gets
    in."""
    envoy, server = docs.envoy, docs.server
    doc, problems = BROKEN_DOCUMENTS[name]
    _, alice = sign_in(envoy, "alice")
    failures = stat(envoy, "access_fetch_failure")
    mark = envoy.log_mark()

    server.set(doc if isinstance(doc, bytes) else docs.version(doc)[0])
    wait_until(lambda: warning_lines(envoy, mark), POLL,
               f"a line 'access document refused: ...' in {envoy.log_path}")
    wait_stat_above(envoy, "access_fetch_failure", failures)
    server.wait_requests(1)  # and once more, after a tick of the worker

    line = warning_lines(envoy, mark)[0]
    assert "[warning]" in line or "[warn]" in line, line
    message = line.split("access document refused:", 1)[1]
    for problem in problems:
        assert problem in message, line
    if len(problems) > 1:
        assert "; " in message, line
    assert stat(envoy, "access_source_ready") == 1
    r = with_session(envoy, unique_path("/still"), alice)
    assert r.status_code == 200, describe(r)
    assert r.json()["headers"]["x-forwarded-email"] == ALICE["email"]
    assert bearer(envoy, unique_path("/api/items"), CI_KEY).status_code == 200


@pytest.mark.parametrize("outage", ["error_status", "unreachable", "time_out"])
def test_a_source_in_error_or_down_keeps_the_last_good_document(
        docs: Documents, outage: str) -> None:
    """A 500, a closed port, a server that never answers (past
    ``provider_timeout_ms``): each counted ``access_fetch_failure``, the
    document stays in force and alice still gets in. While the source is
    down the document ages; a 304 once it is back makes it young again."""
    envoy, server = docs.envoy, docs.server
    _, alice = sign_in(envoy, "alice")
    failures = stat(envoy, "access_fetch_failure")
    start = time.monotonic()
    if outage == "error_status":
        server.fail(500)
    elif outage == "unreachable":
        server.stop()
    else:
        server.hang()
    try:
        wait_stat_above(envoy, "access_fetch_failure", failures)
        # The next fetch (within the interval) fails, after provider_timeout_ms
        # (1 s) at most.
        elapsed = time.monotonic() - start
        assert elapsed <= REFRESH_INTERVAL + 1.0 + 1.5, f"failure counted after {elapsed:.1f} s"
        r = with_session(envoy, unique_path("/outage"), alice)
        assert r.status_code == 200, describe(r)
        assert bearer(envoy, unique_path("/api/items"), CI_KEY).status_code == 200
        assert stat(envoy, "access_source_ready") == 1
        if outage == "unreachable":
            wait_until(lambda: stat(envoy, "access_document_age") >= 3, POLL,
                       "access_document_age grows while the source is down")
    finally:
        if not server.running:
            server.start()
        server.serve()
    if outage == "unreachable":
        count = server.requests
        server.wait_requests(1, since=count)
        wait_until(lambda: stat(envoy, "access_document_age") <= 2, POLL,
                   "access_document_age back near 0 once a 304 confirms the document")
        assert 304 in server.statuses[count:], server.statuses[count:]
    assert with_session(envoy, unique_path("/after"), alice).status_code == 200


# --------------------------------------------------------------------------
# API keys


def test_an_api_key_opens_its_route_as_itself(docs: Documents, upstream: Upstream) -> None:
    """``Authorization: Bearer <key>`` on a route requiring the key's scope:
    upstream sees ``apikey:<id>``, the key's id and scopes, no email and no
    Authorization; the client's copies of those headers never pass (with a
    key, with a session, on a public route)."""
    envoy = docs.envoy
    forged = {"X-Auth-Request-Api-Key": "forged-admin", "X-Forwarded-User": "forged-mallory",
              "X-Auth-Request-User": "forged-user", "X-Auth-Request-Scopes": "forged:all",
              "X-Forwarded-Email": "forged@evil.example"}
    r = bearer(envoy, unique_path("/api/items"), CI_KEY, forged)
    assert r.status_code == 200, describe(r)
    seen = r.json()["headers"]
    assert seen["x-forwarded-user"] == "apikey:ci-bot", seen
    assert seen["x-auth-request-user"] == "apikey:ci-bot", seen
    assert seen["x-auth-request-api-key"] == "ci-bot", seen
    assert seen["x-auth-request-scopes"] == "api:read", seen
    assert "authorization" not in seen, seen
    assert "x-forwarded-email" not in seen and "x-auth-request-email" not in seen, seen
    assert not forged_values_seen(seen, forged), seen
    assert CI_KEY not in r.text

    writer = bearer(envoy, unique_path("/api/write/x"), WRITER_KEY)
    assert writer.status_code == 200, describe(writer)
    assert writer.json()["headers"]["x-auth-request-scopes"] == "api:read api:write"
    ruled = bearer(envoy, unique_path("/bob-api/x"), CI_KEY)
    assert ruled.status_code == 200, describe(ruled)
    assert ruled.json()["headers"]["x-forwarded-user"] == "apikey:ci-bot"
    plain = bearer(envoy, unique_path("/app/x"), PLAIN_KEY)
    assert plain.status_code == 200, describe(plain)
    assert plain.json()["headers"]["x-forwarded-user"] == "apikey:plain.key_1"
    assert "authorization" not in plain.json()["headers"]

    spoof = {"X-Auth-Request-Api-Key": "forged-admin"}
    public_path = unique_path("/public")
    public = raw_get(envoy.url, public_path, None, {**JSON, **forged})
    assert public.status_code == 200, describe(public)
    assert not forged_values_seen(public.json()["headers"], forged), public.json()["headers"]
    # Envoy's access log reads the headers as Sésame left them.
    assert access_log_user_of(envoy, r.request.path_url) == "apikey:ci-bot"
    assert access_log_user_of(envoy, public_path) == "-"
    _, alice = sign_in(envoy, "alice")
    session = with_session(envoy, unique_path("/app/s"), alice, {**JSON, **spoof})
    assert session.status_code == 200, describe(session)
    assert "x-auth-request-api-key" not in session.json()["headers"]


def test_api_key_refusals(docs: Documents, idp: Provider, upstream: Upstream) -> None:
    """An unknown key (and any unknown ``sesame_`` token): 401, never sent
    to the provider's introspection (an unknown token without the prefix
    is); a key without the route's scope, or on a route requiring none: 403
    ``insufficient_scope``; an expired key: 401. Nothing upstream; audit
    ``api_key_refused`` with the reason and, when known, the key's id."""
    envoy = docs.envoy
    unknown = "sesame_key_" + secrets.token_hex(32)
    unknown_pt = "sesame_pt_" + secrets.token_urlsafe(48)
    SECRETS.extend([unknown, unknown_pt])
    mark = envoy.log_mark()
    before = idp.test_stats().get("introspection_requests", 0)
    paths = {name: unique_path("/api/items") for name in ("unknown", "unknown_pt", "expired")}
    paths["scope"] = unique_path("/api/write/x")
    paths["noscope"] = unique_path("/noscope/x")

    for name, token in (("unknown", unknown), ("unknown_pt", unknown_pt)):
        r = bearer(envoy, paths[name], token)
        assert r.status_code == 401, (name, describe(r))
        assert 'error="invalid_token"' in challenge(r), (name, describe(r))
    assert idp.test_stats().get("introspection_requests", 0) == before, \
        "a sesame_ token went to the provider's introspection"
    # The control: an unknown token without the prefix is introspected.
    control = bearer(envoy, unique_path("/api/items"), "opaque-" + secrets.token_hex(16))
    assert control.status_code == 401, describe(control)
    assert idp.test_stats().get("introspection_requests", 0) == before + 1

    r = bearer(envoy, paths["scope"], CI_KEY)
    assert r.status_code == 403, describe(r)
    assert 'error="insufficient_scope"' in challenge(r), describe(r)
    r = bearer(envoy, paths["noscope"], CI_KEY)
    assert r.status_code == 403, describe(r)
    r = bearer(envoy, paths["expired"], EXPIRED_KEY)
    assert r.status_code == 401, describe(r)
    assert 'error="invalid_token"' in challenge(r), describe(r)
    assert_not_upstream(upstream, *paths.values())

    line = audit(envoy, "api_key_refused", mark, path=paths["unknown"])
    assert line.get("reason") == "unknown_key" and "key" not in line, line
    request_audit(line)
    line = audit(envoy, "api_key_refused", mark, path=paths["scope"])
    assert line.get("reason") == "insufficient_scope" and line.get("key") == "ci-bot", line
    line = audit(envoy, "api_key_refused", mark, path=paths["expired"])
    assert line.get("reason") == "expired_key" and line.get("key") == "old-key", line


def test_an_api_key_removed_from_the_document_is_unknown_within_the_interval(
        docs: Documents) -> None:
    envoy = docs.envoy
    assert bearer(envoy, unique_path("/api/items"), CI_KEY).status_code == 200
    docs.put({**BASE_DOC, "api_keys": [k for k in API_KEYS if k["id"] != "ci-bot"]},
             wait=False)
    r, elapsed = poll_status(lambda: bearer(envoy, unique_path("/api/items"), CI_KEY), 401,
                             "the removed key refused")
    assert elapsed <= WITHIN, f"refused after {elapsed:.1f} s"
    assert 'error="invalid_token"' in challenge(r), describe(r)
    assert bearer(envoy, unique_path("/api/items"), WRITER_KEY).status_code == 200


def test_an_api_key_is_refused_once_it_expires(docs: Documents) -> None:
    """A key expiring in a few seconds opens its route until then, and is
    refused 401 (``expired_key``) from then on, with the same document."""
    envoy = docs.envoy
    soon = "sesame_key_" + secrets.token_hex(32)
    SECRETS.append(soon)
    expires = time.time() + 4
    docs.put({**BASE_DOC, "api_keys": [*API_KEYS, {
        "id": "soon", "sha256": sha256_hex(soon), "scopes": ["api:read"],
        "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}]})
    assert time.time() < expires - 1, "the document took too long to be in force"
    assert bearer(envoy, unique_path("/api/items"), soon).status_code == 200
    mark = envoy.log_mark()
    r, _ = poll_status(lambda: bearer(envoy, unique_path("/api/items"), soon), 401,
                       "the expired key refused")
    assert time.time() >= expires - 1.5, "refused before its expiry"
    assert 'error="invalid_token"' in challenge(r), describe(r)
    line = audit(envoy, "api_key_refused", mark, key="soon")
    assert line.get("reason") == "expired_key", line


def test_api_keys_of_the_configuration_without_a_document(
        ports: dict[str, int], upstream: Upstream, idp: Provider) -> None:
    """``api_keys`` in the configuration (no ``access_source``, the
    filter's own rules): the same behaviour."""
    port = ports["config"]
    config = access_config(port, idp, None, access_source=None, api_keys=API_KEYS,
                           allowed_email_domains=["*.gouv.fr"], personal_tokens=None)
    envoy = Envoy(config, port, upstream.port, idp.port)
    ENVOY_LOGS.append(envoy)
    envoy.start()
    try:
        wait_envoy_ready(envoy, document=False)
        spoof = {"X-Auth-Request-Api-Key": "forged-admin"}
        r = bearer(envoy, unique_path("/api/items"), CI_KEY, spoof)
        assert r.status_code == 200, describe(r)
        seen = r.json()["headers"]
        assert seen["x-forwarded-user"] == "apikey:ci-bot", seen
        assert seen["x-auth-request-api-key"] == "ci-bot", seen
        assert "authorization" not in seen, seen

        before = idp.test_stats().get("introspection_requests", 0)
        unknown = "sesame_key_" + secrets.token_hex(32)
        SECRETS.append(unknown)
        r = bearer(envoy, unique_path("/api/items"), unknown)
        assert r.status_code == 401, describe(r)
        assert idp.test_stats().get("introspection_requests", 0) == before
        r = bearer(envoy, unique_path("/api/write/x"), CI_KEY)
        assert r.status_code == 403, describe(r)
        assert 'error="insufficient_scope"' in challenge(r), describe(r)
        r = bearer(envoy, unique_path("/api/items"), EXPIRED_KEY)
        assert r.status_code == 401, describe(r)
        public = raw_get(envoy.url, unique_path("/public"), None, {**JSON, **spoof})
        assert "x-auth-request-api-key" not in public.json()["headers"]
        # Without personal_tokens: no token page.
        assert raw_get(envoy.url, "/oauth2/token", None, HTML).status_code == 404
        assert raw_get(envoy.url, "/oauth2/token", None, JSON).status_code == 404
    finally:
        envoy.stop()


@pytest.mark.parametrize("change, key", [
    ({"allowed_email_domains": ["*.gouv.fr"]}, "allowed_email_domains"),
    ({"allow_all_users": True}, "allow_all_users"),
    ({"api_keys": API_KEYS}, "api_keys"),
    ({"provider_rules": {"allowed_emails": [ALICE["email"]]}}, "access_source"),
    ({"provider_id": "apikey"}, "apikey"),
], ids=["filter_rules", "allow_all_users", "top_level_api_keys", "provider_rules", "apikey_id"])
def test_configurations_refused_at_load(
        ports: dict[str, int], upstream: Upstream, idp: Provider,
        change: dict[str, Any], key: str) -> None:
    """``access_source`` with the filter's rules, a provider's rules or
    top-level ``api_keys``; a provider named ``apikey``: the filter refuses
    to start, naming the key."""
    port = free_port()
    config = access_config(port, idp, f"http://127.0.0.1:{free_port()}/access.json")
    change = dict(change)
    config["providers"][0].update(change.pop("provider_rules", {}))
    if "provider_id" in change:
        config["providers"][0]["id"] = change.pop("provider_id")
    config.update(change)
    envoy = Envoy(config, port, upstream.port, idp.port, extra_clusters={"access": free_port()})
    log = envoy.start(expect_failure=True)
    refusal = [line for line in log.splitlines() if "invalid configuration" in line]
    assert refusal and any(key in line for line in refusal), log[-3000:]


# --------------------------------------------------------------------------
# Personal tokens


FORM_RE = re.compile(r'<form\b(?=[^>]*\bmethod="post")(?=[^>]*\baction="/oauth2/token")[^>]*>',
                     re.I)


def test_the_token_page_and_a_token_issued(docs: Documents) -> None:
    """``GET /oauth2/token`` with a session: a page with a form posting to
    itself (French, or English on request); without a session, like any
    protected page. A same-origin POST: a token (JSON, or a page showing
    it), never stored; audit ``personal_token_issued``."""
    envoy = docs.envoy
    _, alice = sign_in(envoy, "alice")
    for language in ({}, {"Accept-Language": "en"}):
        page = with_session(envoy, "/oauth2/token", alice, {**HTML, **language})
        assert page.status_code == 200, describe(page)
        assert page.headers["Content-Type"].startswith("text/html"), describe(page)
        assert FORM_RE.search(page.text), page.text[:2000]
        assert "<button" in page.text, page.text[:2000]
    assert raw_get(envoy.url, "/oauth2/token", None, HTML).status_code == 302
    assert raw_get(envoy.url, "/oauth2/token", None, JSON).status_code == 401

    mark = envoy.log_mark()
    now = time.time()
    r = post_token(envoy, alice, {**JSON, "Origin": envoy.url})  # no Sec-Fetch-Site: fine
    assert r.status_code == 200, describe(r)
    assert "no-store" in r.headers.get("Cache-Control", ""), describe(r)
    answer = r.json()
    SECRETS.append(answer["token"])
    assert answer["token"].startswith("sesame_pt_"), answer
    assert answer["token_type"] == "Bearer", answer
    assert answer["scopes"] == PT_SCOPES, answer
    assert abs(answer["expires_at"] - (now + PT_LIFETIME)) < 60, answer
    line = audit(envoy, "personal_token_issued", mark)
    person_fields(line, ALICE)
    request_audit(line)

    https = post_token(envoy, alice, {**JSON, "Origin": envoy.url.replace("http:", "https:")})
    assert https.status_code == 200, describe(https)
    SECRETS.append(https.json()["token"])

    html = post_token(envoy, alice, same_origin(envoy, HTML))
    assert html.status_code == 200, describe(html)
    assert html.headers["Content-Type"].startswith("text/html"), describe(html)
    assert "no-store" in html.headers.get("Cache-Control", ""), describe(html)
    shown = re.search(r"sesame_pt_[A-Za-z0-9_\-.~+/=]+", html.text)
    assert shown, html.text[:2000]
    SECRETS.append(shown.group(0))
    assert bearer(envoy, unique_path("/api/items"), shown.group(0)).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "http://127.0.0.1:1"},
    {"Origin": "null"},
    {"ORIGIN_SELF": "", "Sec-Fetch-Site": "cross-site"},
    {"ORIGIN_SELF": "", "Sec-Fetch-Site": "same-site"},
    {},
], ids=["foreign_origin", "other_port", "null_origin", "cross_site", "same_site", "no_origin"])
def test_a_cross_site_token_request_is_refused(docs: Documents, headers: dict[str, str]) -> None:
    """A POST that is not same-origin (a foreign ``Origin``, ``Sec-Fetch-Site``
    other than ``same-origin``, no ``Origin``) gets 403 and no token, even
    with the session cookie; audit ``personal_token_refused``
    (``cross_site_request``)."""
    envoy = docs.envoy
    _, alice = sign_in(envoy, "alice")
    sent = dict(headers)
    if sent.pop("ORIGIN_SELF", None) is not None:
        sent["Origin"] = envoy.url
    mark = envoy.log_mark()
    r = post_token(envoy, alice, {**JSON, **sent})
    assert r.status_code == 403, describe(r)
    assert r.json().get("error") == "cross_site_request", describe(r)
    assert "sesame_pt_" not in r.text
    page = post_token(envoy, alice, {**HTML, **sent})
    assert page.status_code == 403, describe(page)
    assert "sesame_pt_" not in page.text
    line = audit(envoy, "personal_token_refused", mark, reason="cross_site_request")
    request_audit(line)


def test_a_personal_token_opens_bearer_routes_as_the_person(
        docs: Documents, upstream: Upstream) -> None:
    """The token on a bearer route: the same identity headers as the
    session, no Authorization upstream; a route needing a scope it lacks:
    403 ``insufficient_scope``; tampered or cut: 401 ``invalid_token``."""
    envoy = docs.envoy
    _, alice = sign_in(envoy, "alice")
    session = upstream_view(None, envoy.url, unique_path("/app/s"), {"Cookie": alice})["headers"]
    token = issue_token(envoy, alice)

    for route in ("/api/items", "/app/x", "/noscope/x"):
        r = bearer(envoy, unique_path(route), token)
        assert r.status_code == 200, (route, describe(r))
        seen = r.json()["headers"]
        for name in IDENTITY_HEADERS:
            assert seen.get(name) == session.get(name), (route, name, seen, session)
        assert seen["x-forwarded-user"] == ALICE["sub"], seen
        assert "authorization" not in seen, seen
        assert token not in r.text

    mark = envoy.log_mark()
    write = unique_path("/api/write/x")
    r = bearer(envoy, write, token)
    assert r.status_code == 403, describe(r)
    assert 'error="insufficient_scope"' in challenge(r), describe(r)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    bad = [unique_path("/api/items"), unique_path("/api/items")]
    for path, forged in zip(bad, (tampered, token[:-6])):
        r = bearer(envoy, path, forged)
        assert r.status_code == 401, describe(r)
        assert 'error="invalid_token"' in challenge(r), describe(r)
    assert_not_upstream(upstream, write, *bad)
    line = audit(envoy, "personal_token_refused", mark, path=write)
    assert line.get("reason") == "insufficient_scope", line
    person_fields(line, ALICE)
    line = audit(envoy, "personal_token_refused", mark, path=bad[0])
    assert line.get("reason"), line


def test_a_personal_token_dies_when_its_person_is_revoked(docs: Documents) -> None:
    """bob's token works until the document revokes him: then 403
    ``access_denied`` (or 401) within the interval, and he cannot get a new
    one."""
    envoy = docs.envoy
    _, bob = sign_in(envoy, "bob")
    token = issue_token(envoy, bob)
    assert bearer(envoy, unique_path("/api/items"), token).status_code == 200

    mark = envoy.log_mark()
    docs.put({**BASE_DOC, "revoked": [{"email": BOB["email"]}]}, wait=False)
    r, elapsed = poll_status(lambda: bearer(envoy, unique_path("/api/items"), token),
                             (401, 403), "bob's token refused")
    assert elapsed <= WITHIN, f"refused after {elapsed:.1f} s"
    if r.status_code == 403:
        assert r.json().get("error") == "access_denied", describe(r)
    line = audit(envoy, "personal_token_refused", mark, path=r.request.path_url)
    person_fields(line, BOB)
    assert line.get("reason"), line
    again = post_token(envoy, bob, same_origin(envoy))
    assert again.status_code == 403, describe(again)
    assert "sesame_pt_" not in again.text


# --------------------------------------------------------------------------
# Audit lines


def test_audit_lines_of_a_sign_in_a_failure_a_sign_out_and_a_new_document(
        docs: Documents, idp: Provider) -> None:
    """``sign_in`` (with the identity, the callback's path without its
    query, the request id), ``sign_in_failed`` (a callback without its
    sign-in cookie), ``sign_out``, and ``access_document_changed`` once for
    a new document, with its SHA-256 and counts."""
    envoy = docs.envoy
    mark = envoy.log_mark()
    b, cookie = sign_in(envoy, "alice")
    line = audit(envoy, "sign_in", mark, email=ALICE["email"])
    person_fields(line, ALICE)
    request_audit(line)
    assert line.get("issuer") == idp.issuer, line
    assert line.get("path") == CALLBACK_PATH, line
    assert line.get("siret") == ALICE["siret"] and line.get("idp_id") == ALICE["idp_id"], line

    mark = envoy.log_mark()
    callback = authorize(login_location(browser(), envoy.url, "/"), "bob")
    failed = deliver_callback(browser(), callback)  # another browser: no sign-in cookie
    assert failed.status_code >= 400, describe(failed)
    line = audit(envoy, "sign_in_failed", mark)
    assert line.get("reason"), line
    assert line.get("path") == CALLBACK_PATH, line

    mark = envoy.log_mark()
    out = with_session(envoy, "/oauth2/sign_out?rd=/oauth2/signed_out", cookie, HTML)
    assert out.status_code == 302, describe(out)
    person_fields(audit(envoy, "sign_out", mark), ALICE)

    mark = envoy.log_mark()
    served, body = docs.put({
        "allowed_emails": [ALICE["email"], BOB["email"]],
        "allowed_email_domains": ["numerique.gouv.fr", "*.interieur.gouv.fr"],
        "allowed_claims": {"siret": [ALICE["siret"]]},
        "allow_all_users": False,
        "revoked": [{"email": "mallory@agents.gouv.fr"}, {"sub": "x-1", "provider": PROVIDER_ID}],
        "api_keys": API_KEYS,
    })
    line = audit(envoy, "access_document_changed", mark, sha256=sha256_hex(body)[:16])
    assert (line.get("emails"), line.get("domains"), line.get("claims"), line.get("revoked"),
            line.get("api_keys")) == (2, 2, 1, 2, len(served["api_keys"])), line
    assert len(find_audit(envoy, "access_document_changed", mark)) == 1, \
        find_audit(envoy, "access_document_changed", mark)


def test_every_audit_line_is_well_formed_and_no_secret_is_logged(documents: Documents) -> None:
    """Last: every audit line of the module's Envoys is one JSON object of a
    known event with its time, and no secret used by the tests (keys,
    personal tokens, cookies, the configuration's secrets, provider tokens)
    appears anywhere in their logs."""
    envoys = ENVOY_LOGS or [documents.envoy]
    assert any(e.audit_events() for e in envoys)
    for envoy in envoys:
        for line in envoy.audit_events():
            check_audit_line(line)
        text = envoy.log_text()
        leaked = sorted({s[:16] + "..." for s in SECRETS if s and s in text})
        assert not leaked, f"secrets in {envoy.log_path}: {leaked}"
