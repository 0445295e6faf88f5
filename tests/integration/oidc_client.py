"""A scripted browser for Sésame's integration tests.

Plays the person in front of the browser: asks Envoy for a page, follows
Sésame's redirect to the local OpenID provider, picks a test user there, and
brings the provider's answer back to Envoy's callback.  Also: the standard
plugin configuration, counters of the filter, the upstream's request log,
cookie helpers and a raw WebSocket handshake (standard library only).
For API protection, the client's own calls to the provider: API access
tokens (``api_tokens``), their introspection and revocation, the resource
server's encryption keys, and JOSE checks done with node's ``jose``.

A "browser" is a ``requests.Session`` (its cookie jar).  The provider's own
pages are visited with a separate jar, created for each sign-in, so that a
previous sign-in at the provider never decides who the next one is.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

# --------------------------------------------------------------------------
# Test data

CLIENT_ID = "sesame"
CLIENT_SECRET = "sesame-demo-secret-please-change"
# 32 bytes, base64; tests that need a second, different secret use OTHER_*.
COOKIE_SECRET = base64.b64encode(b"integration-tests-cookie-secret!").decode()
OTHER_COOKIE_SECRET = base64.b64encode(b"another-secret-for-other-envoys!").decode()
SCOPES = ["openid", "email", "given_name", "usual_name", "uid", "siret", "idp_id"]
COOKIE = "_sesame"

# The provider's test users (tests/provider/users.mjs).
USERS: dict[str, dict[str, str]] = {
    "alice": {
        "sub": "alice-7f3a",
        "email": "alice.martin@numerique.gouv.fr",
        "siret": "13002526500013",
        "idp_id": "fia1v2",
        "given_name": "Alice",
        "usual_name": "Martin",
    },
    "bob": {
        "sub": "bob-91c2",
        "email": "bob.durand@interieur.gouv.fr",
        "siret": "11000201100044",
        "idp_id": "fia2v2",
        "given_name": "Bob",
        "usual_name": "Durand",
    },
    "eve": {
        "sub": "eve-5d10",
        "email": "eve@example.com",
        "siret": "40483304800022",
        "idp_id": "other-idp",
        "given_name": "Eve",
        "usual_name": "Dupont",
    },
}

# Request kinds.  A page navigation (may be sent to the provider)...
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
# ...and requests that are not (they get 401 without a session).
JSON = {"Accept": "application/json"}
XHR = {"Accept": "*/*", "X-Requested-With": "XMLHttpRequest"}

TIMEOUT = 10


def with_changes(config: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with ``changes`` applied; a change to ``None`` removes the key."""
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def sesame_config(issuer: str, redirect_uri: str, /, **changes: Any) -> dict[str, Any]:
    """The standard Sésame configuration of the tests, with ``changes``
    (a change to ``None`` removes the key).

    Like ``examples/demo-config.json``: only ``*.gouv.fr`` addresses (alice,
    bob; not eve), ``GET /ping`` and ``/public/...`` public, the siret and
    idp_id claims as headers, cookies without ``Secure`` (plain http), and a
    provider retried every second when it is down.
    """
    config: dict[str, Any] = {
        "provider": "oidc",
        "issuer": issuer,
        "idp_cluster": "idp",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_endpoint_auth_method": "client_secret_post",
        "redirect_uri": redirect_uri,
        "scopes": list(SCOPES),
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        "skip_auth_routes": ["GET=^/ping$", "^/public/"],
        "allowed_email_domains": ["*.gouv.fr"],
        "claim_headers": {
            "X-Forwarded-Siret": "siret",
            "X-Forwarded-Idp-Id": "idp_id",
        },
        "provider_retry_max": 1,
    }
    return with_changes(config, changes)


# ProConnect's default scopes (Sésame's with ``provider: "proconnect"``).
PROCONNECT_SCOPES = ["openid", "email", "given_name", "usual_name", "uid", "siret", "idp_id"]


