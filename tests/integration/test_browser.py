"""A real browser signs in through Sésame.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by npm
``playwright-core`` in ``tests/browser/login.mjs``) opens a protected page
behind Envoy, is sent to the local provider's login page, picks a test user,
and must land back on the page it asked for, with the identity that Sésame
passed to the upstream.

The first two tests sign in with one provider (the demo's filter settings,
with one OpenID provider at the top level, as the demo had before it offered
several). The last one runs the demo's configuration itself
(``examples/demo-config.json``: three providers, each pointed at the test's
own instance): Chromium gets Sésame's sign-in page, chooses a provider by its
button, and signs in there.

``test_browser_switches_account_from_the_403_page`` runs the standard test
configuration (``oidc_client.sesame_config``: ``*.gouv.fr`` only): eve is
refused, and the 403 page's button signs her out and has the provider ask
again who is signing in (``prompt=login``), where alice signs in.

Chromium and playwright-core are installed by ``make test`` (``make
setup-chromium setup-node``): when they are missing the test fails, it does
not skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import CALLBACK_PATH, SIGNED_OUT_PATH
from harness import NODE, REPO_ROOT, OAuth2Server, Provider, log_dir
from oidc_client import USERS, sesame_config

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO_ROOT / "tests" / "node_modules" / "playwright-core" / "package.json"
LOGIN_SCRIPT = REPO_ROOT / "tests" / "browser" / "login.mjs"
DEMO_CONFIG = REPO_ROOT / "examples" / "demo-config.json"

ALICE = "alice.martin@numerique.gouv.fr"
# The provider of the single-provider tests, at the top level: the demo's
# before it offered several (the session provider's client).
SINGLE_PROVIDER = {
    "provider": "oidc",
    "idp_cluster": "idp",
    "client_id": "sesame",
    "client_secret": "sesame-demo-secret-please-change",
    "token_endpoint_auth_method": "client_secret_post",
    "scopes": ["openid", "email", "given_name", "usual_name", "uid", "siret", "idp_id"],
}
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


def demo_config() -> dict[str, Any]:
    return json.loads(DEMO_CONFIG.read_text())


def single_provider_config(issuer: str, redirect_uri: str) -> dict[str, Any]:
    """The demo's filter settings (cookies, public paths, rules, claim
    headers) with ``SINGLE_PROVIDER`` at the top level instead of its
    ``providers`` list."""
    config = {k: v for k, v in demo_config().items() if k not in ("providers", "qualified_user")}
    config.update(SINGLE_PROVIDER, issuer=issuer, redirect_uri=redirect_uri)
    return config


def run_login(envoy, screenshot_name: str, *args: str, email: str = ALICE):
    """Chromium signs in as ``email`` (alice) at ``envoy``/dashboard?tab=1
    (login.mjs with ``args``): (the script's result, a description for
    failures, the requested URL)."""
    target = f"{envoy.url}/dashboard?tab=1"
    screenshot = log_dir() / screenshot_name
    proc = subprocess.run(
        [NODE, str(LOGIN_SCRIPT), target, email, "--screenshot", str(screenshot), *args],
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
    return result, details, target


def browser_login(make_envoy, provider, envoy_port, screenshot_name: str, **changes):
    """Chromium signs in through an Envoy with the demo's filter settings,
    one provider (``single_provider_config``) and ``changes``: (Envoy, the
    script's result, a description for failures, the requested URL)."""
    require_browser()
    config = single_provider_config(
        provider.issuer, f"http://127.0.0.1:{envoy_port}/oauth2/callback")
    config.update(changes)
    envoy = make_envoy(config)
    wait_provider_ready(envoy)
    return (envoy, *run_login(envoy, screenshot_name))


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


# --------------------------------------------------------------------------
# Changing account from the 403 page

EVE = USERS["eve"]["email"]
SWITCH_BUTTON_TEXTS = ("Se déconnecter et changer de compte", "Sign out and use another account")


def test_browser_switches_account_from_the_403_page(make_envoy, provider, envoy_port):
    """Chromium signs in as eve, whom ``*.gouv.fr`` refuses: it lands on
    Sésame's 403 page at its clean address (``/oauth2/failed?...``, no code
    or state), which names her and has a button to sign out and change
    account (saved as ``browser-refusal-403.png`` in the log dir).

    Control: a second tab of the same browser (the provider's session
    cookie included) that opens the protected page again is sent by the
    provider straight back to Sésame, refused again, without its login
    form: a plain sign-in cannot change account.

    The button signs eve out (``/oauth2/sign_out``) and starts a sign-in
    with ``prompt=login``: the provider shows its login form again although
    eve's session there is still open; Chromium picks alice and lands on a
    page of the application signed in as alice."""
    require_browser()
    envoy = make_envoy(sesame_config(
        provider.issuer, f"http://127.0.0.1:{envoy_port}{CALLBACK_PATH}"))
    wait_provider_ready(envoy)
    refusal_shot = log_dir() / "browser-refusal-403.png"

    result, details, target = run_login(
        envoy, "browser-switch-account.png",
        "--switch-to", ALICE, "--refusal-screenshot", str(refusal_shot), email=EVE)

    # Refused, on the clean address: no code or state in the address bar.
    refusal = result["refusal"]
    url = urlsplit(refusal["url"])
    assert (url.scheme + "://" + url.netloc, url.path) == (envoy.url, "/oauth2/failed"), details
    params = parse_qs(url.query)
    assert "code" not in params and "state" not in params, details
    # (rd is "/" for a refusal at the callback, whatever page was asked for.)
    assert params == {"reason": ["denied"], "status": ["403"], "rd": ["/"]}, details
    assert refusal["status"] == 403, details
    assert EVE in refusal["text"], details
    assert refusal["link"]["href"] == "/oauth2/sign_out?rd=/oauth2/sign_in%3Fprompt%3Dlogin", details
    assert refusal["link"]["text"] in SWITCH_BUTTON_TEXTS, details
    assert refusal_shot.is_file(), details
    assert not any("/oauth2/callback" in n and n.startswith("403 ") for n in result["navigations"]), details

    # Control: without prompt=login, the provider's session signs eve
    # straight back in (no login form), and she is refused again.
    revisit = result["revisit"]
    assert not revisit["loginForm"], details
    assert revisit["finalUrl"] == envoy.url + "/oauth2/failed", details
    assert revisit["status"] == 403, details
    provider_origin = provider.issuer.rstrip("/")
    at_provider = [n for n in revisit["navigations"] if f" {provider_origin}/" in n]
    assert at_provider and not [n for n in at_provider if n.startswith("200 ")], details

    # The button: signed out, then the provider asks who signs in.
    navigations = result["navigations"]
    assert f"302 GET {envoy.url}/oauth2/sign_out" in navigations, details
    assert f"302 GET {envoy.url}/oauth2/sign_in" in navigations, details
    switch = result["switch"]
    prompts = [r["prompt"] for r in switch["authorizeRequests"]]
    assert prompts == ["login"], details
    assert switch["loginPageUrl"].startswith(provider_origin + "/interaction/"), details
    for user in ("alice", "eve"):
        assert f"Sign in as {USERS[user]['email']}" in switch["loginPageButtons"], details

    # Signed in as alice, on a page of the application.
    final = urlsplit(result["finalUrl"])
    assert f"{final.scheme}://{final.netloc}" == envoy.url, details
    assert not final.path.startswith("/oauth2/"), details
    assert result["email"] == ALICE, details
    assert result["headers"].get("x-forwarded-email") == ALICE, details
    assert "_sesame" in result["cookies"], details
    stats = envoy.stats("wasmcustom")
    assert stats.get("wasmcustom.sesame.login_success") == 1, stats
    assert stats.get("wasmcustom.sesame.access_denied") == 2, stats


# --------------------------------------------------------------------------
# The demo's configuration: several providers and Sésame's sign-in page


@pytest.fixture(scope="module")
def demo_providers(envoy_port: int) -> Iterator[dict[str, Provider | OAuth2Server]]:
    """One server per entry of the demo configuration's ``providers``, by
    id, accepting its callback on ``envoy_port`` with its client: the local
    OpenID provider (in ProConnect mode, under the entry's issuer path, for
    a ``proconnect`` entry) or the OAuth 2.0 server."""
    base = f"http://127.0.0.1:{envoy_port}"
    servers: dict[str, Provider | OAuth2Server] = {}
    with ExitStack() as stack:
        for entry in demo_config()["providers"]:
            callback = f"{base}/oauth2/callback/{entry['id']}"
            kind = entry.get("provider", "oidc")
            if kind == "oauth2":
                server: Provider | OAuth2Server = OAuth2Server(
                    [callback], client_id=entry["client_id"],
                    client_secret=entry["client_secret"], enforce_pkce=True)
            else:
                server = Provider(
                    redirect_uris=[callback],
                    post_logout_redirect_uris=[base + SIGNED_OUT_PATH],
                    client_id=entry["client_id"],
                    client_secret=entry["client_secret"],
                    proconnect=kind == "proconnect",
                    issuer_path=urlsplit(entry.get("issuer", "")).path.rstrip("/"),
                )
            servers[entry["id"]] = stack.enter_context(server)
        yield servers


def demo_config_for(envoy_port: int, servers: dict[str, Provider | OAuth2Server]):
    """The demo configuration with each provider pointed at ``servers`` and
    its callback on ``envoy_port``; the Envoy clusters it needs."""
    config = demo_config()
    clusters = {}
    for entry in config["providers"]:
        server = servers[entry["id"]]
        entry["redirect_uri"] = f"http://127.0.0.1:{envoy_port}/oauth2/callback/{entry['id']}"
        if isinstance(server, OAuth2Server):
            entry.update(authorization_endpoint=server.authorization_endpoint,
                         token_endpoint=server.token_endpoint,
                         userinfo_endpoint=server.userinfo_endpoint)
        else:
            entry["issuer"] = server.issuer
        clusters[entry["idp_cluster"]] = server.port
    return config, clusters


OPENID_PROVIDERS = [e for e in demo_config()["providers"] if e.get("provider", "oidc") != "oauth2"]


@pytest.mark.parametrize("entry", OPENID_PROVIDERS, ids=lambda e: e["id"])
def test_browser_chooses_a_provider_on_the_sign_in_page(
        make_envoy, envoy_port, demo_providers, entry):
    """The demo's configuration: Chromium asks for a page, gets Sésame's
    sign-in page listing every provider, clicks one provider's button,
    signs in there as alice, and lands on the page it asked for, signed in
    by that provider (``X-Auth-Request-Provider`` at the upstream). The
    sign-in page is saved as ``sign-in-page-<id>.png`` in the log dir (the
    documentation's screenshots are test_pages.py's)."""
    require_browser()
    config, clusters = demo_config_for(envoy_port, demo_providers)
    # Ready: the gauge provider_ready is 1 once every provider is.
    envoy = make_envoy(config, provider_port=None, extra_clusters=clusters, wait_ready=True)

    # ProConnect's button says "ProConnect", whatever the entry's label.
    label = "ProConnect" if entry.get("provider") == "proconnect" else entry["label"]
    sign_in_shot = log_dir() / f"sign-in-page-{entry['id']}.png"
    result, details, target = run_login(
        envoy, f"browser-login-{entry['id']}.png",
        "--provider", label, "--sign-in-screenshot", str(sign_in_shot), "--viewport", "800x600")

    page = result["signInPage"]
    assert urlsplit(page["url"]).path == "/oauth2/sign_in", details
    assert len(page["providers"]) == len(config["providers"]), details
    for other in config["providers"]:
        if other.get("provider") != "proconnect":
            assert any(other["label"] in text for text in page["providers"]), details
    assert sign_in_shot.is_file(), details
    assert any(n.endswith(" GET " + envoy.url + "/oauth2/sign_in") for n in result["navigations"]), details

    final = urlsplit(result["finalUrl"])
    assert (final.path, final.query) == ("/dashboard", "tab=1"), details
    assert result["email"] == ALICE, details
    headers = result["headers"]
    assert headers.get("x-auth-request-provider") == entry["id"], details
    assert headers.get("x-forwarded-email") == ALICE, details
    assert headers.get("x-forwarded-user", "").startswith(entry["id"] + ":"), "qualified_user" + details
    assert "_sesame" in result["cookies"], details
    stats = envoy.stats("wasmcustom")
    assert stats.get("wasmcustom.sesame.login_success") == 1, stats
