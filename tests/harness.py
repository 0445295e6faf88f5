"""Start and stop the real processes used by Sésame's integration tests and demo.

Five components, each a real process on a loopback port:

* ``Provider`` — the local OpenID provider (``tests/provider/server.mjs``);
* ``HostileProvider`` — an OpenID provider that misbehaves on command
  (``tests/hostile/server.mjs``), for the attack tests;
* ``OAuth2Server`` — a plain OAuth 2.0 authorization server shaped like
  OpenStreetMap's, no OpenID Connect (``tests/oauth2/server.mjs``);
* ``Upstream`` — the application behind Envoy (``tests/upstream/server.mjs``);
* ``Envoy`` — Envoy (from ``.tools/venv``, see ``scripts/setup-python.sh``)
  with the Sésame wasm filter in front of the upstream.

One more, in a thread of this Python process rather than a process of its
own: ``AccessServer``, the HTTP server of an access document
(``access_source``), whose answers the tests change between steps.
``audit_events`` reads Sésame's audit lines from Envoy's log and
``wait_until`` polls a condition.

Every process runs in its own process group, writes stdout and stderr to a
log file under ``target/test-logs/<run id>/`` and is stopped (SIGTERM, then
SIGKILL after 5 s) by ``stop()``, at interpreter exit, and when this Python
process gets SIGTERM or SIGHUP.  Only the standard library is used.

Typical use::

    from harness import Envoy, Provider, Upstream, free_port

    with Upstream() as upstream, Provider(redirect_uris=[...]) as provider:
        envoy = Envoy(config, free_port(), upstream.port, provider.port)
        envoy.start()
        ...
        envoy.stop()
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "REPO_ROOT",
    "AccessServer",
    "ENVOY_BIN",
    "Envoy",
    "HarnessError",
    "HostileProvider",
    "OAuth2Server",
    "Provider",
    "Upstream",
    "audit_events",
    "free_port",
    "log_dir",
    "port_is_free",
    "stop_all",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVOY_BIN = REPO_ROOT / ".tools" / "venv" / "bin" / "envoy"
DEFAULT_WASM = REPO_ROOT / "dist" / "sesame.wasm"
# SESAME_NATIVE: another libsesame.so to test (the file's name must stay
# libsesame.so: Envoy looks for lib<name>.so in the search path).
DEFAULT_NATIVE = Path(os.environ.get("SESAME_NATIVE", REPO_ROOT / "dist" / "libsesame.so")).resolve()
# Which build of Sésame an Envoy of the harness loads unless told: "wasm"
# (dist/sesame.wasm, proxy-wasm in V8) or "native" (dist/libsesame.so, an
# Envoy dynamic module). `make test` runs the integration suite once with each.
BUILD = os.environ.get("SESAME_BUILD", "wasm")
if BUILD not in ("wasm", "native"):
    raise SystemExit(f"SESAME_BUILD must be wasm or native, not {BUILD!r}")
NODE = os.environ.get("NODE", "node")

STOP_GRACE_SECONDS = 5.0

# Log lines meaning Envoy refused the Sésame configuration (Envoy normally
# exits as well, but do not rely on it).
ENVOY_FAILURE_MARKERS = (
    "Unable to create Wasm",  # "... HTTP filter sesame", "... plugin sesame"
    "Plugin configured to fail closed failed to load",
    "Failed to load Wasm",
    # The native build: the module refused its configuration, or cannot load.
    "Failed to initialize dynamic module",
    "Failed to create filter config",
    "Unable to load dynamic module",
)


class HarnessError(RuntimeError):
    """A process did not start, or stopped when it should not have."""


# --------------------------------------------------------------------------
# Ports and log directory


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_log_dir: Path | None = None


def log_dir() -> Path:
    """This run's log directory, ``target/test-logs/<timestamp>-<pid>/``.

    ``SESAME_LOG_DIR`` in the environment overrides it.
    """
    global _log_dir
    if _log_dir is None:
        override = os.environ.get("SESAME_LOG_DIR")
        if override:
            _log_dir = Path(override).resolve()
        else:
            run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
            _log_dir = REPO_ROOT / "target" / "test-logs" / run_id
        _log_dir.mkdir(parents=True, exist_ok=True)
    return _log_dir


# --------------------------------------------------------------------------
# Process bookkeeping

_live: set["_Process"] = set()
_live_lock = threading.Lock()


def stop_all() -> None:
    """Stop every process started by this module that is still running."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        proc.stop()


atexit.register(stop_all)


def _install_signal_cleanup() -> None:
    # Default SIGTERM/SIGHUP would end Python without running atexit: stop the
    # children first, then die of the same signal.  Only when nobody else has
    # installed a handler, and only from the main thread (required by signal).
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: Any) -> None:
        stop_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, handler)


