// Finding and sorting mail: the search box and the search options (From, Subject), moving
// with the Move menu and by dragging a row onto a folder, deleting to Trash, emptying
// Trash, junk and not junk, flagging and marking unread; each result checked over IMAP.

import * as t from './lib.mjs';

export default async function ({ page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const admin = t.imap(env, env.ADMIN, env.ADMIN_PASSWORD);
  const confirms = [];
  page.on('dialog', (d) => {
    confirms.push(d.message());
    d.accept();
  });
  const action = (value) => page.locator(`#list-form button[name=action][value=${value}]`);
  const inFolder = async (folder) => (await admin.folder(folder)).map((m) => m.subject).sort();

  step('deliver six messages');
  const mail = [
    ['Erin Walsh <erin@school.example>', 'School trip permission', 'The trip to the science museum is on the 12th.'],
    ['First Bank <statements@bank.example>', 'Your statement is ready', 'Your November statement can be downloaded.'],
    ['Erin Walsh <erin@school.example>', 'Parent evening', 'Parent evening is on Thursday at six.'],
    ['Prize Office <winner@lottery.example>', 'You have won!', 'Claim your prize today.'],
    ['Gina Park <gina@club.example>', 'Tennis on Sunday', 'Court 3 is booked for ten.'],
    ['Hal\'s Outdoor <orders@shop.example>', 'Order shipped', 'Your walking boots are on their way.'],
  ];
  for (const [from, subject, text] of mail) {
    await t.deliver(env, [{ from, to: env.ADMIN, raw: t.message({ from, to: env.ADMIN, subject, text }).raw }]);
  }
  await t.login(page, env);
  assert.equal(await page.locator('#message-list tr.msg').count(), 6);

  step('the search box finds a word of a body');
  await page.fill('#search-box', 'museum');
  await Promise.all([page.waitForURL(/[?&]q=museum/), page.press('#search-box', 'Enter')]);
  assert.equal(await page.locator('.list-view h1').innerText(), 'Search in Inbox');
  assert.deepEqual(await t.subjects(page), ['School trip permission']);

  step('search options: From, Subject, and both');
  const search = async (fields) => {
    await t.openFolder(page, env, 'INBOX');
    await page.click('.filters summary');
    for (const [name, value] of Object.entries(fields)) await page.fill(`.filter-form input[name=${name}]`, value);
    await t.clickAndWait(page, '.filter-form button[type=submit]');
    await page.locator('.list-view h1', { hasText: 'Search in Inbox' }).waitFor();
    return t.subjects(page);
  };
  assert.deepEqual(await search({ from: 'erin' }), ['Parent evening', 'School trip permission']);
  assert.deepEqual(await search({ subject: 'statement' }), ['Your statement is ready']);
  assert.deepEqual(await search({ from: 'school.example', subject: 'evening' }), ['Parent evening']);
  assert.deepEqual(await search({ from: 'nobody-at-all' }), []);
  assert.equal(await page.locator('p.empty').innerText(), 'No message matches.');

  step('move with the Move menu');
  await t.openFolder(page, env, 'INBOX');
  await t.select(page, 'Order shipped');
  await page.selectOption('#list-form select[name=target]', 'Archive');
  await t.clickAndWait(page, action('move'));
  await t.row(page, 'Order shipped').waitFor({ state: 'detached' });
  assert.deepEqual(await inFolder('Archive'), ['Order shipped']);

  step('drag a row onto a folder of the tree');
  await t.row(page, 'Tennis on Sunday').dragTo(page.locator('#folder-tree li[data-folder="Archive"]'));
  await t.row(page, 'Tennis on Sunday').waitFor({ state: 'detached' });
  await page.locator('#toast', { hasText: 'moved to Archive' }).waitFor();
  assert.deepEqual(await inFolder('Archive'), ['Order shipped', 'Tennis on Sunday']);
  assert.ok(!(await inFolder('INBOX')).includes('Tennis on Sunday'));

  step('delete moves to Trash');
  await t.select(page, 'Your statement is ready');
  await t.clickAndWait(page, action('delete'));
  await t.row(page, 'Your statement is ready').waitFor({ state: 'detached' });
  assert.deepEqual(await inFolder('Trash'), ['Your statement is ready']);

  step('empty Trash');
  await page.click('#folder-tree li.trash a');
  await page.waitForURL(/folder=Trash/);
  assert.deepEqual(await t.subjects(page), ['Your statement is ready']);
  await t.clickAndWait(page, action('empty'));
  await page.locator('p.empty', { hasText: 'No messages here.' }).waitFor();
  assert.deepEqual(confirms, ['Delete every message in Trash for good?']);
  assert.deepEqual(await inFolder('Trash'), []);

  step('junk, then not junk');
  await t.openFolder(page, env, 'INBOX');
  await t.select(page, 'You have won!');
  await t.clickAndWait(page, action('junk'));
  await t.row(page, 'You have won!').waitFor({ state: 'detached' });
  const junk = await admin.bySubject('Junk', 'You have won!');
  assert.ok(junk, 'in Junk');
  assert.ok(junk.flags.includes('$Junk'), JSON.stringify(junk.flags));
  await t.openFolder(page, env, 'Junk');
  await t.select(page, 'You have won!');
  await t.clickAndWait(page, action('notjunk'));
  await t.row(page, 'You have won!').waitFor({ state: 'detached' });
  assert.deepEqual(await inFolder('Junk'), []);
  const back = await admin.bySubject('INBOX', 'You have won!');
  assert.ok(back, 'back in INBOX');
  assert.ok(back.flags.includes('$NotJunk') && !back.flags.includes('$Junk'), JSON.stringify(back.flags));

  step('flag');
  await t.openFolder(page, env, 'INBOX');
  await t.select(page, 'Parent evening');
  await t.clickAndWait(page, action('flag'));
  await t.row(page, 'Parent evening').and(page.locator('.flagged')).waitFor();
  assert.equal(await t.row(page, 'Parent evening').locator('.flag.on').count(), 1);
  assert.ok((await admin.bySubject('INBOX', 'Parent evening')).flags.includes('\\Flagged'));

  step('mark unread after reading');
  await t.row(page, 'School trip permission').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  await page.click('[data-key="u"]');
  await page.waitForURL(/\/mail\?/);
  assert.ok(!(await t.row(page, 'School trip permission').getAttribute('class')).includes('unread'));
  assert.ok((await admin.bySubject('INBOX', 'School trip permission')).flags.includes('\\Seen'));
  await t.select(page, 'School trip permission');
  await t.clickAndWait(page, action('unread'));
  await t.row(page, 'School trip permission').and(page.locator('.unread')).waitFor();
  assert.ok(!(await admin.bySubject('INBOX', 'School trip permission')).flags.includes('\\Seen'));
}
