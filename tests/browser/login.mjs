#!/usr/bin/env node
/**
 * Sign in through Sésame with a real (headless) browser.
 *
 * Usage:
 *   node tests/browser/login.mjs URL EMAIL [--screenshot PATH]
 *     [--provider LABEL [--sign-in-screenshot PATH]] [--viewport WIDTHxHEIGHT]
 *     [--switch-to EMAIL2 [--refusal-screenshot PATH]]
 *
 * Opens URL (a page behind Envoy + Sésame, e.g.
 * http://127.0.0.1:10000/dashboard?tab=1) in Debian's Chromium
 * (/usr/bin/chromium, driven by playwright-core from tests/node_modules; no
 * browser is ever downloaded), with a fresh temporary profile. Sésame sends
 * the browser to the local OpenID provider's "Choose a test user" page
 * (tests/provider/server.mjs, at any issuer path); the script clicks the
 * button of the user whose email is EMAIL, waits to be back on URL (same
 * origin, path and query), and checks that the demo upstream's page
 * (tests/upstream/server.mjs) shows EMAIL in `#email`.
 *
 * With several providers, Sésame first shows its own sign-in page (URL's
 * origin, a path ending in /sign_in) listing a button per provider: with
 * --provider LABEL the script waits for that page and clicks the one button
 * of its list whose text contains LABEL (case-insensitive; "ProConnect" for
 * ProConnect's button), after saving a PNG of the page to
 * --sign-in-screenshot PATH if given. --viewport sets the window's size
 * (default 1100x800).
 *
 * Success: prints one JSON line
 *   {"finalUrl", "email", "title", "cookies": [names], "loginPageTitle",
 *    "cookiesDuringLogin": [names], "headers": {name: value},
 *    "navigations": [...]}
 * (with --provider also "signInPage": {"url", "title", "providers": [button
 * texts]}) and exits 0. `headers` are the request headers the upstream's
 * page lists, with lower-case names (what reached the application).
 * `cookies` holds the names of every cookie the browser keeps for URL's host
 * at the end, whatever their path (cookies ignore ports, so the provider's
 * own cookies on 127.0.0.1 show up too);
 * `cookiesDuringLogin` the same while the provider's login page was shown.
 * `navigations` lists the top-level responses, as "STATUS METHOD
 * origin+path" (no query strings, so no codes or states).
 *
 * Failure (no browser, no button for EMAIL, an error status from Sésame or
 * the provider, wrong page, timeout...): prints what went wrong, the current
 * URL and an excerpt of the page's text on stderr, and exits 1 (2 for usage
 * errors). A 4xx/5xx top-level response fails at once; everything else must
 * finish within 20 s.
 *
 * With --screenshot PATH, a full-page PNG of the last page is written to PATH
 * (on failure too, when a page was open).
 *
 * Switching accounts (--switch-to EMAIL2): EMAIL is someone Sésame refuses.
 * After choosing EMAIL at the provider, the browser must land on Sésame's
 * refusal page, a 403 at a path ending in /failed (the clean address Sésame
 * redirects the callback to; its 403 is expected, any other error status
 * still fails at once); a PNG of it goes to --refusal-screenshot PATH if
 * given. Then, as a control, a second tab of the same browser (same cookies,
 * so the provider's session too) opens URL again and the script records
 * where it ends: a provider whose session is open sends it straight back to
 * Sésame (refused again) without showing its login form. Then the refusal
 * page's one link to .../sign_out is clicked: the browser must reach the
 * provider's login page again (an authorization request with
 * prompt=login), where the script picks EMAIL2, and must come back to URL's
 * origin, on a page whose `#email` shows EMAIL2 (the page Sésame returns
 * to, not necessarily URL's path). The JSON line then also has
 *   "refusal": {"url", "status", "title", "text", "link": {"href", "text"}},
 *   "revisit": {"finalUrl", "status", "loginForm", "navigations"},
 *   "switch": {"authorizeRequests": [{"url", "prompt"}], "loginPageUrl",
 *              "loginPageButtons": [texts]}
 * (`refusal.url` in full, query included: it must carry no code or state;
 * `revisit.loginForm` tells whether the second tab ended on the provider's
 * login form; `switch.authorizeRequests` are the navigations to the
 * provider that carried a client_id, without query but with their prompt).
 */

import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs';

