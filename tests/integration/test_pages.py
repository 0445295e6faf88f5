"""Sésame's own pages, as a real Envoy serves them, in a real browser.

Two Envoys with Sésame and a ``help_contact``:

- the demo's configuration (``examples/demo-config.json``: ProConnect, the
  staff's OpenID provider and an OAuth 2.0 server, each a local instance
  here): the provider chooser; the access-denied page, reached by signing
  in at the staff's provider as eve, whom the demo's rules refuse; the
  sign-in-failed page, reached by a callback with no sign-in under way; the
  authentication-level page, at the address Sésame sends a step-up refused
  by the provider to (``/oauth2/failed?reason=acr_not_satisfied...``); the
  signed-out page;
- one ProConnect provider that cannot be reached, with the sign-in page
  shown (``skip_provider_button: false``): the sign-in page with
  ProConnect's button, and the 503 page its button leads to.

``tests/browser/pages.mjs`` opens each page in Chromium, in French and in
English, runs axe-core in it, and saves screenshots of the French page at
375 and 1280 px. The test fails on any serious or critical accessibility
violation, on a request the page makes to anything but itself, on a
Content-Security-Policy complaint, on a script, and when the checked-in
screenshots (``docs/images/pages/``) were not made from the HTML Envoy
serves now: ``docs/images/pages/pages.json`` keeps, for each screenshot, the
SHA-256 of the page's HTML (ports replaced by ``PORT``). Pixels are not
compared (fonts differ between machines).

``make screenshots`` runs this test with ``SESAME_SCREENSHOTS=write``: the
screenshots and ``pages.json`` are written to ``docs/images/pages/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from typing import Any

import pytest

from harness import NODE, REPO_ROOT, free_port, log_dir
from test_browser import demo_config_for, demo_providers, require_browser  # noqa: F401 (fixture)

PAGES_SCRIPT = REPO_ROOT / "tests" / "browser" / "pages.mjs"
SHOTS = REPO_ROOT / "docs" / "images" / "pages"
INDEX = SHOTS / "pages.json"
WIDTHS = [375, 1280]
HELP = "support.sesame@numerique.gouv.fr"
WRITE = os.environ.get("SESAME_SCREENSHOTS") == "write"
SEVERE = {"serious", "critical"}


def normalised_sha256(html: str) -> str:
    """The SHA-256 of a page's HTML with what changes from run to run (the
    ports of Envoy and the providers) replaced."""
    html = re.sub(r"(127\.0\.0\.1|localhost):\d+", r"\1:PORT", html)
    return hashlib.sha256(html.encode()).hexdigest()


def run_pages(spec: dict[str, Any]) -> list[dict[str, Any]]:
    spec_path = log_dir() / "pages-spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    proc = subprocess.run(
        [NODE, str(PAGES_SCRIPT), str(spec_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, (
        f"pages.mjs exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])["results"]


def test_pages_are_accessible_and_their_screenshots_current(make_envoy, envoy_port, demo_providers):  # noqa: F811
    require_browser()
    # The demo's providers, all reachable: the chooser lists three buttons.
    config, clusters = demo_config_for(envoy_port, demo_providers)
    config["help_contact"] = HELP
    demo = make_envoy(config, provider_port=None, extra_clusters=clusters, wait_ready=True)

    # One ProConnect provider that does not answer (nothing listens on its
    # port): the sign-in page, and the 503 page behind its button.
    down_port, listen = free_port(), free_port()
    single = dict(config)
    single.pop("providers")
    single.pop("qualified_user")
    single.update(
        provider="proconnect", issuer=f"http://127.0.0.1:{down_port}/api/v2",
        idp_cluster="idp", client_id="sesame", client_secret="sesame-demo-secret-please-change",
        redirect_uri=f"http://127.0.0.1:{listen}/oauth2/callback",
        skip_provider_button=False,
    )
    lone = make_envoy(single, listen_port=listen, provider_port=down_port, wait_ready=False)

    state = "s" * 43
    pages = [
        {"name": "sign-in", "url": f"{lone.url}/oauth2/sign_in?rd=%2F", "status": 200},
        {"name": "chooser", "url": f"{demo.url}/oauth2/sign_in?rd=%2F", "status": 200},
        {"name": "denied", "url": f"{demo.url}/oauth2/sign_in?provider=staff&rd=%2F",
         "status": 403, "signInAs": "eve@example.com"},
        {"name": "login-failed", "url": f"{demo.url}/oauth2/callback/staff?code=c&state={state}",
         "status": 400},
        {"name": "acr-refused",
         "url": f"{demo.url}/oauth2/failed?reason=acr_not_satisfied&status=403&acr=eidas2&rd=%2F",
         "status": 403},
        {"name": "signed-out", "url": f"{demo.url}/oauth2/signed_out", "status": 200},
        {"name": "unavailable", "url": f"{lone.url}/oauth2/start?rd=%2F", "status": 503},
    ]
    out = SHOTS if WRITE else log_dir() / "pages"
    results = run_pages({"out": str(out), "htmlOut": str(log_dir() / "pages"), "widths": WIDTHS,
                         "languages": ["fr", "en"], "screenshotLanguage": "fr", "pages": pages})
    print(json.dumps(results, indent=1))  # shown with -s, or -rA
    assert {(r["name"], r["lang"]) for r in results} == {
        (p["name"], lang) for p in pages for lang in ("fr", "en")}

    problems = []
    index: dict[str, dict[str, str]] = {}
    for r in results:
        where = f"{r['name']} ({r['lang']}, {r['url']})"
        html = open(r["html"], encoding="utf-8").read()
        severe = [v for v in r["violations"] if v["impact"] in SEVERE]
        if severe:
            problems.append(f"{where}: accessibility: {json.dumps(severe, ensure_ascii=False)}")
        if r["blocked"]:
            problems.append(f"{where}: Content-Security-Policy: {r['blocked']}")
        if r["requests"]:
            problems.append(f"{where}: asks for {r['requests']}")
        if "<script" in html:
            problems.append(f"{where}: has a script")
        if f'lang="{r["lang"]}"' not in html:
            problems.append(f"{where}: not in {r['lang']}")
        if r["name"] in ("denied", "login-failed", "acr-refused", "unavailable") and HELP not in html:
            problems.append(f"{where}: does not name {HELP}")
        for shot in r["screenshots"]:
            index[os.path.basename(shot)] = {
                "page": r["name"],
                "url": re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", r["url"]),
                "html_sha256": normalised_sha256(html),
            }
    assert not problems, "\n".join(problems)
    assert sorted(index) == sorted(f"{p['name']}-{w}.png" for p in pages for w in WIDTHS)

    if WRITE:
        INDEX.write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")
        return
    recorded = json.loads(INDEX.read_text()) if INDEX.is_file() else {}
    stale = [
        name for name, entry in sorted(index.items())
        if recorded.get(name, {}).get("html_sha256") != entry["html_sha256"]
        or not (SHOTS / name).is_file()
    ]
    extra = sorted(set(recorded) - set(index))
    assert not stale and not extra, (
        f"the screenshots in docs/images/pages/ are not those of today's pages "
        f"(changed: {stale}, no longer made: {extra}): run `make screenshots` "
        f"(today's are in {out})"
    )
