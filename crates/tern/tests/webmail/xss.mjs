// The hostile HTML corpus (crates/tern-web/tests/xss_corpus, see its README) read in
// webmail: every file is delivered as the HTML part of a message (with inline images
// for the cid: references it expects to resolve), and each message is opened, first as
// it arrives (remote content off), then with "Show images". For every message:
//
// - no dialog opens (a payload that works calls alert(1));
// - with remote content off, nothing is requested from any host but Tern (the corpus
//   fetches from tracker.example and phish.example);
// - no page error, no console message from the message (a blocked script or a CSP
//   violation means something dangerous got through the sanitiser);
// - the top page is untouched: same title, same URL, only the page's own ids, one
//   frame, no open dialog or popover;
// - the body as Chromium parsed it (after any mutation) holds no script, no frame,
//   object, form, base or meta element, no event handler, no javascript:/vbscript:/
//   data:text/html URL, and nothing positioned over the page.
//
// Every file is checked; the failures of all files are reported together.

import fs from 'node:fs';
import path from 'node:path';
import * as t from './lib.mjs';

/** The ids of the reading page itself. */
const PAGE_IDS = new Set([
  'folders', 'folder-tree', 'main', 'search-box', 'toast', 'shortcuts', 'read-view', 'read-form', 'subject',
  'message-body', 'remote-images', 'show-images', 'reply', 'reply-all', 'forward',
]);