const USAGE = 'usage: node tests/browser/login.mjs URL EMAIL [--screenshot PATH] '
  + '[--provider LABEL [--sign-in-screenshot PATH]] [--viewport WIDTHxHEIGHT] '
  + '[--switch-to EMAIL2 [--refusal-screenshot PATH]]';
const TOTAL_TIMEOUT_MS = 20_000;
const EXCERPT_CHARS = 800;

class LoginError extends Error {}

function usage(message) {
  process.stderr.write(`login.mjs: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseCommandLine(argv) {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        screenshot: { type: 'string' },
        provider: { type: 'string' },
        'sign-in-screenshot': { type: 'string' },
        viewport: { type: 'string', default: '1100x800' },
        'switch-to': { type: 'string' },
        'refusal-screenshot': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    usage(err.message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (positionals.length !== 2) usage('expected exactly two arguments, URL and EMAIL');
  const [rawUrl, email] = positionals;
  let url;
  try {
    url = new URL(rawUrl);
  } catch {
    usage(`not a URL: ${JSON.stringify(rawUrl)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') usage(`not an http(s) URL: ${rawUrl}`);
  if (!email.includes('@')) usage(`not an email: ${JSON.stringify(email)}`);
  if (values.provider !== undefined && !values.provider.trim()) usage('--provider needs a label');
  if (values['sign-in-screenshot'] && values.provider === undefined) {
    usage('--sign-in-screenshot goes with --provider');
  }
  const switchTo = values['switch-to'];
  if (switchTo !== undefined && !switchTo.includes('@')) usage(`--switch-to needs an email: ${JSON.stringify(switchTo)}`);
  if (values['refusal-screenshot'] && switchTo === undefined) {
    usage('--refusal-screenshot goes with --switch-to');
  }
  const size = /^(\d{3,4})x(\d{3,4})$/.exec(values.viewport);
  if (!size) usage(`--viewport must be WIDTHxHEIGHT, e.g. 800x600: ${JSON.stringify(values.viewport)}`);
  return {
    url,
    email,
    screenshot: values.screenshot,
    provider: values.provider?.trim(),
    signInScreenshot: values['sign-in-screenshot'],
    viewport: { width: Number(size[1]), height: Number(size[2]) },
    switchTo,
    refusalScreenshot: values['refusal-screenshot'],
  };
}

/** Same page as `target`: origin, path and query (the fragment never reaches a server). */
function samePage(url, target) {
  return url.origin === target.origin && url.pathname === target.pathname && url.search === target.search;
}

const withoutQuery = (href) => {
  try {
    const u = new URL(href);
    return u.origin + u.pathname;
  } catch {
    return href;
  }
};

// eslint-disable-next-line no-control-regex
const stripAnsi = (text) => String(text).replace(/\u001b\[[0-9;]*m/g, '');
const firstLine = (err) => String(err?.message ?? err).split('\n')[0];

/** Names of the cookies the browser keeps for `host`, whatever their path or port. */
async function cookieNames(context, host) {
  return (await context.cookies())
    .filter((c) => c.domain.replace(/^\./, '') === host)
    .map((c) => c.name);
}

async function loadPlaywright() {
  try {
    return await import('playwright-core');
  } catch (err) {
    throw new LoginError(
      `cannot load playwright-core (${err.code ?? err.message}); run 'bash scripts/setup-node.sh' `
      + '(or make setup-node) to install tests/node_modules',
    );
  }
}

async function pageText(page) {
  try {
    const text = await page.evaluate(() => document.body?.innerText ?? '');
    const flat = text.replace(/\s+/g, ' ').trim();
    return flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}…` : flat;
  } catch (err) {
    return `(page text unavailable: ${firstLine(err)})`;
  }
}

async function saveScreenshot(page, path) {
  await mkdir(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true, timeout: 5_000 });
}

/** The button of Sésame's sign-in page whose text contains `label`, and every button's text. */
async function providerButton(page, label) {
  const buttons = page.locator('ul.providers a.button');
  const texts = (await buttons.allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
  const wanted = label.toLowerCase();
  const matches = [];
  texts.forEach((text, i) => {
    if (text.toLowerCase().includes(wanted)) matches.push(i);
  });
  if (matches.length !== 1) {
    const listed = texts.map((t) => JSON.stringify(t)).join(', ') || 'none';
    throw new LoginError(
      `expected one provider button for ${JSON.stringify(label)} on Sésame's sign-in page, found ${matches.length} (buttons: ${listed})`,
    );
  }
  return { button: buttons.nth(matches[0]), texts };
}

/** The request headers listed by the demo upstream's page (its table's rows). */
async function upstreamHeaders(page) {
  return page.evaluate(() => {
    const headers = {};
    for (const row of document.querySelectorAll('tbody tr')) {
      const name = row.querySelector('th[scope=row]');
      const value = row.querySelector('td');
      if (!name || !value) continue;
      const summary = value.querySelector('summary');
      headers[name.textContent.trim()] = (summary ? summary.title : value.textContent).trim();
    }
    return headers;
  });
}

/** The login page's button for `email` (its text contains the email as a word). */
async function userButton(page, email) {
  const buttons = page.locator('button');
  const texts = await buttons.allInnerTexts();
  const wanted = email.toLowerCase();
  const matches = [];
  texts.forEach((text, i) => {
    if (text.toLowerCase().split(/\s+/).includes(wanted)) matches.push(i);
  });
  if (matches.length !== 1) {
    const listed = texts.map((t) => JSON.stringify(t.trim())).join(', ') || 'none';
    throw new LoginError(
      `expected one button for ${email} on the login page, found ${matches.length} (buttons: ${listed})`,
    );
  }
  return buttons.nth(matches[0]);
}

/** Sésame's refusal page: a path ending in /failed on `target`'s origin. */
const isRefusalPage = (url, target) => url.origin === target.origin && url.pathname.endsWith('/failed');

/**
 * A second tab of the same browser opens `target` again: where does it end
 * (the provider's login form, or back at Sésame without one)?
 */
async function revisit(context, target, timeout) {
  const tab = await context.newPage();
  try {
    const navigations = [];
    tab.on('response', (response) => {
      const request = response.request();
      if (!request.isNavigationRequest() || request.frame() !== tab.mainFrame()) return;
      navigations.push(`${response.status()} ${request.method()} ${withoutQuery(response.url())}`);
    });
    const response = await tab.goto(target.href, { waitUntil: 'load', timeout });
    const final = new URL(tab.url());
    const loginForm = final.origin !== target.origin && final.pathname.includes('/interaction/')
      && await tab.locator('ul.users button').count() > 0;
    return {
      finalUrl: withoutQuery(tab.url()),
      status: response?.status() ?? null,
      loginForm,
      navigations,
    };
  } finally {
    await tab.close().catch(() => {});
  }
}

async function login({
  url: target, email, screenshot, provider, signInScreenshot, viewport, switchTo, refusalScreenshot,
}, state) {
  if (!existsSync(CHROMIUM)) {
    throw new LoginError(`${CHROMIUM} not found; run 'bash scripts/setup-chromium.sh' (or make setup-chromium)`);
  }
  const { chromium } = await loadPlaywright();
  const deadline = Date.now() + TOTAL_TIMEOUT_MS;
  const left = () => Math.max(1, deadline - Date.now());

  state.profile = await mkdtemp(join(tmpdir(), 'sesame-chromium-'));
  state.context = await chromium.launchPersistentContext(state.profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: left(),
    viewport,
    locale: 'en-US',
  });
  const { context } = state;
  const page = context.pages()[0] ?? await context.newPage();
  state.page = page;
  page.setDefaultTimeout(left());

  // Top-level responses; the first error status (4xx/5xx: a page from
  // Sésame or the provider saying what went wrong) ends the wait at once,
  // except Sésame's 403 refusal page while it is expected (--switch-to).
  const navigations = [];
  let expectRefusal = switchTo !== undefined;
  let refusalStatus = null;
  const authorizeRequests = [];
  page.on('request', (request) => {
    if (!request.isNavigationRequest() || request.frame() !== page.mainFrame()) return;
    const u = new URL(request.url());
    if (u.origin !== target.origin && u.searchParams.has('client_id')) {
      authorizeRequests.push({ url: u.origin + u.pathname, prompt: u.searchParams.get('prompt') });
    }
  });
  let reportError;
  const errorPage = new Promise((resolve, reject) => { reportError = reject; });
  errorPage.catch(() => {});
  page.on('response', (response) => {
    const request = response.request();
    if (!request.isNavigationRequest() || request.frame() !== page.mainFrame()) return;
    const where = `${request.method()} ${withoutQuery(response.url())}`;
    navigations.push(`${response.status()} ${where}`);
    if (expectRefusal && response.status() === 403 && isRefusalPage(new URL(response.url()), target)) {
      refusalStatus = response.status();
      return;
    }
    if (response.status() >= 400) {
      const err = new LoginError(`${where} answered ${response.status()} ${response.statusText()}`.trim());
      err.url = response.url();
      reportError(err);
    }
  });
  state.navigations = navigations;
  // Waits for `promise`, unless an error page comes first.
  const unlessErrorPage = async (promise) => {
    try {
      return await Promise.race([promise, errorPage]);
    } catch (err) {
      if (err instanceof LoginError && err.url) {
        // Let the error page render, for the excerpt and the screenshot.
        await page.waitForURL(err.url, { waitUntil: 'load', timeout: Math.min(3_000, left()) })
          .catch(() => {});
      }
      throw err;
    }
  };

  // 1. The protected page: Sésame redirects to the provider's login page
  // (with several providers, to its sign-in page first).
  state.step = `opening ${target.href}`;
  await unlessErrorPage(page.goto(target.href, { waitUntil: 'domcontentloaded', timeout: left() }));
  let signInPage;
  if (provider !== undefined) {
    state.step = 'waiting for Sésame\'s sign-in page';
    await unlessErrorPage(page.waitForURL(
      (u) => u.origin === target.origin && u.pathname.endsWith('/sign_in'),
      { waitUntil: 'load', timeout: left() },
    ).catch((err) => {
      throw new LoginError(`Sésame did not show its sign-in page (.../sign_in): ${firstLine(err)}`);
    }));
    state.step = `choosing ${JSON.stringify(provider)} on Sésame's sign-in page`;
    const { button, texts } = await providerButton(page, provider);
    signInPage = { url: withoutQuery(page.url()), title: await page.title(), providers: texts };
    if (signInScreenshot) {
      state.step = `saving the sign-in page's screenshot to ${signInScreenshot}`;
      await saveScreenshot(page, signInScreenshot);
      state.step = `choosing ${JSON.stringify(provider)} on Sésame's sign-in page`;
    }
    await unlessErrorPage(button.click({ timeout: left() }));
  }
  state.step = 'waiting for the provider\'s login page';
  await unlessErrorPage(page.waitForURL(
    (u) => u.origin !== target.origin && u.pathname.includes('/interaction/'),
    { waitUntil: 'domcontentloaded', timeout: left() },
  ).catch((err) => {
    throw new LoginError(`Sésame did not send the browser to the provider's login page (/interaction/...): ${firstLine(err)}`);
  }));
  const loginTitle = await page.title();
  // Sésame's sign-in cookie (Path= the provider's callback path) must exist now.
  const cookiesDuringLogin = await cookieNames(context, target.hostname);

  // 2. Pick the test user.
  state.step = `choosing ${email} on the login page`;
  const button = await userButton(page, email);
  await unlessErrorPage(button.click({ timeout: left() }));

  let refusal;
  let revisited;
  let switched;
  let expected = email;
  let backTo = (u) => samePage(u, target);
  let backToText = target.href;
  if (switchTo !== undefined) {
    // 2a. Refused: Sésame's 403 page, at its clean address.
    state.step = 'waiting for Sésame\'s refusal page (.../failed)';
    await unlessErrorPage(page.waitForURL((u) => isRefusalPage(u, target), { waitUntil: 'load', timeout: left() })
      .catch((err) => {
        throw new LoginError(`${email} was not sent to Sésame's refusal page (.../failed): ${firstLine(err)}`);
      }));
    state.step = 'reading Sésame\'s refusal page';
    const links = page.locator('a[href*="/sign_out"]');
    const count = await links.count();
    if (count !== 1) throw new LoginError(`expected one link to .../sign_out on the refusal page, found ${count}`);
    refusal = {
      url: page.url(),
      status: refusalStatus,
      title: await page.title(),
      text: await pageText(page),
      link: {
        href: await links.getAttribute('href', { timeout: left() }),
        text: (await links.innerText({ timeout: left() })).replace(/\s+/g, ' ').trim(),
      },
    };
    if (refusalScreenshot) {
      state.step = `saving the refusal page's screenshot to ${refusalScreenshot}`;
      await saveScreenshot(page, refusalScreenshot);
    }

    // 2b. Control: with the provider's session still open, a plain sign-in
    // (no prompt=login) does not show the login form.
    state.step = `opening ${target.href} again in a second tab (control)`;
    revisited = await revisit(context, target, left());

    // 2c. Sign out and change account: the provider's login page again.
    expectRefusal = false;
    authorizeRequests.length = 0;
    state.step = 'clicking the refusal page\'s link to .../sign_out';
    await unlessErrorPage(links.click({ timeout: left() }));
    state.step = 'waiting for the provider\'s login page after signing out';
    await unlessErrorPage(page.waitForURL(
      (u) => u.origin !== target.origin && u.pathname.includes('/interaction/'),
      { waitUntil: 'domcontentloaded', timeout: left() },
    ).catch((err) => {
      throw new LoginError(`signing out did not lead to the provider's login page (/interaction/...): ${firstLine(err)}`);
    }));
    state.step = `choosing ${switchTo} on the login page after signing out`;
    const buttons = (await page.locator('button').allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
    switched = {
      authorizeRequests: [...authorizeRequests],
      loginPageUrl: withoutQuery(page.url()),
      loginPageButtons: buttons,
    };
    const other = await userButton(page, switchTo);
    await unlessErrorPage(other.click({ timeout: left() }));
    expected = switchTo;
    backTo = (u) => u.origin === target.origin;
    backToText = target.origin;
  }

  // 3. Back through /oauth2/callback to the original page.
  state.step = `waiting to come back to ${backToText}`;
  await unlessErrorPage(page.waitForURL(backTo, { waitUntil: 'load', timeout: left() })
    .catch((err) => {
      throw new LoginError(`the browser did not come back to ${backToText} after signing in: ${firstLine(err)}`);
    }));

  // 4. The upstream's page greets the user.
  state.step = 'reading #email on the upstream page';
  const emailElement = page.locator('#email');
  await emailElement.waitFor({ state: 'attached', timeout: left() }).catch((err) => {
    throw new LoginError(`the page has no #email element (is this the demo upstream's page?): ${firstLine(err)}`);
  });
  const shown = (await emailElement.innerText({ timeout: left() })).trim();
  if (shown !== expected) {
    throw new LoginError(`#email shows ${JSON.stringify(shown)}, expected ${JSON.stringify(expected)}`);
  }

  const cookies = await cookieNames(context, target.hostname);
  const headers = await upstreamHeaders(page);

  if (screenshot) {
    state.step = `saving the screenshot to ${screenshot}`;
    await saveScreenshot(page, screenshot);
    state.screenshotSaved = true;
  }

  return {
    finalUrl: page.url(),
    email: shown,
    title: await page.title(),
    cookies,
    loginPageTitle: loginTitle,
    cookiesDuringLogin,
    headers,
    ...(signInPage ? { signInPage } : {}),
    ...(refusal ? { refusal, revisit: revisited, switch: switched } : {}),
    navigations,
  };
}

async function main() {
  const options = parseCommandLine(process.argv.slice(2));
  const state = { step: 'starting Chromium' };
  let exitCode = 0;

  // Last resort if something hangs outside Playwright's own timeouts.
  const watchdog = setTimeout(() => {
    process.stderr.write(`login.mjs: FAILED: timed out after ${TOTAL_TIMEOUT_MS / 1000 + 5} s while ${state.step}\n`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS + 5_000);
  watchdog.unref();

  try {
    const result = await login(options, state);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    exitCode = 1;
    // Playwright's errors say what they were doing (with a call log); a
    // stack trace is only useful for a bug in this script.
    const bug = err instanceof TypeError || err instanceof ReferenceError || err instanceof SyntaxError;
    const message = stripAnsi(bug ? (err.stack ?? String(err)) : (err?.message ?? String(err)));
    const lines = [`login.mjs: FAILED while ${state.step}: ${message}`];
    if (state.page && !state.page.isClosed()) {
      lines.push(`  current URL: ${state.page.url()}`);
      lines.push(`  page title: ${await state.page.title().catch(() => '?')}`);
      lines.push(`  page text: ${await pageText(state.page)}`);
      if (options.screenshot && !state.screenshotSaved) {
        try {
          await saveScreenshot(state.page, options.screenshot);
          lines.push(`  screenshot: ${options.screenshot}`);
        } catch (shotErr) {
          lines.push(`  (no screenshot: ${firstLine(shotErr)})`);
        }
      }
    }
    if (state.navigations?.length) lines.push(`  navigations: ${state.navigations.join(' | ')}`);
    process.stderr.write(`${lines.join('\n')}\n`);
  } finally {
    await state.context?.close().catch(() => {});
    if (state.profile) await rm(state.profile, { recursive: true, force: true }).catch(() => {});
  }
  process.exit(exitCode);
}

main();