def proconnect_config(issuer: str, redirect_uri: str, /, **changes: Any) -> dict[str, Any]:
    """Sésame as the ProConnect relying party of the OpenGateLLM Playground
    (in place of oauth2-proxy), with ``changes`` (``None`` removes a key).

    ``provider: "proconnect"`` with the local provider's issuer (the
    ``proconnect_environment`` presets are https hosts, so ``issuer`` is set
    instead), ProConnect's default scopes (no ``scopes`` key),
    client_secret_post (the default), ``*.gouv.fr`` addresses only, the
    Playground's ``GET /ping`` health check public, ``Authorization: Bearer
    <id_token>``, ``X-Forwarded-Id-Token`` and the access token passed on
    like oauth2-proxy's ``--set-authorization-header`` /
    ``--pass-access-token`` (what the Playground reads), and the
    ProConnect claims as headers.
    """
    config: dict[str, Any] = {
        "provider": "proconnect",
        "issuer": issuer,
        "idp_cluster": "idp",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": redirect_uri,
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        "skip_auth_routes": ["GET=^/ping$"],
        "allowed_email_domains": ["*.gouv.fr"],
        "set_authorization_header": True,
        "pass_access_token": True,
        "pass_id_token": True,
        "claim_headers": {
            "X-Forwarded-Siret": "siret",
            "X-Forwarded-Idp-Id": "idp_id",
            "X-Forwarded-Uid": "uid",
            "X-Forwarded-Given-Name": "given_name",
            "X-Forwarded-Usual-Name": "usual_name",
        },
        "provider_retry_max": 1,
    }
    return with_changes(config, changes)


def forged_values_seen(headers: Mapping[str, str],
                       forged: Mapping[str, str]) -> dict[str, str]:
    """The headers the upstream received that carry one of the ``forged``
    header values a client sent (under any name)."""
    values = set(forged.values())
    return {k: v for k, v in headers.items() if any(f in v for f in values)}


def unique_path(prefix: str = "/t") -> str:
    """A path no other request uses, to find it (or not) in the upstream's log."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------
# Browsers and the sign-in flow


def browser() -> requests.Session:
    """A fresh browser: an empty cookie jar, no proxy from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


def describe(response: requests.Response) -> str:
    """A response, for assertion messages."""
    headers = "\n".join(f"  {k}: {v}" for k, v in response.headers.items())
    return (
        f"{response.request.method} {response.request.url} -> {response.status_code}\n"
        f"{headers}\n  body: {response.text[:500]!r}"
    )


def start_login(b: requests.Session, envoy_url: str, path: str = "/",
                headers: Mapping[str, str] = HTML) -> requests.Response:
    """Navigate to ``path`` without a session: Sésame's 302 to the provider."""
    r = b.get(envoy_url + path, headers=dict(headers), allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, describe(r)
    return r


def login_location(b: requests.Session, envoy_url: str, path: str = "/") -> str:
    """The provider authorization URL Sésame sends a navigation to ``path`` to."""
    return start_login(b, envoy_url, path).headers["Location"]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def authorize(auth_url: str, user: str = "alice", *, deny: bool = False,
              acr: str | None = None,
              provider_browser: requests.Session | None = None) -> str:
    """Sign in at the provider as ``user`` (or press "Cancel" when ``deny``),
    starting from the authorization URL; returns the absolute URL the
    provider sends the browser back to (Sésame's callback).

    ``acr`` (a provider in ProConnect mode) is the level chosen in the login
    form's acr select, e.g. ``"eidas1"``; None keeps "as requested"."""
    pb = provider_browser or browser()
    origin = _origin(auth_url)
    method, url, data = "GET", auth_url, None
    for _ in range(12):
        r = pb.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT)
        if r.status_code in (301, 302, 303, 307):
            target = urljoin(url, r.headers["Location"])
            if _origin(target) != origin:
                return target
            method, url, data = "GET", target, None
            continue
        if r.status_code == 200 and "/interaction/" in url and method == "GET":
            wanted = "/abort" if deny else "/login"
            actions = re.findall(r'action="([^"]+)"', r.text)
            action = next((a for a in actions if a.endswith(wanted)), None)
            assert action, f"no {wanted} form on the provider's page:\n{r.text[:2000]}"
            method, url = "POST", urljoin(url, action.replace("&amp;", "&"))
            data = {} if deny else {"user": user}
            if acr is not None and not deny:
                assert 'name="acr"' in r.text, "the provider's login page has no acr select"
                data["acr"] = acr
            continue
        raise AssertionError(f"unexpected answer from the provider:\n{describe(r)}")
    raise AssertionError("the provider redirected too many times")


