// Live updates: with the inbox open, mail arriving over SMTP appears in the list and
// the folder's unread count changes without a reload; a message read by another client
// (IMAP) loses its unread mark; looking at another folder, only the count changes.

import * as t from './lib.mjs';

export default async function ({ page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const arrive = (from, subject, text) =>
    t.deliver(env, [{ from, to: env.ADMIN, raw: t.message({ from, to: env.ADMIN, subject, text }).raw }]);
  const inboxCount = () => page.locator('#folder-tree li.inbox .count').innerText().then((s) => s.trim(), () => '');

  await t.watchEventStreams(page);
  await arrive('Ivy Chen <ivy@partner.example>', 'Agenda for Monday', 'Three items.');
  await arrive('Jon Moss <jon@partner.example>', 'Minutes', 'Attached soon.');
  await t.login(page, env);
  assert.deepEqual(await t.subjects(page), ['Minutes', 'Agenda for Monday']);
  assert.equal(await inboxCount(), '2');

  // The page keeps a mark (a reload would lose it) and notes every toast it shows.
  await page.evaluate(() => {
    window.__sameDocument = true;
    window.__toasts = [];
    const toast = document.getElementById('toast');
    new MutationObserver(() => {
      if (!toast.hidden) window.__toasts.push(toast.textContent);
    }).observe(toast, { attributes: true, childList: true, characterData: true, subtree: true });
  });
  await t.eventStreamOpen(page);

  step('a message delivered over SMTP appears without a reload');
  await arrive('Kim Lee <kim@partner.example>', 'Fresh news', 'Just arrived.');
  await t.row(page, 'Fresh news').waitFor({ timeout: 30000 });
  assert.deepEqual(await t.subjects(page), ['Fresh news', 'Minutes', 'Agenda for Monday']);
  assert.ok((await t.row(page, 'Fresh news').getAttribute('class')).includes('unread'));
  await t.until('the inbox count to say 3', async () => (await inboxCount()) === '3');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
  assert.ok((await page.evaluate(() => window.__toasts)).includes('New message'));

  step('read over IMAP: the row loses its unread mark, the count goes down');
  await t.imapStore(env, env.ADMIN, env.ADMIN_PASSWORD, 'INBOX', 'Minutes', '+FLAGS', ['\\Seen']);
  await t.row(page, 'Minutes').and(page.locator(':not(.unread)')).waitFor({ timeout: 30000 });
  await t.until('the inbox count to say 2', async () => (await inboxCount()) === '2');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');

  step('looking at another folder: only the inbox count changes');
  await t.openFolder(page, env, 'Archive');
  assert.equal(await page.locator('p.empty').innerText(), 'No messages here.');
  await page.evaluate(() => (window.__sameDocument = true));
  await t.eventStreamOpen(page);
  await arrive('Lou Grant <lou@partner.example>', 'Later news', 'Arrived while you looked elsewhere.');
  await t.until('the inbox count to say 3', async () => (await inboxCount()) === '3');
  assert.equal(await page.locator('p.empty').innerText(), 'No messages here.');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
}