_install_signal_cleanup()

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _child_setup() -> None:
    # In the child, before exec: if this Python process dies without cleaning
    # up (SIGKILL), the kernel sends SIGKILL to the child.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Process:
    """One child process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._group_cleaned = True
        self._log_offset = 0

    def start(self) -> None:
        if self.running:
            raise HarnessError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== {stamp} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            # PR_SET_PDEATHSIG fires when the *thread* that forked dies, so
            # only use it from the main thread.
            main = threading.current_thread() is threading.main_thread()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup if main else None,
            )
            self._group_cleaned = False
        with _live_lock:
            _live.add(self)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self) -> None:
        popen = self.popen
        if popen is not None and popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                popen.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                popen.wait()
        if popen is not None and not self._group_cleaned:
            # Children the process left behind in its group (once only: the
            # group id could be reused later).
            self._signal_group(signal.SIGKILL)
            self._group_cleaned = True
        with _live_lock:
            _live.discard(self)

    def _signal_group(self, sig: int) -> None:
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_text(self, whole: bool = True) -> str:
        """The log file's text; only since the last start when whole=False."""
        try:
            with open(self.log_path, "rb") as f:
                if not whole:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text(whole=False).splitlines()[-lines:])

    def died(self, what: str) -> HarnessError:
        return HarnessError(
            f"{self.name} {what} (exit code {self.returncode}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )


# Loopback only: never go through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _json_request(url: str, body: Any = None) -> Any:
    """GET ``url``, or POST ``body`` to it as JSON when given: its JSON answer
    (a test server's control endpoint)."""
    if body is None:
        req = urllib.request.Request(url)
    else:
        req = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
    with _opener.open(req, timeout=5) as resp:
        return json.load(resp)


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of GET url (any status), None when nothing answers."""
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def _wait(proc: _Process, ready: Any, timeout: float, what: str) -> None:
    """Poll ready() until true; raise when proc exits or on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.running:
            raise proc.died(f"exited before {what}")
        if ready():
            return
        if time.monotonic() > deadline:
            proc.stop()
            raise proc.died(f"not {what} after {timeout:g} s, stopped")
        time.sleep(0.05)


class _Component:
    """Shared context-manager and lifecycle plumbing."""

    name = "process"
    port: int
    _proc: _Process

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    def log_text(self, whole: bool = True) -> str:
        """Everything this component logged (all its starts), or only what
        it logged since its last start when ``whole=False``."""
        return self._proc.log_text(whole)

    def stop(self) -> None:
        self._proc.stop()

    def __enter__(self):
        if not self.running:
            self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} port={self.port} {state}>"

    def _start_until_listening(self, answers: Any = None) -> None:
        """Start the process and wait until it prints
        ``listening on http://127.0.0.1:PORT`` (or ``answers()`` is true)."""
        self._proc.start()
        banner = f"listening on http://127.0.0.1:{self.port}"
        _wait(
            self._proc,
            lambda: banner in self._proc.log_text(whole=False)
            or (answers is not None and answers()),
            self.timeout,
            "ready",
        )


# --------------------------------------------------------------------------
# Node processes


