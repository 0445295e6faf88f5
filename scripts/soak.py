#!/usr/bin/env python3
"""Soak test: many sign-ins and a million authenticated requests through
Envoy + Sésame on loopback, with the memory of Sésame's wasm VMs recorded
along the way; it must stay flat.

Run by `make soak` (after the wasm build and the setup scripts), with
.tools/venv/bin/python.  What it does:

1. starts the local OpenID provider, the demo upstream and Envoy
   (``--concurrency 1``) with Sésame, through tests/harness.py; requests to
   ``/soak`` are answered by Envoy itself (a direct response) once Sésame has
   let them through, so the load measures Envoy and the filter, not the
   upstream;
2. warm-up: signs in ``--warmup-logins`` times, sends ``--warmup-requests``
   authenticated requests, then records the start figures;
3. ``--rounds`` rounds: each signs in ``--logins / rounds`` more times
   through the real provider (the Python client of the integration tests,
   several at once) while wrk sends ``--requests / rounds`` requests, each
   with the session cookie of one of the sessions made so far, in turn
   (scripts/soak.lua); figures are recorded after each round.

Figures: the gauge ``wasmcustom.sesame.vm_memory_bytes`` (the linear memory
of every Sésame VM in the Envoy process, updated by the filter every second)
and Envoy's resident set size (VmRSS in /proc/PID/status).  A table goes to
the terminal and to target/soak/report.md.

Exit status 0 only when every sign-in succeeded, every authenticated request
was answered 2xx (no other status, no socket error), every planned request
was sent within ``--time-limit``, and the VM memory grew by at most
``--max-growth`` percent from the start (after warm-up) to the end.

Loopback only; bounded in count (``--requests``, ``--logins``) and time
(``--time-limit``).  wrk is installed with apt-get when missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "target" / "soak"
LUA = ROOT / "scripts" / "soak.lua"
CALLBACK_PATH = "/oauth2/callback"
LOAD_PATH = "/soak"
VM_MEMORY = "wasmcustom.sesame.vm_memory_bytes"
COUNTERS = "wasmcustom.sesame."
USERS = ("alice", "bob")  # admitted by the test configuration (eve is not)
SESSION_COOKIE = re.compile(r"_sesame(_\d+)?")

os.environ.setdefault(
    "SESAME_LOG_DIR", str(OUT_DIR / "logs" / time.strftime("%Y%m%d-%H%M%S"))
)
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import ENVOY_BIN, DEFAULT_WASM, Envoy, HarnessError, Provider, Upstream, free_port  # noqa: E402
from conftest import wait_provider_ready  # noqa: E402
from oidc_client import browser, login, sesame_config, upstream_view  # noqa: E402


def fail(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr)
    sys.exit(2)


def ensure_wrk() -> str:
    """wrk's path; installs Debian's wrk when missing (once, idempotent)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("soak: wrk is missing; installing Debian's wrk", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = sudo + ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        fail("cannot install wrk (apt-get install wrk failed)")
    return found


# --------------------------------------------------------------------------
# Envoy and its figures


def soak_envoy(envoy_port: int, upstream: Upstream, provider: Provider) -> Envoy:
    """Envoy + Sésame (the integration tests' configuration), concurrency 1,
    without access log; ``/soak`` answered by Envoy after the filter."""
    config = sesame_config(provider.issuer, f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}")
    envoy = Envoy(config, envoy_port, upstream.port, provider.port, concurrency=1,
                  log_level="warning", component_log_level="wasm:warning")
    listener = envoy.bootstrap["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log", None)
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    routes.insert(0, {
        "match": {"path": LOAD_PATH},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
    })
    return envoy


@dataclass
class Sample:
    label: str
    elapsed: float
    requests: int
    logins: int
    vm_memory: int | None
    rss: int | None


def envoy_rss(envoy: Envoy) -> int | None:
    """Envoy's resident set size in bytes (VmRSS), None when unknown."""
    popen = envoy._proc.popen  # the harness execs Envoy: this is its pid
    if popen is None:
        return None
    try:
        text = Path(f"/proc/{popen.pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) * 1024 if match else None


def vm_memory(envoy: Envoy) -> int | None:
    # The filter updates the gauge on its 1 s timer: let it tick first.
    time.sleep(2.5)
    return envoy.stats(VM_MEMORY).get(VM_MEMORY)


# --------------------------------------------------------------------------
# Sign-ins


def session_cookie_header(b) -> str | None:
    """The ``Cookie:`` value carrying the session (all its chunks)."""
    pairs = [f"{c.name}={c.value}" for c in b.cookies if SESSION_COOKIE.fullmatch(c.name)]
    return "; ".join(sorted(pairs)) if pairs else None


def sign_in(envoy_url: str, index: int) -> str | None:
    """One whole sign-in through the provider; the session's cookie header,
    or None when it failed."""
    b = browser()
    try:
        r = login(b, envoy_url, USERS[index % len(USERS)], "/")
        if r.status_code != 302 or r.headers.get("Location") != "/":
            return None
        return session_cookie_header(b)
    except Exception:  # noqa: BLE001 - any failure counts as a failed sign-in
        return None
    finally:
        b.close()


class Logins:
    """Sign-ins made so far: their cookies, and how many failed."""

    def __init__(self, envoy_url: str, parallel: int) -> None:
        self.envoy_url = envoy_url
        self.parallel = parallel
        self.cookies: list[str] = []
        self.failed = 0
        self.done = 0
        self._lock = threading.Lock()

    def run(self, count: int, deadline: float) -> None:
        def one(i: int) -> None:
            if time.monotonic() > deadline:
                return
            cookie = sign_in(self.envoy_url, i)
            with self._lock:
                self.done += 1
                if cookie:
                    self.cookies.append(cookie)
                else:
                    self.failed += 1

        start = self.done
        with ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(one, range(start, start + count)))

    def write(self, path: Path) -> None:
        with self._lock:
            path.write_text("".join(c + "\n" for c in self.cookies))


# --------------------------------------------------------------------------
# Load


@dataclass
class LoadResult:
    responses: int = 0
    ok: int = 0
    statuses: dict[int, int] | None = None
    socket_errors: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


def run_wrk(wrk: str, url: str, cookie_file: Path, requests: int, threads: int,
            connections: int, max_seconds: float, log) -> LoadResult:
    """``requests`` authenticated requests (or fewer if ``max_seconds`` runs
    out) with wrk; statuses counted by scripts/soak.lua."""
    per_thread = max(1, -(-requests // threads))
    argv = [wrk, "-t", str(threads), "-c", str(connections),
            "-d", f"{max(1, int(max_seconds))}s", "--timeout", "10s",
            "-s", str(LUA), url + LOAD_PATH, "--",
            str(cookie_file), str(per_thread), LOAD_PATH]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    result = LoadResult(statuses={})
    finished = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        if line.startswith("soak-thread-finished"):
            finished += 1
            if finished == threads:
                # Every thread has its count: end wrk's -d wait now.
                proc.send_signal(signal.SIGINT)
        elif line.startswith("soak-thread "):
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            result.responses += int(fields["responses"])
            for pair in filter(None, fields.get("statuses", "").split(",")):
                status, count = pair.split(":")
                result.statuses[int(status)] = result.statuses.get(int(status), 0) + int(count)
        elif line.startswith("soak-summary "):
            fields = {k: int(v) for k, v in (f.split("=", 1) for f in line.split()[1:])}
            result.socket_errors = sum(fields[k] for k in ("connect", "read", "write", "timeout"))
            result.seconds = fields["duration_us"] / 1e6
            result.p50_ms = fields["latency_p50_us"] / 1000
            result.p99_ms = fields["latency_p99_us"] / 1000
            result.max_ms = fields["latency_max_us"] / 1000
    if proc.wait() != 0:
        fail(f"wrk exited with status {proc.returncode}; its output is in {log.name}")
    result.ok = sum(n for s, n in result.statuses.items() if 200 <= s <= 299)
    return result


# --------------------------------------------------------------------------
# Report


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1048576:.2f} MiB"


def growth(start: int | None, end: int | None) -> float | None:
    if not start or end is None:
        return None
    return (end - start) * 100.0 / start


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def report(args, samples: list[Sample], load: LoadResult, logins: Logins, counters: dict,
           seconds: float, failures: list[str]) -> str:
    start = next(s for s in samples if s.label == "start")
    end = samples[-1]
    lines = [
        "# Sésame soak run",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- machine: {os.cpu_count()} CPU(s), {platform.machine()}, "
        f"Linux {platform.release()}",
        f"- Envoy --concurrency 1, wrk -t {args.threads} -c {args.connections}, "
        f"{args.login_parallel} sign-ins at a time",
        f"- authenticated requests (after warm-up): {load.responses:,} "
        f"({load.ok:,} answered 2xx; statuses {dict(sorted((load.statuses or {}).items()))}, "
        f"socket errors {load.socket_errors})",
        f"- sign-ins (after warm-up): {logins.done - args.warmup_logins:,} "
        f"({logins.failed} failed); sessions used by the load: {len(logins.cookies):,}",
        f"- duration: {seconds:.0f} s in all; load {load.seconds:.0f} s, "
        f"{load.responses / load.seconds if load.seconds else 0:,.0f} requests/s; "
        f"latency (worst round) p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
        f"max {load.max_ms:.1f} ms",
        f"- filter counters (whole run): " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(counters.items())),
        f"- VM memory (`{VM_MEMORY}`): {mib(start.vm_memory)} -> {mib(end.vm_memory)} "
        f"({pct(growth(start.vm_memory, end.vm_memory))}; limit +{args.max_growth:g} %)",
        f"- Envoy RSS: {mib(start.rss)} -> {mib(end.rss)} ({pct(growth(start.rss, end.rss))})",
        "",
        "| point | elapsed | requests | sign-ins | VM memory | Envoy RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        lines.append(f"| {s.label} | {s.elapsed:.0f} s | {s.requests:,} | {s.logins:,} "
                     f"| {mib(s.vm_memory)} | {mib(s.rss)} |")
    lines.append("")
    lines.append("Result: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="authenticated requests after warm-up (default 1,000,000)")
    parser.add_argument("--logins", type=int, default=3000,
                        help="sign-ins after warm-up (default 3000)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default 10)")
    parser.add_argument("--warmup-logins", type=int, default=100)
    parser.add_argument("--warmup-requests", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections (default 16)")
    parser.add_argument("--login-parallel", type=int, default=4,
                        help="sign-ins at a time (default 4)")
    parser.add_argument("--max-growth", type=float, default=10.0,
                        help="largest accepted VM memory growth in percent (default 10)")
    parser.add_argument("--time-limit", type=float, default=3600,
                        help="seconds after which no more load is sent (default 3600)")
    args = parser.parse_args()
    if min(args.requests, args.rounds, args.threads, args.connections,
           args.login_parallel, args.warmup_logins, args.warmup_requests) < 1 or args.logins < 0:
        fail("counts must be positive")
    if args.connections < args.threads:
        fail("--connections must be at least --threads")

    if not ENVOY_BIN.exists():
        fail(f"{ENVOY_BIN} is missing: run scripts/setup-python.sh")
    if not DEFAULT_WASM.exists():
        fail(f"{DEFAULT_WASM} is missing: run make wasm")
    if not (ROOT / "tests" / "node_modules").is_dir():
        fail("tests/node_modules is missing: run scripts/setup-node.sh")
    wrk = ensure_wrk()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    cookie_file = OUT_DIR / "cookies.txt"
    wrk_log = open(OUT_DIR / "wrk.log", "w")
    began = time.monotonic()
    deadline = began + args.time_limit
    envoy_port = free_port()
    print(f"soak: logs in {os.environ['SESAME_LOG_DIR']}", flush=True)

    with Upstream() as upstream, Provider(
        redirect_uris=[f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}"]
    ) as provider:
        envoy = soak_envoy(envoy_port, upstream, provider)
        envoy.start()
        try:
            wait_provider_ready(envoy)
            return soak(args, envoy, wrk, cookie_file, wrk_log, began, deadline)
        except HarnessError as e:
            fail(str(e))
        finally:
            envoy.stop()
            wrk_log.close()
            cookie_file.unlink(missing_ok=True)  # live session cookies
    return 2


def soak(args, envoy: Envoy, wrk: str, cookie_file: Path, wrk_log, began: float,
         deadline: float) -> int:
    logins = Logins(envoy.url, args.login_parallel)
    failures: list[str] = []
    samples: list[Sample] = []

    def sample(label: str, requests: int) -> Sample:
        s = Sample(label, time.monotonic() - began, requests,
                   logins.done - min(logins.done, args.warmup_logins),
                   vm_memory(envoy), envoy_rss(envoy))
        samples.append(s)
        print(f"soak: {label:>8}: {s.elapsed:6.0f} s, {s.requests:>9,} requests, "
              f"{s.logins:>5,} sign-ins, VM memory {mib(s.vm_memory)}, RSS {mib(s.rss)}",
              flush=True)
        return s

    sample("ready", 0)
    # Warm-up.
    logins.run(args.warmup_logins, deadline)
    if not logins.cookies:
        fail("no sign-in succeeded during the warm-up; see the logs")
    b = browser()
    b.headers["Cookie"] = logins.cookies[0]
    view = upstream_view(b, envoy.url, "/")
    if not view["headers"].get("x-forwarded-email", "").endswith(".gouv.fr"):
        fail(f"the upstream did not get the identity headers: {view['headers']}")
    logins.write(cookie_file)
    warm = run_wrk(wrk, envoy.url, cookie_file, args.warmup_requests, args.threads,
                   args.connections, deadline - time.monotonic(), wrk_log)
    if warm.ok != warm.responses or warm.socket_errors:
        failures.append(f"warm-up: statuses {warm.statuses}, socket errors {warm.socket_errors}")
    warmup_failed_logins = logins.failed
    if warmup_failed_logins:
        failures.append(f"{warmup_failed_logins} sign-in(s) failed during the warm-up")
    counters_start = envoy.stats(COUNTERS)
    sample("start", 0)

    total = LoadResult(statuses={})
    for round_no in range(1, args.rounds + 1):
        if time.monotonic() > deadline:
            break
        want = args.requests * round_no // args.rounds - args.requests * (round_no - 1) // args.rounds
        want_logins = args.logins * round_no // args.rounds - args.logins * (round_no - 1) // args.rounds
        logins.write(cookie_file)
        signer = threading.Thread(target=logins.run, args=(want_logins, deadline))
        signer.start()
        load = run_wrk(wrk, envoy.url, cookie_file, want, args.threads, args.connections,
                       deadline - time.monotonic(), wrk_log)
        signer.join()
        total.responses += load.responses
        total.ok += load.ok
        total.socket_errors += load.socket_errors
        total.seconds += load.seconds
        for status, count in (load.statuses or {}).items():
            total.statuses[status] = total.statuses.get(status, 0) + count
        total.p50_ms = max(total.p50_ms, load.p50_ms)
        total.p99_ms = max(total.p99_ms, load.p99_ms)
        total.max_ms = max(total.max_ms, load.max_ms)
        sample(f"round {round_no}", total.responses)
        if not envoy.running:
            failures.append("Envoy stopped")
            break
    samples[-1].label = "end"

    counters_end = envoy.stats(COUNTERS)
    counters = {
        name[len(COUNTERS):]: value - counters_start.get(name, 0)
        for name, value in counters_end.items()
        if name not in (VM_MEMORY, COUNTERS + "provider_ready")
        and value != counters_start.get(name, 0)
    }
    start = next(s for s in samples if s.label == "start")
    end = samples[-1]
    if total.responses < args.requests:
        failures.append(f"only {total.responses:,} of {args.requests:,} requests were sent "
                        f"within the time limit")
    if total.ok != total.responses:
        bad = {s: n for s, n in total.statuses.items() if not 200 <= s <= 299}
        failures.append(f"{total.responses - total.ok:,} authenticated request(s) not "
                        f"answered 2xx: {bad}")
    if total.socket_errors:
        failures.append(f"{total.socket_errors} socket error(s)")
    if logins.failed > warmup_failed_logins:
        failures.append(f"{logins.failed - warmup_failed_logins} sign-in(s) failed")
    if logins.done - args.warmup_logins < args.logins:
        failures.append(f"only {logins.done - args.warmup_logins} of {args.logins} sign-ins "
                        f"were made within the time limit")
    grew = growth(start.vm_memory, end.vm_memory)
    if grew is None:
        failures.append(f"the gauge {VM_MEMORY} is missing")
    elif grew > args.max_growth:
        failures.append(f"VM memory grew by {grew:.1f} % (limit {args.max_growth:g} %)")

    text = report(args, samples, total, logins, counters, time.monotonic() - began, failures)
    (OUT_DIR / "report.md").write_text(text)
    print()
    print(text)
    print(f"soak: report written to {OUT_DIR / 'report.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
