// What the webmail browser scripts share: the real peers (peer.py: SMTP in, IMAP to
// look), building messages, logging in, finding rows, and waiting for a condition.
//
// `env` (from crates/tern/tests/webmail.rs) carries BASE (https://127.0.0.1:port),
// HTTP_BASE (http://…), SMTP (the MX port), SUBMISSION, IMAP, ADMIN, ADMIN_PASSWORD,
// BOB, BOB_PASSWORD.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);

/** Runs a peer.py command with a JSON request; its JSON answer. */
export async function py(command, request) {
  const child = run('python3', [path.join(here, 'peer.py'), command], { maxBuffer: 512 << 20 });
  child.child.stdin.end(JSON.stringify(request));
  try {
    const { stdout } = await child;
    return JSON.parse(stdout);
  } catch (e) {
    throw new Error(`peer.py ${command} failed: ${e.stderr || e.message}`);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns something truthy (or stops throwing); that value. */
export async function until(what, fn, timeout = 30000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const said = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${said})`);
    }
    await sleep(150);
  }
}

// --- Messages ------------------------------------------------------------------------

const CRLF = '\r\n';
let counter = 0;

/** An RFC 2047 encoded word when the text is not plain ASCII. */
export function encodedWord(text) {
  // eslint-disable-next-line no-control-regex
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  return `=?UTF-8?B?${Buffer.from(text, 'utf8').toString('base64')}?=`;
}

function base64Lines(buffer) {
  return buffer.toString('base64').replace(/.{1,76}/g, (l) => l + CRLF);
}

function textPart(type, text) {
  const bytes = Buffer.from(text.replace(/\r?\n/g, CRLF), 'utf8');
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text) && !/^.{999}/m.test(text)) {
    return `Content-Type: ${type}; charset="utf-8"${CRLF}Content-Transfer-Encoding: 7bit${CRLF}${CRLF}${bytes}${CRLF}`;
  }
  return `Content-Type: ${type}; charset="utf-8"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}${base64Lines(bytes)}`;
}

function filePart(a) {
  const ascii = /^[\x20-\x7e]*$/.test(a.name) && !a.name.includes('"');
  const disposition = ascii
    ? `attachment; filename="${a.name}"`
    : `attachment; filename*=UTF-8''${encodeURIComponent(a.name)}`;
  const typeName = ascii ? `; name="${a.name}"` : '';
  return (
    `Content-Type: ${a.type}${typeName}${CRLF}Content-Disposition: ${disposition}${CRLF}` +
    `Content-Transfer-Encoding: base64${CRLF}${CRLF}${base64Lines(Buffer.from(a.data))}`
  );
}

function inlinePart(r) {
  return (
    `Content-Type: ${r.type}${CRLF}Content-ID: <${r.cid}>${CRLF}Content-Disposition: inline${CRLF}` +
    `Content-Transfer-Encoding: base64${CRLF}${CRLF}${base64Lines(Buffer.from(r.data))}`
  );
}

function multipart(subtype, parts) {
  const boundary = `=_tern_test_${++counter}_${Math.random().toString(36).slice(2)}`;
  const body = parts.map((p) => `--${boundary}${CRLF}${p}`).join('') + `--${boundary}--${CRLF}`;
  return `Content-Type: multipart/${subtype}; boundary="${boundary}"${CRLF}${CRLF}${body}`;
}

/**
 * A message as bytes. `m`: from, to, subject, text and/or html (html may be a Buffer,
 * sent as-is in base64 with `charset`), date (a Date), messageId, inReplyTo, references,
 * attachments [{name, type, data}], related [{cid, type, data}] (inline images of the
 * HTML), headers (extra lines).
 */
export function message(m) {
  const id = m.messageId || `${Date.now()}.${++counter}.${Math.random().toString(36).slice(2)}@test.example`;
  const head = [
    `From: ${m.from}`,
    `To: ${m.to}`,
    `Subject: ${encodedWord(m.subject)}`,
    `Date: ${(m.date || new Date()).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${id}>`,
    'MIME-Version: 1.0',
  ];
  if (m.inReplyTo) head.push(`In-Reply-To: <${m.inReplyTo}>`);
  if (m.references) head.push(`References: ${m.references.map((r) => `<${r}>`).join(' ')}`);
  for (const h of m.headers || []) head.push(h);
  let html = null;
  if (m.html !== undefined) {
    if (Buffer.isBuffer(m.html)) {
      html =
        `Content-Type: text/html; charset="${m.charset || 'utf-8'}"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}` +
        base64Lines(m.html);
    } else {
      html = textPart('text/html', m.html);
    }
    if (m.related && m.related.length) html = multipart('related', [html, ...m.related.map(inlinePart)]);
  }
  const text = m.text !== undefined ? textPart('text/plain', m.text) : null;
  let body = html && text ? multipart('alternative', [text, html]) : html || text || textPart('text/plain', '');
  if (m.attachments && m.attachments.length) body = multipart('mixed', [body, ...m.attachments.map(filePart)]);
  return { id, raw: Buffer.from(head.join(CRLF) + CRLF + body, 'utf8') };
}

/** The address inside `Name <address>`. */
export function addressOf(from) {
  const match = /<([^>]+)>/.exec(from);
  return match ? match[1] : from.trim();
}

/** Delivers messages to the MX port, as another mail server would. `list`: [{from, to, raw}] */
export async function deliver(env, list) {
  const messages = list.map((m) => ({
    from: addressOf(m.from),
    to: Array.isArray(m.to) ? m.to : [addressOf(m.to)],
    raw_b64: m.raw.toString('base64'),
  }));
  return py('deliver', { port: Number(env.SMTP), messages });
}

/** Sends messages through submission, logged in as `user`. */
export async function submit(env, user, password, list) {
  const messages = list.map((m) => ({
    from: addressOf(m.from),
    to: Array.isArray(m.to) ? m.to : [addressOf(m.to)],
    raw_b64: m.raw.toString('base64'),
  }));
  return py('submit', { port: Number(env.SUBMISSION), user, password, messages });
}

/** IMAP, as `user`. */
export function imap(env, user, password) {
  const port = Number(env.IMAP);
  return {
    /** Every message of a folder (see peer.py); `raw` adds the exact bytes as `raw` (Buffer). */
    async folder(name, raw = false) {
      const { messages } = await py('folder', { port, user, password, folder: name, raw });
      for (const m of messages) {
        if (m.raw_b64 !== undefined) m.raw = Buffer.from(m.raw_b64, 'base64');
        for (const a of m.attachments) a.data = Buffer.from(a.data_b64, 'base64');
      }
      return messages;
    },
    async folders() {
      return (await py('folders', { port, user, password })).folders;
    },
    async bySubject(folderName, subject) {
      return (await this.folder(folderName)).find((m) => m.subject === subject);
    },
  };
}

/** Whether IMAP takes this password. */
export async function imapLogin(env, user, password) {
  return (await py('login', { port: Number(env.IMAP), user, password })).ok;
}

// --- Pages -----------------------------------------------------------------------------

/** Logs in through the login form; ends on the inbox. */
export async function login(page, env, user = env.ADMIN, password = env.ADMIN_PASSWORD, base = env.BASE) {
  await page.goto(base + '/login');
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/mail', { timeout: 30000 }),
    page.click('button[type=submit]'),
  ]);
}

/** The list row whose subject is exactly `subject`. */
export function row(page, subject) {
  return page.locator('#message-list tr.msg').filter({
    has: page.locator('.subj', { hasText: new RegExp(`^${escapeRegExp(subject)}$`) }),
  });
}

export function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The subjects of the list, top to bottom. */
export async function subjects(page) {
  return page.locator('#message-list tr.msg .subj').allTextContents();
}

/** Opens the folder view of `folder`. */
export async function openFolder(page, env, folder) {
  await page.goto(`${env.BASE}/mail?folder=${encodeURIComponent(folder)}`);
}

/** Ticks the rows of these subjects. */
export async function select(page, ...list) {
  for (const s of list) await row(page, s).locator('input[name=uid]').check();
}

/** A 1x1 PNG. */
export const PNG_1X1 = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);

/** Clicks and waits for the navigation the click starts (a form post and its redirect). */
export async function clickAndWait(page, target) {
  const locator = typeof target === 'string' ? page.locator(target) : target;
  await Promise.all([page.waitForNavigation(), locator.click()]);
}

/**
 * Scrolls `locator` into view, lets two frames pass, then clicks it. On the reading page
 * the body is an out-of-process frame, and Chromium routes a click that follows a scroll
 * at once by where the frame was before the scroll: into the frame, not onto the link.
 */
export async function scrollThenClick(page, locator) {
  await locator.scrollIntoViewIfNeeded();
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  await locator.click();
}

/** Changes flags over IMAP on the messages of `folder` with `subject` (op: "+FLAGS" or "-FLAGS"). */
export async function imapStore(env, user, password, folder, subject, op, flags) {
  return (await py('store', { port: Number(env.IMAP), user, password, folder, subject, op, flags })).uids;
}

/** Makes the pages of `page` note their EventSources, for `eventStreamOpen`. */
export async function watchEventStreams(page) {
  await page.addInitScript(() => {
    const Original = window.EventSource;
    if (!Original) return;
    window.__eventSources = [];
    window.EventSource = function (...args) {
      const source = new Original(...args);
      window.__eventSources.push(source);
      return source;
    };
    window.EventSource.prototype = Original.prototype;
  });
}

/** Waits until the page's event stream is open: the server is subscribed from then on. */
export async function eventStreamOpen(page) {
  await page.waitForFunction(() => (window.__eventSources || []).some((s) => s.readyState === 1), null, {
    timeout: 30000,
  });
}