class Provider(_Component):
    """The test OpenID provider, ``node tests/provider/server.mjs``.

    Options left at None use the provider's defaults (client ``sesame``,
    its demo secret, ES256, client_secret_post).  The keys file defaults to
    one in the log directory, created by the provider on first start.
    ``start()`` may be called again after ``stop()``: same port, same keys
    file, so that tests can simulate an outage of the provider.

    ``logout_confirmation=False`` (``--logout-without-confirmation``) ends
    the provider's session at once on RP-initiated logout, as ProConnect
    does, instead of showing oidc-provider's confirmation page.
    ``proconnect=True`` runs it in ProConnect mode (``--proconnect``) and
    ``issuer_path="/api/v2"`` serves everything under that path
    (``--issuer-path``): ``issuer`` and ``discovery_url`` then include it,
    while ``origin`` stays ``http://127.0.0.1:PORT``.  ``last_authorize()``,
    ``last_end_session()``, ``test_stats()`` and ``reset_test_state()`` read
    and reset what the provider recorded (its ``/__test/...`` endpoints).

    API protection (the authorization server of a resource server):
    ``api_resources=True`` (``--api-resources``) adds the resource servers
    ``https://api.example.fr`` (JWT access tokens, ES256) and
    ``https://opaque.example.fr`` (opaque access tokens), both with the
    scopes ``api:read api:write``, and token introspection at
    ``introspection_url`` (JSON, or a JWT on ``Accept:
    application/token-introspection+jwt``).  ``introspection_signed_alg``
    (``"ES256"`` or ``"RS256"``; oidc-provider's default is RS256) is the
    client's ``introspection_signed_response_alg``;
    ``introspection_encryption`` (``"RSA-OAEP-256"`` or ``"ECDH-ES"``, with
    A256GCM) encrypts JWT answers to the client's public keys
    ``client_jwks`` (a dict ``{"keys": [...]}``, written to
    ``client_jwks_file`` in the log directory): the client must then ask for
    the JWT form.  See ``oidc_client.resource_server_keys``.
    """

    name = "provider"
    script = REPO_ROOT / "tests" / "provider" / "server.mjs"

    def __init__(
        self,
        redirect_uris: str | Iterable[str],
        post_logout_redirect_uris: str | Iterable[str] = (),
        *,
        port: int | None = None,
        keys_file: str | Path | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        alg: str | None = None,
        auth_method: str | None = None,
        proconnect: bool = False,
        logout_confirmation: bool = True,
        issuer_path: str = "",
        api_resources: bool = False,
        introspection_signed_alg: str | None = None,
        introspection_encryption: str | None = None,
        client_jwks: dict[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.api_resources = api_resources
        self.introspection_signed_alg = introspection_signed_alg
        self.introspection_encryption = introspection_encryption
        self.client_jwks = client_jwks
        self.client_jwks_file: Path | None = None
        self.proconnect = proconnect
        self.issuer_path = issuer_path
        self.redirect_uris = _as_list(redirect_uris)
        self.post_logout_redirect_uris = _as_list(post_logout_redirect_uris)
        self.keys_file = Path(
            keys_file or log_dir() / f"provider-{self.port}-keys.json"
        )
        self.client_id = client_id
        self.client_secret = client_secret
        self.alg = alg
        self.auth_method = auth_method
        self.timeout = timeout
        argv = [NODE, str(self.script), "--port", str(self.port)]
        for uri in self.redirect_uris:
            argv += ["--redirect-uri", uri]
        for uri in self.post_logout_redirect_uris:
            argv += ["--post-logout-redirect-uri", uri]
        argv += ["--keys-file", str(self.keys_file)]
        if client_id:
            argv += ["--client-id", client_id]
        if client_secret:
            argv += ["--client-secret", client_secret]
        if alg:
            argv += ["--alg", alg]
        if auth_method:
            argv += ["--auth-method", auth_method]
        if proconnect:
            argv += ["--proconnect"]
        if not logout_confirmation:
            argv += ["--logout-without-confirmation"]
        if issuer_path:
            argv += ["--issuer-path", issuer_path]
        if api_resources:
            argv += ["--api-resources"]
        if introspection_signed_alg:
            argv += ["--introspection-signed-alg", introspection_signed_alg]
        if introspection_encryption:
            argv += ["--introspection-encryption", introspection_encryption]
        if client_jwks is not None:
            self.client_jwks_file = log_dir() / f"provider-{self.port}-client-jwks.json"
            self.client_jwks_file.write_text(json.dumps(client_jwks, indent=2) + "\n")
            argv += ["--client-jwks", str(self.client_jwks_file)]
        argv += list(extra_args)
        self._proc = _Process(
            f"provider on port {self.port}",
            argv,
            log_dir() / f"provider-{self.port}.log",
        )

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``, without the issuer path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.origin + self.issuer_path

    @property
    def url(self) -> str:
        return self.issuer

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def userinfo_url(self) -> str:
        return f"{self.issuer}/me"

    @property
    def revocation_url(self) -> str:
        return f"{self.issuer}/token/revocation"

    @property
    def introspection_url(self) -> str:
        """Served only with ``api_resources=True``."""
        return f"{self.issuer}/token/introspection"

    # -- what the provider received (its test-only /__test/... endpoints)

    def _test_endpoint(self, name: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"{self.origin}/__test/{name}", method=method)
        with _opener.open(req, timeout=5) as resp:
            return json.load(resp)

    def last_authorize(self) -> dict[str, Any] | None:
        """Query parameters of the last ``GET /auth`` (accepted or refused)."""
        return self._test_endpoint("last-authorize")

    def last_end_session(self) -> dict[str, Any] | None:
        """Query parameters of the last ``GET /session/end``."""
        return self._test_endpoint("last-end-session")

    def test_stats(self) -> dict[str, int]:
        """Counters: ``authorize_requests``, ``authorize_refused``,
        ``end_session_requests``, ``end_session_refused``,
        ``token_client_auth_refused``, ``refresh_grants``, ``refresh_refused``,
        ``discovery_requests``, ``jwks_requests``, ``introspection_requests``
        (``POST /token/introspection``, with ``api_resources``) and
        ``revocation_requests`` (``POST /token/revocation``)."""
        return self._test_endpoint("stats")

    def reset_test_state(self) -> None:
        """Forget the recorded requests and zero the counters."""
        self._test_endpoint("reset", method="POST")

    def start(self) -> "Provider":
        self._start_until_listening(lambda: _http_status(self.discovery_url) == 200)
        return self


class HostileProvider(_Component):
    """An OpenID provider that misbehaves on command,
    ``node tests/hostile/server.mjs`` (see that file for every option).

    Issuer ``http://127.0.0.1:PORT``; it signs in a fixed user at once (no
    login page) and signs its tokens with ES256 keys made at start.
    ``control(**changes)`` posts to its test-only ``/__control`` endpoint:
    ``control(id_token={"claims": {"aud": "other"}})``,
    ``control(id_token={"sign": "none"})``, ``control(rotate=True)``,
    ``control(userinfo={"format": "json", "content_type": "text/plain"})``,
    ``control(reset=True)``...  ``requests()`` counts the requests it served
    per endpoint (``discovery``, ``jwks``, ``authorize``, ``token``,
    ``userinfo``); ``state()`` also gives ``last_id_token``, ``keys`` (the
    published kids) and ``current_kid``.
    """

    name = "hostile provider"
    script = REPO_ROOT / "tests" / "hostile" / "server.mjs"

    def __init__(
        self,
        *,
        port: int | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.timeout = timeout
        argv = [NODE, str(self.script), "--port", str(self.port)]
        if client_id:
            argv += ["--client-id", client_id]
        if client_secret:
            argv += ["--client-secret", client_secret]
        self._proc = _Process(
            f"hostile provider on port {self.port}",
            argv,
            log_dir() / f"hostile-provider-{self.port}.log",
        )

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    url = issuer

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def control(self, **changes: Any) -> dict[str, Any]:
        """Tell the provider how to misbehave from now on (POST /__control)."""
        return _json_request(f"{self.issuer}/__control", changes)

    def reset(self) -> None:
        """Back to normal behaviour, counters at zero (the keys stay)."""
        self.control(reset=True)

    def state(self) -> dict[str, Any]:
        return _json_request(f"{self.issuer}/__control")

    def requests(self) -> dict[str, int]:
        """Requests served since the last reset, per endpoint."""
        return self.state()["requests"]

    def start(self) -> "HostileProvider":
        self._start_until_listening()
        return self


class OAuth2Server(_Component):
    """A plain OAuth 2.0 authorization server shaped like OpenStreetMap's,
    ``node tests/oauth2/server.mjs`` (see that file for every detail).

    No OpenID Connect: no discovery, no ID token, no nonce, no ``iss`` in
    the authorization response; the identity is read from OSM's
    ``/api/0.6/user/details.json`` (``userinfo_endpoint``) with the access
    token.  It signs the current user in at once (no login page): ``mapper``
    (id 4242, "Carto Mapper", the default) or ``other`` (id 777, "Other
    Mapper"), chosen with ``set_user(login)``; ``set_user("__deny__")``
    makes the authorization endpoint answer ``error=access_denied``.

    ``redirect_uris`` are the exact redirect URIs allowed.  ``client_id``
    and ``client_secret`` left at None use the server's defaults
    (``sesame-osm``, ``osm-secret``; the properties give the values in use).
    ``enforce_pkce=True`` refuses a code without an S256 code_challenge at
    the token endpoint; ``refresh=False`` gives no refresh_token.
    ``set_expires_in(seconds)`` sets the next tokens' ``expires_in`` (None:
    none, and tokens that never expire, like real OSM); ``stats()`` gives
    the counters (``authorize``, ``token_code``, ``token_refresh``,
    ``token_refused``, ``userinfo``, ``userinfo_refused``),
    ``last_authorize``, ``last_token`` (client_secret redacted),
    ``last_token_client_auth``, ``current_user`` and ``expires_in``;
    ``reset()`` zeroes them and restores ``mapper`` and 3600 s.
    """

    name = "oauth2 server"
    script = REPO_ROOT / "tests" / "oauth2" / "server.mjs"
    DEFAULT_CLIENT_ID = "sesame-osm"
    DEFAULT_CLIENT_SECRET = "osm-secret"

    def __init__(
        self,
        redirect_uris: str | Iterable[str],
        *,
        port: int | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        enforce_pkce: bool = False,
        refresh: bool = True,
        timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.redirect_uris = _as_list(redirect_uris)
        if not self.redirect_uris:
            raise ValueError("OAuth2Server needs at least one redirect URI")
        self._client_id = client_id
        self._client_secret = client_secret
        self.enforce_pkce = enforce_pkce
        self.refresh = refresh
        self.timeout = timeout
        argv = [NODE, str(self.script), "--port", str(self.port)]
        for uri in self.redirect_uris:
            argv += ["--redirect-uri", uri]
        if client_id:
            argv += ["--client-id", client_id]
        if client_secret:
            argv += ["--client-secret", client_secret]
        if enforce_pkce:
            argv += ["--enforce-pkce"]
        if not refresh:
            argv += ["--no-refresh"]
        self._proc = _Process(
            f"oauth2 server on port {self.port}",
            argv,
            log_dir() / f"oauth2-{self.port}.log",
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.origin}/oauth2/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.origin}/oauth2/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.origin}/api/0.6/user/details.json"

    @property
    def client_id(self) -> str:
        return self._client_id or self.DEFAULT_CLIENT_ID

    @property
    def client_secret(self) -> str:
        return self._client_secret or self.DEFAULT_CLIENT_SECRET

    # -- test-only /__test/... endpoints

    def _test_endpoint(self, name: str, body: dict[str, Any] | None = None) -> Any:
        """GET /__test/<name>, or POST it with a JSON body when given one."""
        return _json_request(f"{self.origin}/__test/{name}", body)

    def set_user(self, login: str) -> None:
        """Sign ``login`` in from now on: ``"mapper"``, ``"other"``, or
        ``"__deny__"`` (the user refuses: ``error=access_denied``)."""
        self._test_endpoint("user", {"login": login})

    def set_expires_in(self, seconds: int | None) -> None:
        """``expires_in`` of the next tokens (None: no expiry at all)."""
        self._test_endpoint("expires_in", {"seconds": seconds})

    def stats(self) -> dict[str, Any]:
        """Counters and the last requests recorded since the last reset."""
        return self._test_endpoint("stats")

    def reset(self) -> None:
        """Zero the counters, user back to mapper, expires_in back to 3600."""
        self._test_endpoint("reset", {})

    def start(self) -> "OAuth2Server":
        self._start_until_listening()
        return self


class Upstream(_Component):
    """The demo/test application, ``node tests/upstream/server.mjs``.

    It answers JSON describing the request (with the headers it received)
    when asked with ``Accept: application/json``.
    """

    name = "upstream"
    script = REPO_ROOT / "tests" / "upstream" / "server.mjs"

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.timeout = timeout
        self._proc = _Process(
            f"upstream on port {self.port}",
            [NODE, str(self.script), "--port", str(self.port), *extra_args],
            log_dir() / f"upstream-{self.port}.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Upstream":
        self._proc.start()
        banner = "listening on"
        _wait(
            self._proc,
            lambda: banner in self._proc.log_text(whole=False)
            or _http_status(self.url + "/") is not None,
            self.timeout,
            "ready",
        )
        return self


# --------------------------------------------------------------------------
# Envoy


class Envoy(_Component):
    """Envoy with (or, when ``wasm=False``, without) the Sésame filter.

    ``build`` chooses the build of Sésame: ``"wasm"`` (``wasm_path``,
    dist/sesame.wasm by default) or ``"native"`` (dist/libsesame.so, found
    through ``ENVOY_DYNAMIC_MODULES_SEARCH_PATH``); by default the
    environment's ``SESAME_BUILD``, else wasm.

    ``plugin_config`` is the Sésame configuration: a dict (sent as JSON) or a
    string sent as is (to test refusals of malformed JSON).  The bootstrap is
    built in ``self.bootstrap`` (a dict) by the constructor; a test may change
    it before ``start()``.  It is written as YAML next to the logs.
    ``extra_args`` are added to Envoy's command line; ``extra_clusters``
    (name -> loopback port) adds clusters, one per provider of a
    configuration with several. ``bootstrap_file`` runs that file as it is
    instead (relative paths in it are read from the repository's root).
    """

    name = "envoy"

    def __init__(
        self,
        plugin_config: dict[str, Any] | str | None,
        listen_port: int,
        upstream_port: int,
        provider_port: int | None = None,
        *,
        concurrency: int = 1,
        wasm_path: str | Path | None = None,
        wasm: bool = True,
        timeout: float = 30.0,
        log_level: str = "info",
        component_log_level: str = "wasm:debug,dynamic_modules:debug",
        extra_args: Sequence[str] = (),
        extra_clusters: dict[str, int] | None = None,
        bootstrap_file: str | Path | None = None,
        build: str | None = None,
    ) -> None:
        self.build = build or BUILD
        if self.build not in ("wasm", "native"):
            raise HarnessError(f"unknown build {self.build!r}")
        self.port = listen_port
        self.upstream_port = upstream_port
        self.provider_port = provider_port
        self.extra_clusters = dict(extra_clusters or {})
        self.plugin_config = plugin_config
        self.concurrency = concurrency
        self.wasm_path = Path(wasm_path or DEFAULT_WASM).resolve()
        self.wasm = wasm
        self.native_path = DEFAULT_NATIVE
        self.timeout = timeout
        self.admin_port: int | None = None
        self.bootstrap = self._bootstrap()
        # A bootstrap file given is run as it is (the demo's envoy/demo.yaml);
        # otherwise ``self.bootstrap`` is written next to the logs.
        self.bootstrap_file = Path(bootstrap_file).resolve() if bootstrap_file else None
        self.config_path = self.bootstrap_file or log_dir() / f"envoy-{listen_port}.yaml"
        self._address_path = log_dir() / f"envoy-{listen_port}.admin-address"
        self._proc = _Process(
            f"envoy on port {listen_port}",
            [
                ENVOY_BIN,
                "-c", self.config_path,
                "--concurrency", str(concurrency),
                "--log-level", log_level,
                "--component-log-level", component_log_level,
                "--disable-hot-restart",
                "--admin-address-path", self._address_path,
                *extra_args,
            ],
            log_dir() / f"envoy-{listen_port}.log",
            env=dict(os.environ),
        )

    @property
    def filter_name(self) -> str:
        """The name of Sésame's HTTP filter in the bootstrap."""
        if self.build == "native":
            return "envoy.extensions.filters.http.dynamic_modules"
        return "envoy.filters.http.wasm"

    def sesame_filter(self, config: str) -> dict[str, Any]:
        """Sésame's HTTP filter, of this Envoy's build, with ``config``
        (the JSON text)."""
        if self.build == "native":
            return {
                "name": "envoy.extensions.filters.http.dynamic_modules",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                    # Found as libsesame.so in ENVOY_DYNAMIC_MODULES_SEARCH_PATH;
                    # counters named as the wasm build's (wasmcustom.sesame.*).
                    "dynamic_module_config": {"name": "sesame", "metrics_namespace": "wasmcustom"},
                    "filter_name": "sesame",
                    "filter_config": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": config,
                    },
                },
            }
        return {
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "sesame",
                    "root_id": "sesame",
                    "vm_config": {
                        "runtime": "envoy.wasm.runtime.v8",
                        "vm_id": "sesame",
                        "code": {"local": {"filename": str(self.wasm_path)}},
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": config,
                    },
                },
            },
        }

    # -- configuration

    def _bootstrap(self) -> dict[str, Any]:
        filters: list[dict[str, Any]] = []
        if self.wasm:
            config = self.plugin_config
            if not isinstance(config, str):
                config = json.dumps(config if config is not None else {})
            filters.append(self.sesame_filter(config))
        filters.append({
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            },
        })
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "access_log": [{
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                },
            }],
            "route_config": {
                "name": "local",
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "route": {"cluster": "upstream", "timeout": "0s"},
                    }],
                }],
            },
            "http_filters": filters,
        }
        clusters = [_static_cluster("upstream", self.upstream_port)]
        if self.provider_port is not None:
            clusters.append(_static_cluster("idp", self.provider_port))
        for name, port in self.extra_clusters.items():
            clusters.append(_static_cluster(name, port))
        return {
            "admin": {"address": _socket_address(0)},
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": _socket_address(self.port),
                    "filter_chains": [{
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": hcm,
                        }],
                    }],
                }],
                "clusters": clusters,
            },
        }

    # -- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        if self.admin_port is None:
            raise HarnessError("Envoy's admin port is known once it has started")
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, expect_failure: bool = False) -> "Envoy | str":
        """Start Envoy and wait until its admin ``/ready`` answers 200.

        Raises HarnessError (with the log's tail) if Envoy exits, logs that
        it refused the Wasm filter, or is not ready in time.

        With ``expect_failure=True``, wait instead for Envoy to refuse its
        configuration and return the log text of this start; raise
        HarnessError if it becomes ready.
        """
        # Envoy looks for lib<name>.so (libsesame.so) in this directory.
        self._proc.env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(self.native_path.parent)
        module = self.native_path if self.build == "native" else self.wasm_path
        if self.wasm and not module.is_file():
            raise HarnessError(f"{module} does not exist: build it first")
        if self.bootstrap_file is None:
            self.config_path.write_text(to_yaml(self.bootstrap))
        self._address_path.unlink(missing_ok=True)
        self.admin_port = None
        self._proc.start()
        deadline = time.monotonic() + self.timeout
        while True:
            log = self._proc.log_text(whole=False)
            refused = next((m for m in ENVOY_FAILURE_MARKERS if m in log), None)
            if refused or not self._proc.running:
                # Envoy exits by itself after refusing its configuration: let
                # it finish writing its log (the last lines say why).
                settle = time.monotonic() + 3
                while self._proc.running and time.monotonic() < settle:
                    time.sleep(0.05)
                self._proc.stop()
                if expect_failure:
                    return self._proc.log_text(whole=False)
                what = f"refused its configuration ({refused!r})" if refused else "exited"
                raise self._proc.died(what)
            if self._ready():
                if expect_failure:
                    self._proc.stop()
                    raise HarnessError(
                        f"{self._proc.name} started although a failure was "
                        f"expected; log {self.log_path}:\n{self._proc.log_tail()}"
                    )
                return self
            if time.monotonic() > deadline:
                self._proc.stop()
                raise self._proc.died(f"not ready after {self.timeout:g} s, stopped")
            time.sleep(0.05)

    def _ready(self) -> bool:
        if self.admin_port is None:
            try:
                text = self._address_path.read_text().strip()
            except FileNotFoundError:
                return False
            if not text:
                return False
            self.admin_port = int(text.rsplit(":", 1)[1])
        return _http_status(self.admin_url + "/ready") == 200

    def stats(self, prefix: str | None = None) -> dict[str, int]:
        """Counters and gauges from the admin ``/stats``, optionally only
        those whose name starts with ``prefix``."""
        url = self.admin_url + "/stats?format=json"
        with _opener.open(url, timeout=5) as resp:
            data = json.load(resp)
        result: dict[str, int] = {}
        for entry in data.get("stats", []):
            name, value = entry.get("name"), entry.get("value")
            if name is None or not isinstance(value, int):
                continue  # histograms and text readouts
            if prefix is None or name.startswith(prefix):
                result[name] = value
        return result

    def log_mark(self) -> int:
        """A mark in Envoy's log (its length now), for ``log_text_since``
        and ``audit_events``."""
        return len(self.log_text())

    def log_text_since(self, mark: int = 0) -> str:
        """What Envoy logged after ``mark`` (every start's lines)."""
        return self.log_text()[mark:]

    def audit_events(self, since: int = 0) -> list[dict[str, Any]]:
        """Sésame's audit lines logged after the mark ``since``, as dicts
        (see ``audit_events``)."""
        return audit_events(self.log_text_since(since))