def provider_logout(end_session_url: str,
                    provider_browser: requests.Session | None = None) -> str:
    """Go through the provider's logout (its confirmation form, if any),
    starting from the end-session URL Sésame redirected to; returns the
    absolute URL the provider sends the browser back to."""
    pb = provider_browser or browser()
    origin = _origin(end_session_url)
    method, url, data = "GET", end_session_url, None
    for _ in range(8):
        r = pb.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT)
        if r.status_code in (301, 302, 303, 307):
            target = urljoin(url, r.headers["Location"])
            if _origin(target) != origin:
                return target
            method, url, data = "GET", target, None
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', r.text, re.S)
        if r.status_code == 200 and form:
            fields = dict(re.findall(
                r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form.group(2)))
            method, url, data = "POST", urljoin(url, form.group(1).replace("&amp;", "&")), fields
            continue
        raise AssertionError(f"unexpected answer from the provider's logout:\n{describe(r)}")
    raise AssertionError("the provider's logout redirected too many times")


def deliver_callback(b: requests.Session, callback_url: str,
                     headers: Mapping[str, str] = HTML, *,
                     follow_refusal: bool = True) -> requests.Response:
    """The browser follows the provider's redirect back to Envoy.

    A refused sign-in is answered with a redirect to its page's clean
    address (``<proxy_prefix>/failed?...``); the browser follows it, and the
    page is returned, with the callback's answer as its ``history[0]``
    (``set_cookies`` reads both). ``follow_refusal=False`` returns the
    callback's answer itself."""
    r = b.get(callback_url, headers=dict(headers), allow_redirects=False, timeout=TIMEOUT)
    location = r.headers.get("Location", "")
    if follow_refusal and r.status_code == 302 and urlsplit(location).path.endswith("/failed"):
        assert "code=" not in location and "state=" not in location, location
        page = b.get(urljoin(callback_url, location), headers=dict(headers),
                     allow_redirects=False, timeout=TIMEOUT)
        page.history = [r]
        return page
    return r


def login(b: requests.Session, envoy_url: str, user: str = "alice",
          path: str = "/") -> requests.Response:
    """The whole sign-in from a navigation to ``path``; returns Envoy's answer
    to the callback (302 back to ``path`` when the sign-in succeeded)."""
    auth_url = login_location(b, envoy_url, path)
    return deliver_callback(b, authorize(auth_url, user))


def logged_in(envoy_url: str, user: str = "alice", path: str = "/") -> requests.Session:
    """A new browser holding a session for ``user``."""
    b = browser()
    r = login(b, envoy_url, user, path)
    assert r.status_code == 302 and r.headers["Location"] == path, describe(r)
    assert b.cookies.get(COOKIE), "no session cookie after the sign-in"
    return b


