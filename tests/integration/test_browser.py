"""A real browser signs in through Sésame.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by npm
``playwright-core`` in ``tests/browser/login.mjs``) opens a protected page
behind Envoy, is sent to the local provider's login page, picks a test user,
and must land back on the page it asked for, with the identity that Sésame
passed to the upstream.

Chromium and playwright-core are installed by ``make test`` (``make
setup-chromium setup-node``): when they are missing the test fails, it does
not skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import NODE, REPO_ROOT, log_dir

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO_ROOT / "tests" / "node_modules" / "playwright-core" / "package.json"
LOGIN_SCRIPT = REPO_ROOT / "tests" / "browser" / "login.mjs"
DEMO_CONFIG = REPO_ROOT / "examples" / "demo-config.json"

ALICE = "alice.martin@numerique.gouv.fr"
READY_TIMEOUT = 15.0
BROWSER_TIMEOUT = 45.0  # the script gives itself 20 s (+5 s watchdog)


def require_browser() -> None:
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (run: bash scripts/setup-chromium.sh)")
    if not PLAYWRIGHT.is_file():
        missing.append(
            "tests/node_modules/playwright-core (run: bash scripts/setup-node.sh)"
        )
    if missing:
        pytest.fail(
            "the browser test needs " + " and ".join(missing)
            + "; `make test` installs both",
            pytrace=False,
        )


def wait_provider_ready(envoy) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    stats: dict[str, int] = {}
    while time.monotonic() < deadline:
        stats = envoy.stats("wasmcustom")
        if stats.get("wasmcustom.sesame.provider_ready") == 1:
            return
        time.sleep(0.1)
    pytest.fail(
        f"Sésame not ready after {READY_TIMEOUT:g} s "
        f"(wasmcustom stats: {stats}); Envoy log {envoy.log_path}"
    )


def browser_login(make_envoy, provider, envoy_port, screenshot_name: str, **changes):
    """Chromium signs in through an Envoy with the demo's configuration and
    ``changes``: (Envoy, the script's result, a description for failures,
    the requested URL)."""
    require_browser()
    config = json.loads(DEMO_CONFIG.read_text())
    config["issuer"] = provider.issuer
    config["redirect_uri"] = f"http://127.0.0.1:{envoy_port}/oauth2/callback"
    config.update(changes)
    envoy = make_envoy(config)
    wait_provider_ready(envoy)

    target = f"{envoy.url}/dashboard?tab=1"
    screenshot = log_dir() / screenshot_name
    proc = subprocess.run(
        [NODE, str(LOGIN_SCRIPT), target, ALICE, "--screenshot", str(screenshot)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
    )
    details = (
        f"\nlogin.mjs exit code {proc.returncode}"
        f"\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        f"\nscreenshot: {screenshot}\nEnvoy log: {envoy.log_path}"
    )
    assert proc.returncode == 0, "the browser login failed" + details
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))  # shown with -s, or -rA
    assert screenshot.is_file(), details
    return envoy, result, details, target


def test_browser_login_lands_on_the_requested_page(make_envoy, provider, envoy_port):
    envoy, result, details, target = browser_login(
        make_envoy, provider, envoy_port, "browser-login.png")

    final = urlsplit(result["finalUrl"])
    wanted = urlsplit(target)
    assert (final.scheme, final.netloc, final.path, final.query) == (
        wanted.scheme, wanted.netloc, wanted.path, wanted.query
    ), details
    assert result["email"] == ALICE, details
    # The sign-in cookie (Path=/oauth2/callback) existed while the provider's
    # page was shown, and the callback replaced it with the session cookie.
    during = result["cookiesDuringLogin"]
    assert any(n.startswith("_sesame_csrf_") for n in during), (
        f"no _sesame_csrf_* cookie during the sign-in; cookies: {during}" + details
    )
    cookies = result["cookies"]
    assert "_sesame" in cookies, f"no session cookie; cookies: {cookies}" + details
    csrf = [name for name in cookies if name.startswith("_sesame_csrf_")]
    assert not csrf, f"sign-in cookie left behind: {csrf}" + details

    stats = envoy.stats("wasmcustom")
    assert stats.get("wasmcustom.sesame.login_success") == 1, stats


def test_browser_signs_in_with_a_host_prefixed_cookie(make_envoy, provider, envoy_port):
    """``cookie_name: "__Host-sesame"`` (the recommended production setting):
    Chromium accepts a ``__Host-`` cookie only when it is ``Secure``, has
    ``Path=/`` and no ``Domain`` (on http://127.0.0.1, which Chromium counts
    as a secure context). Every cookie Sésame sets, the sign-in's included,
    meets that, so the whole sign-in completes in a real browser, which
    alone enforces the prefix."""
    envoy, result, details, target = browser_login(
        make_envoy, provider, envoy_port, "browser-login-host-prefix.png",
        cookie_name="__Host-sesame", cookie_secure=True)

    final = urlsplit(result["finalUrl"])
    assert (final.path, final.query) == ("/dashboard", "tab=1"), details
    assert result["email"] == ALICE, details
    during = result["cookiesDuringLogin"]
    assert any(n.startswith("__Host-sesame_csrf_") for n in during), during
    assert "__Host-sesame" in result["cookies"], result["cookies"]
    assert not [n for n in result["cookies"] if "_csrf_" in n], result["cookies"]
    stats = envoy.stats("wasmcustom")
    assert stats.get("wasmcustom.sesame.login_success") == 1, stats