def _socket_address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _static_cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {"address": _socket_address(port)},
                }],
            }],
        },
    }


# --------------------------------------------------------------------------
# An access document server (``access_source``), in a thread


class AccessServer:
    """The HTTP server of an access document, on 127.0.0.1 (a port of its
    own, random unless given), in a thread of this process.

    It serves one document at ``path`` (``/access.json``), which the test
    changes between steps: ``set(doc)`` with a dict (sent as JSON) or raw
    bytes/str (a broken document).  Each version gets an ``ETag`` (from its
    bytes; ``etags = False`` sends none), and a request whose
    ``If-None-Match`` names the current one gets ``304``.  Before the first
    ``set``, and for any other path, it answers 404.

    Outages on command: ``fail(500)`` answers that status (with a small
    body) until ``serve()``; ``hang()`` accepts requests and never answers
    (the caller's time-out) until ``serve()`` or ``stop()``; ``stop()``
    closes the port (connection refused: unreachable) and ``start()`` opens
    the same port again.

    What it saw, for the document's path: ``requests`` (a count),
    ``if_none_match`` (each request's ``If-None-Match``, None when absent,
    in order), ``headers`` (each request's headers, lower-case names),
    ``statuses`` (what it answered; None for a request left hanging);
    ``reset_counts()`` forgets them, ``wait_requests(n)`` waits for ``n``
    more than a given count.  Envoy reaches it through a cluster:
    ``Envoy(..., extra_clusters={"access": server.port})``.  Each request is
    logged to ``access-server-PORT.log`` in the log directory.
    """

    name = "access server"

    def __init__(self, path: str = "/access.json", *, port: int | None = None,
                 etags: bool = True) -> None:
        if not path.startswith("/"):
            raise ValueError("the document's path must start with /")
        self.path = path
        self.port = port or 0
        self.etags = etags
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._status: int | None = None
        self._hang = threading.Event()  # set: requests hang
        self._release = threading.Event()  # set: hanging requests give up
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0
        self.if_none_match: list[str | None] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int | None] = []
        self.log_path: Path | None = None

    # -- lifecycle

    def start(self) -> "AccessServer":
        if self.running:
            raise HarnessError(f"{self!r} is already running")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.log_path = log_dir() / f"access-server-{self.port}.log"
        self._release.clear()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"access server {self.port}", daemon=True)
        self._thread.start()
        self._log(f"=== listening on http://127.0.0.1:{self.port}")
        return self

    def stop(self) -> None:
        """Close the port: from now on nothing answers (connection refused)."""
        server, self._server = self._server, None
        self._release.set()
        if server is not None:
            server.shutdown()
            server.server_close()
            self._log("=== stopped")
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> "AccessServer":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AccessServer port={self.port} {state}>"

    @property
    def url(self) -> str:
        """The document's absolute URL (``access_source.url``)."""
        if not self.port:
            raise HarnessError("the access server's port is known once it has started")
        return f"http://127.0.0.1:{self.port}{self.path}"

    # -- what it answers

    @staticmethod
    def encode(doc: dict[str, Any] | bytes | str) -> bytes:
        """The bytes served for ``doc``: a dict as JSON, a str as UTF-8."""
        if isinstance(doc, bytes):
            return doc
        if isinstance(doc, str):
            return doc.encode()
        return json.dumps(doc, indent=2).encode()

    def set(self, doc: dict[str, Any] | bytes | str) -> bytes:
        """Serve ``doc`` from now on (and answer normally again); returns
        the bytes served."""
        body = self.encode(doc)
        with self._lock:
            self._body = body
        self.serve()
        return body

    @property
    def body(self) -> bytes | None:
        """The document's bytes currently served (None before ``set``)."""
        return self._body

    @property
    def etag(self) -> str | None:
        """The current document's ETag (None without one)."""
        body = self._body
        if body is None or not self.etags:
            return None
        return '"' + hashlib.sha256(body).hexdigest()[:24] + '"'

    def fail(self, status: int = 500) -> None:
        """Answer ``status`` to every request until ``serve()``."""
        with self._lock:
            self._status = status
        self._hang.clear()
        self._release.set()

    def hang(self) -> None:
        """Never answer (requests wait) until ``serve()`` or ``stop()``."""
        self._release.clear()
        self._hang.set()

    def serve(self) -> None:
        """Answer normally again (the document, 304 or 404)."""
        with self._lock:
            self._status = None
        self._hang.clear()
        self._release.set()

    # -- what it saw

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.if_none_match.clear()
            self.headers.clear()
            self.statuses.clear()

    def wait_requests(self, more: int = 1, *, since: int | None = None,
                      timeout: float = 10.0) -> int:
        """Wait until ``more`` requests came after the count ``since`` (the
        count now when None); returns the new count."""
        start = self.requests if since is None else since
        return wait_until(lambda: self.requests >= start + more and self.requests,
                          timeout, f"{more} request(s) to {self!r} after {start}")

    # -- internals

    def _log(self, line: str) -> None:
        if self.log_path is None:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _answer(self, headers: dict[str, str]) -> tuple[int | None, dict[str, str], bytes]:
        """(status, headers, body) for a request of the document; status
        None: leave it hanging."""
        with self._lock:
            self.requests += 1
            self.if_none_match.append(headers.get("if-none-match"))
            self.headers.append(headers)
            status, body, etag = self._status, self._body, self.etag
        if self._hang.is_set():
            return None, {}, b""
        if status is not None:
            return status, {"Content-Type": "text/plain"}, f"error {status}\n".encode()
        if body is None:
            return 404, {"Content-Type": "text/plain"}, b"no document yet\n"
        sent = {"Content-Type": "application/json"}
        if etag is not None:
            sent["ETag"] = etag
            asked = [t.strip() for t in headers.get("if-none-match", "").split(",")]
            if etag in asked or f"W/{etag}" in asked:
                return 304, sent, b""
        return 200, sent, body

    def _handler(self) -> type:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path.split("?", 1)[0] != owner.path:
                    status, sent, body = 404, {"Content-Type": "text/plain"}, b"not here\n"
                else:
                    status, sent, body = owner._answer(headers)
                if status is None:
                    owner._log(f"GET {self.path} (hanging)")
                    with owner._lock:
                        owner.statuses.append(None)
                    owner._release.wait(60)
                    self.close_connection = True
                    return
                if self.path.split("?", 1)[0] == owner.path:
                    with owner._lock:
                        owner.statuses.append(status)
                owner._log(f"GET {self.path} {status} "
                           f"if-none-match={headers.get('if-none-match')}")
                self.send_response(status)
                for name, value in sent.items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # requests are logged by do_GET

        return Handler