def upstream_view(b: requests.Session | None, envoy_url: str, path: str = "/",
                  headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET ``path`` as JSON and return what the upstream received
    (``{"method","path","headers"}``); fails unless the upstream answered."""
    send = dict(JSON)
    send.update(headers or {})
    r = (b or browser()).get(envoy_url + path, headers=send, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 200, describe(r)
    view = r.json()
    assert set(view) >= {"method", "path", "headers"}, view
    return view


def query(url: str) -> dict[str, str]:
    """The query parameters of a URL (each expected once)."""
    params = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for name, values in params.items():
        assert len(values) == 1, f"{name} repeated in {url}"
    return {k: v[0] for k, v in params.items()}


def jwt_claims(token: str) -> dict[str, Any]:
    """The (unverified) payload of a JWT."""
    parts = token.split(".")
    assert len(parts) == 3, f"not a JWS compact serialisation: {token[:40]}..."
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


# --------------------------------------------------------------------------
# Cookies


def set_cookies(response: requests.Response) -> list[str]:
    """Every ``Set-Cookie`` header of a response (and of the answers it
    followed, ``history``), one string each."""
    out: list[str] = []
    for r in [*response.history, response]:
        out.extend(r.raw.headers.getlist("Set-Cookie"))
    return out


def set_cookie(response: requests.Response, name: str) -> str | None:
    """The ``Set-Cookie`` header for cookie ``name`` (None when absent)."""
    found = [c for c in set_cookies(response) if c.split("=", 1)[0].strip() == name]
    assert len(found) <= 1, f"cookie {name} set twice: {found}"
    return found[0] if found else None


def cookie_attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """``name=value; A=b; Flag`` -> (name, value, {"a": "b", "flag": ""})."""
    pair, *attrs = [p.strip() for p in header.split(";")]
    name, value = pair.split("=", 1)
    parsed = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        parsed[key.strip().lower()] = val.strip()
    return name, value, parsed


def is_clearing(header: str | None) -> bool:
    """Whether a ``Set-Cookie`` header deletes its cookie."""
    if header is None:
        return False
    _, value, attrs = cookie_attributes(header)
    return value == "" and attrs.get("max-age") == "0"


def session_cookie_sets(response: requests.Response, name: str = COOKIE) -> list[str]:
    """``Set-Cookie`` headers giving a session cookie (``name`` or a chunk of
    it) a value, i.e. not the ones clearing it."""
    out = []
    for header in set_cookies(response):
        cname, value, _ = cookie_attributes(header)
        if (cname == name or re.fullmatch(re.escape(name) + r"_\d+", cname)) and value:
            out.append(header)
    return out


def raw_get(envoy_url: str, path: str, cookie: str | None = None,
            headers: Mapping[str, str] | None = None) -> requests.Response:
    """A request without a cookie jar; ``cookie`` is sent as the raw
    ``Cookie:`` header, as a server-to-server call would."""
    send = dict(headers or {})
    if cookie is not None:
        send["Cookie"] = cookie
    # A fresh jar each time: nothing is kept, nothing else is sent.
    return browser().get(envoy_url + path, headers=send, allow_redirects=False,
                         timeout=TIMEOUT)


def bare_request(port: int, method: str, target: str,
                 headers: Mapping[str, str] | None = None,
                 body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """A request with no header but ``Host`` and ``headers`` (no Accept,
    User-Agent or Accept-Encoding), as a bare server-to-server client sends
    it: (status, lower-case headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def http_request(port: int, method: str, target: str,
                 headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request with the target sent exactly as given (no dot-segment
    removal, no re-encoding): (status, lower-case headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, target, headers=dict(headers or {}))
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Stats and the upstream's log


class Counters:
    """The filter's counters (``wasmcustom.sesame.*``) now, to look later at
    what changed: ``Counters(envoy)`` ... ``.delta()``.

    Sésame adds the counts of its ``FREQUENT`` outcomes to the stats on each
    VM's timer tick (every second), not as they happen: a plain delta leaves
    them out. With ``ticked``, the baseline and the delta wait for a tick of
    every VM, so that the counts of earlier requests are in the baseline and
    those of the test's own requests in the delta, ``FREQUENT`` ones
    included."""

    PREFIX = "wasmcustom.sesame."
    # Gauges move by themselves (memory, provider state): not outcomes.
    GAUGES = frozenset({"provider_ready", "provider_consecutive_failures", "vm_memory_bytes",
                        "access_source_ready", "access_document_age"})
    FREQUENT = frozenset({"requests_passed", "requests_public", "bearer_passed",
                          "endpoint_authorized"})
    TICK_S = 1.3

    def __init__(self, envoy: Any, *, ticked: bool = False) -> None:
        self.envoy = envoy
        self.ticked = ticked
        self.before = self.settled_read()

    def read(self) -> dict[str, int]:
        stats = self.envoy.stats(self.PREFIX)
        return {name[len(self.PREFIX):]: value for name, value in stats.items()}

    def settled_read(self) -> dict[str, int]:
        """``read``, after a tick of every VM when ``ticked``."""
        if self.ticked:
            time.sleep(self.TICK_S)
        return self.read()

    def delta(self) -> dict[str, int]:
        """Counters that changed since creation (gauges excluded, and the
        ``FREQUENT`` ones unless ``ticked``)."""
        after = self.settled_read()
        return {
            name: value - self.before.get(name, 0)
            for name, value in after.items()
            if name not in self.GAUGES and not name.startswith("provider_ready.")
            and value != self.before.get(name, 0)
            and (self.ticked or name not in self.FREQUENT)
        }


def gauge(envoy: Any, name: str) -> int | None:
    return envoy.stats("wasmcustom.sesame." + name).get("wasmcustom.sesame." + name)


def upstream_log(upstream: Any) -> list[tuple[str, str, str]]:
    """The upstream's request log: (method, path without query, status)."""
    out = []
    for line in upstream.log_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[1].startswith("/"):
            out.append((parts[0], parts[1], parts[2]))
    return out


def _barrier(upstream: Any, timeout: float = 5.0) -> list[tuple[str, str, str]]:
    """The upstream's log once every earlier request is in it: a request
    made straight to the upstream, and waited for in its log, makes sure
    that lines of earlier requests are written."""
    barrier = unique_path("/__barrier")
    browser().get(upstream.url + barrier, timeout=TIMEOUT)
    deadline = time.monotonic() + timeout
    while True:
        entries = upstream_log(upstream)
        if any(path == barrier for _, path, _ in entries):
            return entries
        assert time.monotonic() < deadline, "the upstream did not log the barrier request"
        time.sleep(0.02)


def upstream_mark(upstream: Any) -> int:
    """A mark in the upstream's log: ``assert_not_upstream(..., since=mark)``
    then only looks at requests made after it (for paths that other tests
    may have sent to the upstream on purpose)."""
    return len(_barrier(upstream))


def upstream_paths(upstream: Any, since: int = 0) -> set[str]:
    """Every path the upstream has answered so far (after mark ``since``)."""
    return {path for _, path, _ in _barrier(upstream)[since:]}


def assert_not_upstream(upstream: Any, *paths: str, since: int = 0) -> None:
    """None of ``paths`` reached the upstream (after mark ``since``)."""
    seen = upstream_paths(upstream, since)
    reached = [p for p in paths if p in seen]
    assert not reached, f"reached the upstream: {reached}"


# --------------------------------------------------------------------------
# WebSocket (RFC 6455), client side, raw socket


@dataclass
class WebSocketResult:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    messages: list[str] = field(default_factory=list)
    close_code: int | None = None


def websocket(port: int, path: str, headers: Mapping[str, str] | None = None,
              protocols: Iterable[str] = (), timeout: float = 5.0) -> WebSocketResult:
    """Open a WebSocket to 127.0.0.1:port; read the handshake answer and,
    after a 101, every frame until the server closes."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    protocols = list(protocols)
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ")[1])
        resp_headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        result = WebSocketResult(status, resp_headers)
        if status != 101:
            length = int(resp_headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            result.body = rest
            return result
        expected = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        assert resp_headers.get("sec-websocket-accept") == expected, resp_headers
        data = rest
        while True:
            frame = _parse_frame(data)
            if frame is None:
                chunk = sock.recv(65536)
                if not chunk:
                    return result
                data += chunk
                continue
            opcode, payload, data = frame
            if opcode == 0x1:
                result.messages.append(payload.decode())
            elif opcode == 0x8:
                result.close_code = int.from_bytes(payload[:2], "big") if payload else None
                # Answer the close (masked, as a client must), then stop.
                sock.sendall(bytes([0x88, 0x80 | 2]) + b"\0\0\0\0" + payload[:2])
                return result


def _parse_frame(data: bytes) -> tuple[int, bytes, bytes] | None:
    """One unmasked server frame from the front of ``data``:
    (opcode, payload, rest), or None when incomplete."""
    if len(data) < 2:
        return None
    opcode = data[0] & 0x0F
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None
        length = int.from_bytes(data[2:4], "big")
        offset = 4
    elif length == 127:
        if len(data) < 10:
            return None
        length = int.from_bytes(data[2:10], "big")
        offset = 10
    if len(data) < offset + length:
        return None
    return opcode, data[offset:offset + length], data[offset + length:]


# --------------------------------------------------------------------------
# API protection: the client's own calls to the provider (``--api-resources``)

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "provider"
NODE = os.environ.get("NODE", "node")
# The provider's resource servers (``Provider(..., api_resources=True)``).
API_RESOURCE = "https://api.example.fr"  # JWT access tokens (ES256)
OPAQUE_RESOURCE = "https://opaque.example.fr"  # opaque access tokens
API_SCOPES = ["api:read", "api:write"]
INTROSPECTION_JWT = "application/token-introspection+jwt"


def _node(script: str, *args: str, stdin: Any = None) -> Any:
    """Run ``tests/provider/<script>`` with node; its stdout as JSON."""
    done = subprocess.run(
        [NODE, str(PROVIDER_DIR / script), *args],
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True, text=True, timeout=30, check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def resource_server_keys(kind: str = "rsa") -> tuple[dict[str, Any], dict[str, Any]]:
    """A fresh encryption key pair for the resource server (the client), made
    by ``tests/provider/keygen.mjs``: ``(private_jwk, public_jwk)``, same
    ``kid``, ``"use": "enc"``.  ``kind`` is ``"rsa"`` (RSA 2048,
    ``alg`` RSA-OAEP-256) or ``"ec"`` (P-256, ``alg`` ECDH-ES).  Give the
    provider ``{"keys": [public_jwk]}`` as ``client_jwks``."""
    pair = _node("keygen.mjs", kind)
    return pair["private"], pair["public"]


def _client_credentials(provider: Any) -> tuple[str, str]:
    return (getattr(provider, "client_id", None) or CLIENT_ID,
            getattr(provider, "client_secret", None) or CLIENT_SECRET)


def _client_post(provider: Any, url: str, form: dict[str, str],
                 headers: Mapping[str, str] | None = None) -> requests.Response:
    """A POST from the client to the provider, authenticated with the
    provider's registered method (client_secret_post unless the provider was
    started with ``auth_method="client_secret_basic"``)."""
    client_id, client_secret = _client_credentials(provider)
    auth = None
    if getattr(provider, "auth_method", None) == "client_secret_basic" and not getattr(provider, "proconnect", False):
        auth = (client_id, client_secret)
    else:
        form = {**form, "client_id": client_id, "client_secret": client_secret}
    return browser().post(url, data=form, auth=auth, headers=dict(headers or {}),
                          allow_redirects=False, timeout=TIMEOUT)


def api_tokens(provider: Any, user: str = "alice", resource: str | None = API_RESOURCE,
               scope: str = "openid api:read", *, redirect_uri: str | None = None,
               acr: str | None = None) -> dict[str, Any]:
    """A whole authorization code flow run by the client itself, straight
    against ``provider`` (a harness ``Provider``): the authorization request
    (``resource``, ``scope``, state, nonce, PKCE S256), the sign-in of
    ``user`` (``authorize``), the code taken from the redirect (not
    followed), and its exchange at the token endpoint with the ``resource``
    parameter.  Returns the token response (``access_token``, ``token_type``,
    ``expires_in``, ``scope``, ``id_token`` when ``openid`` is asked, ...).

    ``resource=None`` sends no resource: the usual access token, for
    userinfo.  ``redirect_uri`` defaults to the provider's first one.
    ``acr`` is the level chosen in the login form of a provider in
    ProConnect mode (``authorize``); None keeps "as requested"."""
    client_id, _ = _client_credentials(provider)
    redirect_uri = redirect_uri or provider.redirect_uris[0]
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if resource is not None:
        params["resource"] = resource
    back = authorize(f"{provider.issuer}/auth?{urlencode(params)}", user, acr=acr)
    assert back.split("?", 1)[0] == redirect_uri, f"redirected elsewhere: {back}"
    answer = query(back)
    assert "code" in answer, f"no code in the redirect: {back}"
    assert answer.get("state") == state, f"state changed: {back}"
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if resource is not None:
        form["resource"] = resource
    r = _client_post(provider, provider.token_url, form)
    assert r.status_code == 200, describe(r)
    return r.json()


def revoke_token(provider: Any, token: str, token_type_hint: str | None = None) -> requests.Response:
    """RFC 7009 revocation of ``token`` by the client (200 when accepted,
    also for an unknown token)."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    return _client_post(provider, provider.revocation_url, form)


def introspect(provider: Any, token: str, jwt: bool = False,
               token_type_hint: str | None = None) -> requests.Response:
    """RFC 7662 introspection of ``token`` by the client (a provider with
    ``api_resources=True``): JSON (``Accept: application/json``), or with
    ``jwt=True`` the RFC 9701 form (``Accept:
    application/token-introspection+jwt``: a JWS, or a JWE when the provider
    encrypts to the client).  The raw response."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    accept = INTROSPECTION_JWT if jwt else "application/json"
    return _client_post(provider, provider.introspection_url, form, {"Accept": accept})


def jwt_header(token: str) -> dict[str, Any]:
    """The protected header of a JWS or JWE (compact serialisation)."""
    first = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))


def provider_jwks(provider: Any) -> dict[str, Any]:
    """The provider's JWKS (public keys)."""
    r = browser().get(provider.jwks_url, timeout=TIMEOUT)
    assert r.status_code == 200, describe(r)
    return r.json()


def jose_verify(jwt: str, jwks: Mapping[str, Any], **expect: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a JWS with node's ``jose`` against ``jwks``: the signature,
    ``exp``/``nbf``, and what ``expect`` names (``issuer``, ``audience``,
    ``typ``, ``algorithms``).  ``(header, payload)``; AssertionError (with
    jose's reason) when it does not verify."""
    out = _node("jose-tool.mjs", "verify", stdin={"jwt": jwt, "jwks": dict(jwks), **expect})
    return out["header"], out["payload"]


def jose_decrypt(jwe: str, private_jwk: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Decrypt a compact JWE with node's ``jose``: ``(header, plaintext)``."""
    out = _node("jose-tool.mjs", "decrypt", stdin={"jwe": jwe, "key": dict(private_jwk)})
    return out["header"], out["plaintext"]


def bearer_challenge(response: requests.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer ...`` challenge
    (``realm``, ``error``, ``error_description``, ``acr_values``, ...);
    fails unless the response has one Bearer challenge."""
    value = response.headers.get("WWW-Authenticate", "")
    assert value.startswith("Bearer "), f"no Bearer challenge: {describe(response)}"
    params = dict(re.findall(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"', value))
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in params.items()}


def provider_private_jwk(provider: Any, kid: str) -> dict[str, Any]:
    """The provider's private signing key ``kid``, from its keys file
    (``Provider.keys_file``): for tests that need a token the provider
    would sign but does not issue (e.g. a claim its tokens never carry)."""
    keys = json.loads(Path(provider.keys_file).read_text())["keys"]
    found = [k for k in keys if k.get("kid") == kid]
    assert found, f"no key {kid!r} in {provider.keys_file}"
    return found[0]


def sign_jwt(header: Mapping[str, Any], payload: Mapping[str, Any],
             private_jwk: Mapping[str, Any]) -> str:
    """A compact JWS of ``payload`` with the protected ``header`` (its
    ``alg`` decides the algorithm), signed with ``private_jwk`` by node's
    ``jose``."""
    script = (
        "import { CompactSign, importJWK } from 'jose';"
        "let s = ''; for await (const c of process.stdin) s += c;"
        "const { header, payload, key } = JSON.parse(s);"
        "const k = await importJWK(key, header.alg);"
        "const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))"
        ".setProtectedHeader(header).sign(k);"
        "process.stdout.write(JSON.stringify(jws));"
    )
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script], cwd=PROVIDER_DIR,
        input=json.dumps({"header": dict(header), "payload": dict(payload),
                          "key": dict(private_jwk)}),
        capture_output=True, text=True, timeout=30, check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"signing failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)
