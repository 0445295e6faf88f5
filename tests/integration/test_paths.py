"""Route rules hold for every spelling of a path, through a real Envoy.

Envoy, Sésame and the application can read one path differently: a default
Envoy passes the request line on as the client wrote it (``;`` parameters,
``%2e``, ``%2f``, ``//``), and servers such as Tomcat, Jetty or Spring drop
``;`` parameters, decode ``%2e`` and merge slashes before they route. Sésame
reads each path every way a server might, and holds the request to the
strictest rules of every route those readings fall on.

Each test runs against two Envoys: a default one (no path normalisation),
and one with the settings ``docs/CONFIGURATION.md`` recommends
(``normalize_path``, ``merge_slashes``, ``path_with_escaped_slashes_action``,
``headers_with_underscores_action``). The filter must be safe without them.

The set-up: ``numerique.gouv.fr`` (alice) and ``interieur.gouv.fr`` (bob)
are admitted at the filter level; ``^/admin/`` admits alice alone;
``^/api/admin/`` takes bearer tokens with the scope ``api:write``.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from conftest import CALLBACK_PATH, wait_provider_ready
from harness import Envoy
from oidc_client import (
    HTML,
    JSON,
    USERS,
    http_request,
    logged_in,
    sesame_config,
    unique_path,
    upstream_mark,
    upstream_paths,
)

RECOMMENDED_HCM = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
    "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
}

# The spellings of /admin/users an outside review sent through a default
# Envoy as bob, who reached the upstream with each of them; and more of the
# same kind. ``{}`` is a marker unique to each request.
ADMIN_SPELLINGS = [
    "/admin/users{}",
    "/admin;x=1/users{}",
    "/admin/;/users{}",
    "/admin/./users{}",
    "/./admin/users{}",
    "/%61dmin/users{}",
    "//admin/users{}",
    "/admin%2fusers{}",
    "/admin%2Fusers{}",
    "/x/../admin/users{}",
    "/admin%5cusers{}",
    "/x/%2e%2e/admin/users{}",
    "/public/..;/admin/users{}",
    "/admin//users{}",
    "/admin/users{};jsessionid=1",
]

# Alg none: anyone can write this.
FORGED_BEARER = ("Bearer eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0."
                 "eyJzdWIiOiJib2ItOTFjMiIsInNjb3BlIjoiYXBpOndyaXRlIiwiYXVkIjoic2VzYW1lIn0.")


@pytest.fixture(scope="module", params=["default-envoy", "recommended-envoy"])
def paths_envoy(request, provider, upstream, envoy_port):
    config = sesame_config(
        provider.issuer, f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}",
        allowed_email_domains=["numerique.gouv.fr", "interieur.gouv.fr"],
        routes=[
            {"path": "^/admin/", "mode": "session", "allowed_emails": [USERS["alice"]["email"]]},
            {"path": "^/api/admin/", "mode": "bearer", "scopes": ["api:write"]},
        ],
    )
    envoy = Envoy(config, envoy_port, upstream.port, provider.port)
    if request.param == "recommended-envoy":
        hcm = envoy.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0][
            "filters"][0]["typed_config"]
        hcm.update(RECOMMENDED_HCM)
    envoy.recommended = request.param == "recommended-envoy"
    envoy.start()
    try:
        wait_provider_ready(envoy)
        envoy.bob = logged_in(envoy.url, "bob")
        envoy.alice = logged_in(envoy.url, "alice")
        yield envoy
    finally:
        envoy.stop()


def reached(upstream, mark: int) -> set[str]:
    """The paths the upstream received since ``mark`` (the log's own
    synchronisation requests left out)."""
    return {p for p in upstream_paths(upstream, mark) if not p.startswith("/__barrier/")}


def cookie_of(b) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in b.cookies)


def raw(envoy, method: str, target: str, headers: dict[str, str]):
    """The request line exactly as written (no client-side normalisation)."""
    return http_request(envoy.port, method, target, headers)


def refused_by_envoy(envoy, status: int) -> bool:
    """With the recommended settings, Envoy itself answers some spellings
    (a redirect to the unescaped path, or 400) before any filter runs."""
    return envoy.recommended and (300 <= status < 400 or status == 400)


@pytest.mark.parametrize("spelling", ADMIN_SPELLINGS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_spelling_of_a_route_is_held_to_its_rules(paths_envoy, upstream, spelling, method):
    """Bob is refused at ``/admin/users`` however it is written (and with
    ``HEAD`` as with ``GET``): a 403, never the upstream. Alice, whom the
    route admits, reaches the upstream with the same spelling."""
    target = spelling.format("-" + uuid.uuid4().hex[:10])
    mark = upstream_mark(upstream)

    status, headers, body = raw(paths_envoy, method, target,
                                {**JSON, "Cookie": cookie_of(paths_envoy.bob)})

    assert status == 403 or refused_by_envoy(paths_envoy, status), (target, status, body[:200])
    assert not reached(upstream, mark), f"bob reached the upstream with {target}"

    status, _, body = raw(paths_envoy, method, target,
                          {**JSON, "Cookie": cookie_of(paths_envoy.alice)})
    assert status == 200 or refused_by_envoy(paths_envoy, status), (target, status, body[:200])


def test_bob_is_admitted_where_no_route_has_rules_of_its_own(paths_envoy):
    """The control: the filter-level rules admit bob elsewhere."""
    status, _, body = raw(paths_envoy, "GET", "/chat", {**JSON, "Cookie": cookie_of(paths_envoy.bob)})
    assert status == 200, body[:200]


@pytest.mark.parametrize("target", ["/api/admin;/users/42", "/api//admin/users/42",
                                    "/x/../api/admin/users/42", "/api/admin%2fusers/42"])
def test_a_bearer_route_spelt_otherwise_never_takes_a_forged_token_upstream(
        paths_envoy, upstream, target):
    """``DELETE /api/admin;/users/42`` with bob's session and a forged
    ``alg: none`` bearer token: the path reads both as a session path (as
    written) and as the bearer route (normalised); nothing satisfies both,
    so it is refused with 400, and nothing reaches the upstream."""
    mark = upstream_mark(upstream)

    status, _, body = raw(paths_envoy, "DELETE", target,
                          {**JSON, "Cookie": cookie_of(paths_envoy.bob),
                           "Authorization": FORGED_BEARER})

    # With the recommended settings, Envoy may normalise the path to the
    # bearer route first: then the route's own check refuses the token (401).
    normalised_first = paths_envoy.recommended and status == 401
    assert status == 400 or refused_by_envoy(paths_envoy, status) or normalised_first, (
        target, status, body[:200])
    assert not reached(upstream, mark), f"reached the upstream with {target}"


def test_the_bearer_route_itself_refuses_the_forged_token(paths_envoy, upstream):
    mark = upstream_mark(upstream)
    status, headers, _ = raw(paths_envoy, "DELETE", "/api/admin/users/42",
                             {**JSON, "Authorization": FORGED_BEARER})
    assert status == 401
    assert "invalid_token" in headers["www-authenticate"]
    assert not reached(upstream, mark)


def test_a_bearer_header_never_travels_upstream_on_a_session_route(paths_envoy):
    """A signed-in request with a client's own ``Authorization: Bearer``
    on a route in session mode: the request goes on, without the header
    (the application would otherwise read an unchecked token)."""
    status, _, body = raw(paths_envoy, "GET", "/chat",
                          {**JSON, "Cookie": cookie_of(paths_envoy.bob),
                           "Authorization": FORGED_BEARER})
    assert status == 200, body[:200]
    seen = json.loads(body)["headers"]
    assert "authorization" not in seen, seen
    assert seen["x-forwarded-email"] == USERS["bob"]["email"]


@pytest.mark.parametrize("target", ["/admin%252fusers", "/admin%2", "/admin%00/users",
                                    "/admin%0d%0a/users"])
def test_a_path_that_cannot_be_read_safely_is_a_400(paths_envoy, upstream, target):
    """Broken or double percent-encoding and escaped control characters:
    400 (from Sésame, or from Envoy itself first), never the upstream, and
    never weaker rules."""
    mark = upstream_mark(upstream)
    status, headers, body = raw(paths_envoy, "GET", target,
                                {**HTML, "Cookie": cookie_of(paths_envoy.bob)})
    assert status == 400, (target, status, body[:200])
    assert not reached(upstream, mark)


def test_refusals_are_counted(paths_envoy):
    before = paths_envoy.stats("wasmcustom.sesame.").get("wasmcustom.sesame.path_refused", 0)
    status, _, _ = raw(paths_envoy, "GET", "/admin%252fusers", dict(HTML))
    assert status == 400
    after = paths_envoy.stats("wasmcustom.sesame.").get("wasmcustom.sesame.path_refused", 0)
    assert after == before + 1


def raw_lines(port: int, lines: list[str]) -> tuple[int, bytes]:
    """A request written line by line on a socket (repeated headers
    included): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_bearer_token_hidden_in_a_second_authorization_header_never_goes_upstream(
        paths_envoy, upstream):
    """Two ``Authorization`` headers, ``Basic`` first and a forged
    ``Bearer`` second, on a session route: Envoy hands them on joined in one
    (``Basic …,Bearer …``), which a check of the first scheme alone would let
    through. Sésame sees the second credential: 400, and the forged token
    never reaches the application."""
    path = unique_path("/two-authorization")
    status, body = raw_lines(paths_envoy.port, [
        f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/json",
        "Connection: close", f"Cookie: {cookie_of(paths_envoy.bob)}",
        "Authorization: Basic Ym9iOng=", f"Authorization: {FORGED_BEARER}",
    ])
    assert status == 400, (status, body[:300])
    assert b"invalid_request" in body
    assert path not in upstream_paths(upstream)