# --------------------------------------------------------------------------
# Polling, and Sésame's audit lines


def wait_until(condition: Any, timeout: float = 10.0, what: str = "the condition",
               interval: float = 0.1) -> Any:
    """Call ``condition()`` until it returns a true value, and return that
    value; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


def audit_events(log_text: str) -> list[dict[str, Any]]:
    """Sésame's audit lines in an Envoy log: each line whose message (from
    its first ``{``) is one JSON object with ``"audit": "sesame"``, as a
    dict, in order."""
    events = []
    for line in log_text.splitlines():
        start = line.find("{")
        if start < 0 or '"audit"' not in line:
            continue
        try:
            value = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("audit") == "sesame":
            events.append(value)
    return events


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# --------------------------------------------------------------------------
# Minimal YAML writer (dicts, lists, scalars; strings are JSON-quoted, which
# is valid YAML)


def to_yaml(value: Any, indent: int = 0) -> str:
    return "".join(_yaml_lines(value, indent))


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _yaml_key(key: str) -> str:
    plain = key.replace("_", "").replace(".", "").isalnum()
    return key if plain else json.dumps(key)


def _yaml_lines(value: Any, indent: int) -> Iterable[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            yield pad + "{}\n"
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                yield f"{pad}{_yaml_key(key)}:\n"
                yield from _yaml_lines(item, indent + 2)
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                text = empty if isinstance(item, (dict, list)) else _yaml_scalar(item)
                yield f"{pad}{_yaml_key(key)}: {text}\n"
    elif isinstance(value, list):
        if not value:
            yield pad + "[]\n"
        for item in value:
            if isinstance(item, (dict, list)) and item:
                first, *rest = list(_yaml_lines(item, indent + 2))
                yield f"{pad}- {first[indent + 2:]}"
                yield from rest
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                text = empty if isinstance(item, (dict, list)) else _yaml_scalar(item)
                yield f"{pad}- {text}\n"
    else:
        yield pad + _yaml_scalar(value) + "\n"