export default async function ({ context, page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const files = fs.readdirSync(env.XSS_CORPUS).filter((f) => f.endsWith('.html')).sort();
  assert.ok(files.length >= 50, `the corpus has ${files.length} files`);

  step(`deliver ${files.length} corpus files as the HTML of a message each`);
  const messages = files.map((file) => {
    const html = fs.readFileSync(path.join(env.XSS_CORPUS, file));
    const cids = new Set();
    for (const m of html.toString('latin1').matchAll(/cid:([^"'\s)>]+)/gi)) {
      if (m[1] !== 'not-in-this-message@example.com') cids.add(m[1]);
    }
    const from = 'Corpus <corpus@sender.example>';
    const built = t.message({
      from,
      to: env.ADMIN,
      subject: `XSS corpus: ${file}`,
      html,
      // The UTF-7 file is about the charset its sender declares.
      charset: file === 'charset-utf7.html' ? 'utf-7' : 'utf-8',
      related: [...cids].map((cid) => ({ cid, type: 'image/png', data: t.PNG_1X1 })),
    });
    return { from, to: env.ADMIN, raw: built.raw };
  });
  await t.deliver(env, messages);
  const uids = new Map((await t.imap(env, env.ADMIN, env.ADMIN_PASSWORD).folder('INBOX')).map((m) => [m.subject, m.uid]));
  assert.equal(uids.size, files.length);

  // What happens while one message is open is put down to it.
  let current = null;
  let remoteAllowed = false;
  const failures = new Map();
  const fail = (why) => {
    const key = `${current}${remoteAllowed ? ' (images shown)' : ''}`;
    if (!failures.has(key)) failures.set(key, []);
    failures.get(key).push(why);
  };
  context.on('request', (r) => {
    const url = new URL(r.url());
    if (url.hostname !== '127.0.0.1' && !remoteAllowed) fail(`requested ${r.url()}`);
  });
  // Nothing leaves the machine; with images shown, every image is a 1x1 PNG.
  await context.route(
    (url) => url.hostname !== '127.0.0.1',
    (route) => (remoteAllowed ? route.fulfill({ status: 200, contentType: 'image/png', body: t.PNG_1X1 }) : route.abort()),
  );
  page.on('dialog', (d) => {
    fail(`a dialog opened: ${d.type()} ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  context.on('page', (p) => {
    if (p !== page) fail(`a window opened: ${p.url()}`);
  });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  page.on('console', (m) => {
    const url = m.location()?.url || '';
    // Chromium's note that it fetched a shown http: image over https is no threat.
    if (remoteAllowed && m.type() === 'warning' && m.text().startsWith('Mixed Content:')) return;
    if (m.type() === 'error' || m.type() === 'warning' || /Content Security Policy/.test(m.text())) {
      if (url.includes('/mail/body') || !url.startsWith(env.BASE)) fail(`console ${m.type()}: ${m.text()} (${url})`);
    }
  });

  await t.login(page, env);

  for (const pass of [false, true]) {
    remoteAllowed = pass;
    step(pass ? 'every message with remote images shown' : 'every message as it arrives');
    for (const file of files) {
      current = file;
      const subject = `XSS corpus: ${file}`;
      const url = `${env.BASE}/mail/read?folder=INBOX&uid=${uids.get(subject)}${pass ? '&remote=1' : ''}`;
      await page.goto(url, { waitUntil: 'load' });
      const body = page.frame({ url: /\/mail\/body\?/ });
      if (!body) {
        fail('the body frame is missing');
        continue;
      }
      await body.waitForLoadState('load');
      // Give timers, refreshes, autofocus and animations their chance.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      await t.sleep(250);

      const top = await page.evaluate(() => ({
        title: document.title,
        href: location.href,
        ids: [...document.querySelectorAll('[id]')].map((e) => e.id),
        frames: document.querySelectorAll('iframe, frame, object, embed').length,
        dialogs: document.querySelectorAll('dialog[open]').length,
        popovers: document.querySelectorAll(':popover-open').length,
        focusInPage: document.activeElement === document.body || document.activeElement === null,
      }));
      if (top.title !== `${subject} · ${env.ADMIN}`) fail(`the page title became ${JSON.stringify(top.title)}`);
      if (top.href !== url) fail(`the page went to ${top.href}`);
      const strange = top.ids.filter((id) => !PAGE_IDS.has(id));
      if (strange.length) fail(`ids in the page: ${strange.join(', ')}`);
      if (top.frames !== 1) fail(`${top.frames} frames in the page`);
      if (top.dialogs || top.popovers) fail('a dialog or popover is open in the page');
      if (!top.focusInPage) fail('the message took the focus');
      if (!body.url().startsWith(`${env.BASE}/mail/body?`)) fail(`the body frame went to ${body.url()}`);
      if (page.url() !== url) fail(`the page is at ${page.url()}`);

      let inside;
      try {
        inside = await body.evaluate(() => {
          const bad = [];
          const root = document.body;
          if (!root) return ['no body'];
          const forbidden = 'script, iframe, frame, frameset, object, embed, applet, form, input, button, textarea, select, ' +
            'base, meta, link, style, svg, math, template, dialog, noscript, portal, [popover], [contenteditable]';
          for (const e of root.querySelectorAll(forbidden)) bad.push(`element <${e.localName}>`);
          if (document.querySelectorAll('script').length) bad.push('a script in the document');
          if (document.querySelectorAll('head meta[http-equiv], head base, head link').length) bad.push('head elements from the mail');
          for (const e of root.querySelectorAll('*')) {
            for (const a of e.attributes) {
              const v = a.value.replace(/[\u0000-\u0020]/g, '').toLowerCase();
              if (a.name.startsWith('on')) bad.push(`handler ${a.name} on <${e.localName}>`);
              if (/^(javascript|vbscript|livescript):/.test(v) || v.startsWith('data:text/html') || v.includes('javascript:'))
                bad.push(`script URL in ${a.name} of <${e.localName}>`);
              if (['formaction', 'action', 'srcdoc', 'xlink:href', 'autofocus', 'accesskey', 'ping'].includes(a.name))
                bad.push(`attribute ${a.name} on <${e.localName}>`);
            }
            const position = getComputedStyle(e).position;
            if (position === 'fixed' || position === 'sticky' || position === 'absolute')
              bad.push(`position:${position} on <${e.localName}>`);
          }
          return bad;
        });
      } catch (e) {
        inside = [`the body could not be inspected: ${e.message}`];
      }
      for (const why of inside) fail(why);
    }
  }
  current = null;

  const report = [...failures].map(([file, why]) => `${file}:\n    ${[...new Set(why)].join('\n    ')}`);
  for (const line of report) console.log(line);
  assert.equal(report.length, 0, `corpus files that got through:\n  ${report.join('\n  ')}`);
}
