"""The ready-made access log, ``envoy/access-log.yaml``, through a real Envoy.

The file's ``access_log`` entry is loaded as it is and pasted into the test
Envoy's connection manager (only its ``path`` changes, to a file of this
run's log directory). The access log reads the request's headers as Sésame
left them, so each line must name the person Sésame signed in, never an
``X-Forwarded-User`` sent by the client.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from ruamel.yaml import YAML

from harness import REPO_ROOT, Envoy, log_dir
from oidc_client import (
    HTML,
    USERS,
    XHR,
    describe,
    logged_in,
    raw_get,
    unique_path,
    upstream_view,
)

ACCESS_LOG_YAML = REPO_ROOT / "envoy" / "access-log.yaml"

# What a client might send to pass for someone else.
SPOOFED = {
    "X-Forwarded-User": "boss",
    "X-Forwarded-Email": "boss@interieur.gouv.fr",
    "X-Auth-Request-Provider": "boss-idp",
    "X-Auth-Request-Api-Key": "boss-key",
}


def access_log_entries(path: Path) -> list[dict[str, Any]]:
    """The ``access_log`` list of ``envoy/access-log.yaml``, writing to ``path``."""
    document = YAML(typ="safe", pure=True).load(ACCESS_LOG_YAML.read_text())
    assert set(document) == {"access_log"}, document
    entries = document["access_log"]
    assert len(entries) == 1, entries
    entries[0]["typed_config"]["path"] = str(path)
    return entries


def connection_manager(envoy: Envoy) -> dict[str, Any]:
    listener = envoy.bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


class AccessLog:
    """The access log file of one Envoy, read line by line as JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def line_for(self, path: str, timeout: float = 10.0) -> dict[str, Any]:
        """The one line of the request to ``path`` (the path without query),
        once Envoy has written it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines() if line.get("path") == path]
            if found:
                assert len(found) == 1, found
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no access log line for {path} in {self.path}:\n"
                    + "\n".join(json.dumps(line) for line in self.lines()[-10:]))
            time.sleep(0.05)


@pytest.fixture
def logged_envoy(
    make_envoy: Callable[..., Envoy],
    make_config: Callable[..., dict[str, Any]],
    wait_provider_ready: Callable[..., Envoy],
    envoy_port: int,
) -> tuple[Envoy, AccessLog]:
    """An Envoy with the standard configuration and the ready-made access
    log, written to its file every 50 ms."""
    path = log_dir() / f"access-log-{envoy_port}-{time.monotonic_ns()}.jsonl"
    envoy = make_envoy(make_config(), start=False,
                       extra_args=["--file-flush-interval-msec", "50"])
    connection_manager(envoy)["access_log"] = access_log_entries(path)
    envoy.start()
    wait_provider_ready(envoy)
    return envoy, AccessLog(path)


def test_the_access_log_names_the_signed_in_person_not_a_spoofed_header(logged_envoy):
    """alice signs in, then sends ``X-Forwarded-User: boss`` (and the other
    identity headers): the upstream and the access log both see alice."""
    envoy, log = logged_envoy
    alice = USERS["alice"]
    b = logged_in(envoy.url, "alice")
    path = unique_path("/logged")

    view = upstream_view(b, envoy.url, path + "?code=not-for-the-log", headers=SPOOFED)

    assert view["headers"]["x-forwarded-user"] == alice["sub"]
    line = log.line_for(path)
    assert line["user"] == alice["sub"], line
    assert line["email"] == alice["email"], line
    # One provider: Sésame sends no X-Auth-Request-Provider, and removes the
    # client's; no API key.
    assert line["provider"] is None, line
    assert line["api_key"] is None, line
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], int)
    assert line["request_id"] and line["request_id"] == view["headers"]["x-request-id"]
    assert "not-for-the-log" not in json.dumps(line)


def test_a_request_without_a_session_logs_no_user(logged_envoy):
    """A script without a session gets 401, and its line names nobody."""
    envoy, log = logged_envoy
    path = unique_path("/anonymous")

    r = raw_get(envoy.url, path, headers=XHR)

    assert r.status_code == 401, describe(r)
    line = log.line_for(path)
    assert line["status"] == 401
    assert line["user"] is None and line["email"] is None, line


def test_a_refused_request_never_reaches_the_application(logged_envoy):
    """A request Sésame answers itself (here a 401) is logged with
    ``upstream`` null."""
    envoy, log = logged_envoy
    path = unique_path("/refused")

    r = raw_get(envoy.url, path, headers={**XHR, **SPOOFED})

    assert r.status_code == 401, describe(r)
    line = log.line_for(path)
    assert line["status"] == 401 and line["upstream"] is None, line


@pytest.mark.parametrize("kind", ["script-401", "navigation-302"])
def test_a_refused_request_logs_no_spoofed_user(logged_envoy, kind):
    """The contract: the access log reads the request headers as Sésame left
    them, a client's copy removed, on every request, refused ones too."""
    envoy, log = logged_envoy
    path = unique_path(f"/spoofed-{kind}")
    headers = XHR if kind == "script-401" else HTML

    r = raw_get(envoy.url, path, headers={**headers, **SPOOFED})

    assert r.status_code == int(kind[-3:]), describe(r)
    line = log.line_for(path)
    assert line["user"] is None and line["email"] is None, line
    assert line["provider"] is None and line["api_key"] is None, line


def test_a_public_route_logs_no_spoofed_user(logged_envoy):
    """On a public route (``^/public/``) Sésame removes the client's
    identity headers too: the line names nobody."""
    envoy, log = logged_envoy
    path = unique_path("/public")

    view = upstream_view(None, envoy.url, path, headers=SPOOFED)

    assert "x-forwarded-user" not in view["headers"], view
    line = log.line_for(path)
    assert line["status"] == 200
    assert line["user"] is None and line["email"] is None, line
    assert line["provider"] is None and line["api_key"] is None, line
