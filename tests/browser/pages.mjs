#!/usr/bin/env node
/**
 * Sésame's own pages in a real browser: a screenshot of each, and an
 * accessibility check.
 *
 * Usage:
 *   node tests/browser/pages.mjs SPEC.json
 *
 * SPEC.json:
 *   {"out": DIR, "widths": [375, 1280], "languages": ["fr", "en"],
 *    "screenshotLanguage": "fr",
 *    "pages": [{"name": "sign-in", "url": "http://127.0.0.1:PORT/oauth2/sign_in?rd=%2F",
 *               "status": 200, "signInAs": EMAIL (optional)}, ...]}
 *
 * For each page and language, a fresh context of Debian's Chromium
 * (/usr/bin/chromium, driven by playwright-core from tests/node_modules; no
 * browser is downloaded) with that language first in Accept-Language opens
 * `url` and follows what the server answers. With `signInAs`, `url` starts
 * a sign-in: the local provider's "Choose a test user" page comes
 * (tests/provider/server.mjs), the script clicks the button of that user,
 * and the page is the one the browser lands on back at Sésame. The last
 * top-level response must have status `status`; its body is written to
 * HTMLDIR/NAME-LANG.html (`"htmlOut": HTMLDIR` in SPEC.json; DIR without).
 *
 * Then axe-core (npm, tests/node_modules/axe-core), evaluated in the page
 * through the DevTools protocol (the page's Content-Security-Policy stays in
 * force: nothing is added to the page's HTML), checks the page against
 * WCAG 2.x A and AA and axe's best practices. In the screenshot language,
 * the page is also saved as DIR/NAME-WIDTH.png (the whole page) at each
 * width; the check runs at each width too.
 *
 * Prints one JSON line: {"results": [{"name", "lang", "url", "status",
 * "html": path, "violations": [{"id", "impact", "help", "width",
 * "targets"}], "blocked": [console messages about the
 * Content-Security-Policy], "requests": [URLs the page asked for besides
 * the documents it navigated to, data: ones aside], "screenshots":
 * [paths]}]}; exits 0 whatever the findings
 * (the caller judges), 1 when a page cannot be reached as described, 2 on
 * a usage error.
 */

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs';

const HEIGHTS = { 375: 812, 1280: 800 };
const PAGE_TIMEOUT_MS = 15_000;

class PageError extends Error {}

function usage(message) {
  process.stderr.write(`pages.mjs: ${message}\nusage: node tests/browser/pages.mjs SPEC.json\n`);
  process.exit(2);
}

const ACCEPT = { fr: 'fr-FR,fr;q=0.9', en: 'en-GB,en;q=0.9' };

/** The page's last top-level response, once `url` (and the sign-in, if any) is done. */
async function open(page, spec) {
  let last = null;
  page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) last = response;
  });
  await page.goto(spec.url, { waitUntil: 'load', timeout: PAGE_TIMEOUT_MS });
  if (spec.signInAs) {
    const buttons = page.locator('button');
    const texts = await buttons.allInnerTexts();
    const index = texts.findIndex((t) => t.includes(spec.signInAs));
    if (index < 0) {
      throw new PageError(`${spec.name}: no button for ${spec.signInAs} at ${page.url()} (buttons: ${JSON.stringify(texts)})`);
    }
    const origin = new URL(spec.url).origin;
    await Promise.all([
      page.waitForURL((u) => u.origin === origin && !u.pathname.includes('/callback'), { timeout: PAGE_TIMEOUT_MS }),
      buttons.nth(index).click(),
    ]);
    await page.waitForLoadState('load');
  }
  if (!last) throw new PageError(`${spec.name}: no response for ${spec.url}`);
  if (last.status() !== spec.status) {
    throw new PageError(`${spec.name}: ${last.url()} answered ${last.status()}, expected ${spec.status}`);
  }
  return last;
}

async function axeCheck(page, axeSource) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
  }));
}

async function main() {
  const [specPath] = process.argv.slice(2);
  if (!specPath) usage('expected SPEC.json');
  const spec = JSON.parse(await readFile(specPath, 'utf8'));
  const widths = spec.widths ?? [375, 1280];
  const languages = spec.languages ?? ['fr', 'en'];
  const shotLanguage = spec.screenshotLanguage ?? 'fr';
  await mkdir(spec.out, { recursive: true });
  if (spec.htmlOut) await mkdir(spec.htmlOut, { recursive: true });
  const require = createRequire(import.meta.url);
  const axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  const { chromium } = await import('playwright-core');

  // A fresh temporary profile (playwright's own for a launched browser).
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const results = [];
  try {
    for (const entry of spec.pages) {
      for (const lang of languages) {
        const context = await browser.newContext({
          locale: lang === 'fr' ? 'fr-FR' : 'en-GB',
          extraHTTPHeaders: { 'Accept-Language': ACCEPT[lang] },
          viewport: { width: widths[0], height: HEIGHTS[widths[0]] ?? 800 },
        });
        const page = await context.newPage();
        const blocked = [];
        page.on('console', (m) => {
          if (/Content.Security.Policy/i.test(m.text())) blocked.push(m.text());
        });
        // What a page asks for besides itself (fonts, stylesheets, images,
        // scripts): nothing, or data: only.
        const requests = [];
        page.on('request', (r) => {
          if (!r.isNavigationRequest() && !r.url().startsWith('data:')) requests.push(r.url());
        });
        try {
          const response = await open(page, entry);
          const own = response.url();
          const html = await response.text();
          const htmlPath = join(spec.htmlOut ?? spec.out, `${entry.name}-${lang}.html`);
          await writeFile(htmlPath, html);
          const result = {
            name: entry.name, lang, url: own, status: response.status(), html: htmlPath,
            violations: [], blocked, requests, screenshots: [],
          };
          for (const width of widths) {
            await page.setViewportSize({ width, height: HEIGHTS[width] ?? 800 });
            for (const v of await axeCheck(page, axeSource)) result.violations.push({ ...v, width });
            if (lang === shotLanguage) {
              const shot = join(spec.out, `${entry.name}-${width}.png`);
              await page.screenshot({ path: shot, fullPage: true, animations: 'disabled', caret: 'hide' });
              result.screenshots.push(shot);
            }
          }
          results.push(result);
        } finally {
          await context.close();
        }
      }
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify({ results })}\n`);
}

main().catch((err) => {
  process.stderr.write(`pages.mjs: ${err instanceof PageError ? err.message : err.stack ?? err}\n`);
  process.exit(1);
});
