// Runs one browser test script in Debian's Chromium through playwright-core, for
// tern_testkit::browser (crates/tern-testkit/src/browser.rs), which starts it as
//
//   node runner.mjs SCRIPT.mjs
//
// with TERN_CHROMIUM (the Chromium binary), TERN_NODE_MODULES (the node_modules folder
// holding playwright-core), TERN_SCREENSHOTS (where screenshots go), TERN_BROWSER_ENV
// (a JSON object: the test's ctx.env) and TERN_BROWSER_LABEL (names the failure
// screenshot). SCRIPT.mjs is an ES module whose default export is
// `async function (ctx)`, ctx being { browser, context, page, env, assert, screenshot,
// step }.
//
// Everything the runner prints on stdout is one JSON object per line, with a `type`:
// launch, step, log, console, csp, pageerror, screenshot, and last `result`
// ({ ok: true } or { ok: false, message, stack }). The script's own console.log goes
// there too, as `log` lines.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import util from 'node:util';

// Chromium's flags for this machine: headless, as root (no sandbox), no GPU, and no
// traffic of its own (QUIC, first-run, background networking, component updates and
// sync all try to reach Google, whose hosts this network refuses). Playwright adds its
// own defaults (--remote-debugging-pipe, a fresh temporary --user-data-dir, …).
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const here = path.dirname(fileURLToPath(import.meta.url));
const scriptPath = process.argv[2];
const executablePath = process.env.TERN_CHROMIUM || '/usr/bin/chromium';
const nodeModules = process.env.TERN_NODE_MODULES || path.join(here, 'node_modules');
const screenshotDir = process.env.TERN_SCREENSHOTS || path.join(os.tmpdir(), 'tern-screenshots');
const label = process.env.TERN_BROWSER_LABEL || 'script';
const env = JSON.parse(process.env.TERN_BROWSER_ENV || '{}');

function emit(event) {
  // Writes to a pipe are synchronous on Linux, so every line is out before we exit.
  process.stdout.write(JSON.stringify(event) + '\n');
}

// The script's own console output becomes `log` lines, so stdout stays JSON.
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => emit({ type: 'log', level, text: util.format(...args) });
}

function where(location) {
  if (!location || !location.url) return '';
  return ` (${location.url}:${location.lineNumber}:${location.columnNumber})`;
}

// Console messages, page errors and crashes of every page of a context. Chromium
// reports a Content Security Policy violation as a console error ("Refused to … because
// it violates the following Content Security Policy directive: …"); those are `csp`
// lines, not `console` ones.
function watch(context) {
  context.on('console', (message) => {
    const text = message.text() + where(message.location());
    const type = text.includes('Content Security Policy') ? 'csp' : 'console';
    emit({ type, level: message.type(), text });
  });
  context.on('weberror', (webError) => {
    const error = webError.error();
    emit({ type: 'pageerror', message: error.message, stack: error.stack || '' });
  });
  context.on('page', (page) => {
    page.on('crash', () => emit({ type: 'pageerror', message: `page crashed: ${page.url()}`, stack: '' }));
  });
  return context;
}

let browser;
let page;

async function screenshot(name, target) {
  const base = String(name).replace(/[^A-Za-z0-9._-]/g, '_');
  const file = path.join(screenshotDir, base.endsWith('.png') ? base : `${base}.png`);
  fs.mkdirSync(screenshotDir, { recursive: true });
  await (target || page).screenshot({ path: file, fullPage: true });
  emit({ type: 'screenshot', name: String(name), path: file });
  return file;
}

try {
  const require = createRequire(import.meta.url);
  const { chromium } = require(path.join(nodeModules, 'playwright-core'));
  browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
  emit({ type: 'launch', browser: browser.version(), executablePath, args: CHROMIUM_ARGS });

  // Every context the script makes is watched and accepts the tests' self-signed
  // certificates on loopback, like the first one.
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options = {}) =>
    watch(await newContext({ ignoreHTTPSErrors: true, ...options }));
  browser.newPage = async (options = {}) => (await browser.newContext(options)).newPage();

  const context = await browser.newContext();
  page = await context.newPage();

  const ctx = {
    browser,
    context,
    page,
    env,
    assert,
    screenshot,
    step: (text) => emit({ type: 'step', text: String(text) }),
  };
  const module = await import(pathToFileURL(path.resolve(scriptPath)).href);
  if (typeof module.default !== 'function') {
    throw new Error(`${scriptPath} must export a default async function (ctx)`);
  }
  await module.default(ctx);
  emit({ type: 'result', ok: true });
} catch (error) {
  // What the page looked like when it went wrong, if there is a page to show.
  if (page && !page.isClosed()) {
    try {
      await screenshot(`${label}-failure`);
    } catch {
      // The failure itself is what matters.
    }
  }
  emit({
    type: 'result',
    ok: false,
    message: error && error.message !== undefined ? String(error.message) : String(error),
    stack: (error && error.stack) || '',
  });
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
