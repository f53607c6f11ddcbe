// Keyboard shortcuts (j/k move, o opens, u goes back, r/a/f reply, reply all and
// forward, e archives, # deletes in the list and while reading, / focuses the search
// box, c composes, ? shows the help), the rich-text editor, and the phone layout
// (390x844: the folder column is hidden until the menu button opens it, nothing is
// wider than the screen).

import * as t from './lib.mjs';

export default async function ({ browser, page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const admin = t.imap(env, env.ADMIN, env.ADMIN_PASSWORD);
  for (const subject of ['First', 'Second', 'Third', 'Fourth']) {
    const from = 'Nia Okafor <nia@partner.example>';
    await t.deliver(env, [{ from, to: env.ADMIN, raw: t.message({ from, to: env.ADMIN, subject, text: `The ${subject.toLowerCase()} one.` }).raw }]);
  }
  await t.login(page, env);
  assert.deepEqual(await t.subjects(page), ['Fourth', 'Third', 'Second', 'First']);
  const cursor = () => page.locator('#message-list tr.msg.cursor .subj').allTextContents();

  step('j and k move the cursor');
  await page.keyboard.press('j');
  assert.deepEqual(await cursor(), ['Fourth']);
  await page.keyboard.press('j');
  await page.keyboard.press('j');
  assert.deepEqual(await cursor(), ['Second']);
  await page.keyboard.press('k');
  assert.deepEqual(await cursor(), ['Third']);

  step('o opens the message under the cursor, u goes back');
  await Promise.all([page.waitForURL(/\/mail\/read\?/), page.keyboard.press('o')]);
  assert.equal(await page.locator('#subject').innerText(), 'Third');
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.keyboard.press('u')]);

  step('# deletes the message under the cursor');
  await page.keyboard.press('j');
  await page.keyboard.press('j');
  assert.deepEqual(await cursor(), ['Third']);
  await page.keyboard.press('#');
  await t.row(page, 'Third').waitFor({ state: 'detached' });
  assert.deepEqual(await t.subjects(page), ['Fourth', 'Second', 'First']);
  assert.deepEqual((await admin.folder('Trash')).map((m) => m.subject), ['Third']);

  step('# while reading deletes that message and goes back to the list');
  await t.row(page, 'Second').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.keyboard.press('#')]);
  assert.deepEqual(await t.subjects(page), ['Fourth', 'First']);
  assert.deepEqual((await admin.folder('Trash')).map((m) => m.subject).sort(), ['Second', 'Third']);

  step('/ focuses the search box; Escape leaves it; ? shows the help');
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'search-box');
  await page.keyboard.type('j');
  assert.equal(await page.inputValue('#search-box'), 'j', 'keys typed in the box are text, not shortcuts');
  assert.deepEqual(await cursor(), []);
  await page.keyboard.press('Escape');
  assert.notEqual(await page.evaluate(() => document.activeElement.id), 'search-box');
  await page.keyboard.press('?');
  await page.locator('#shortcuts[open]').waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#shortcuts:not([open])').waitFor({ state: 'attached' });

  step('r, a and f while reading open a reply, a reply to all and a forward of that message');
  await t.row(page, 'Fourth').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  const reading = page.url();
  for (const [key, mode] of [['r', 'reply'], ['a', 'all'], ['f', 'forward']]) {
    await Promise.all([page.waitForURL((u) => u.pathname === '/compose'), page.keyboard.press(key)]);
    assert.equal(new URL(page.url()).searchParams.get('mode'), mode, key);
    await page.goto(reading);
  }
  assert.equal(await page.locator('h1#subject').innerText(), 'Fourth', 'back on the message');

  step('e archives the message under the cursor');
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.keyboard.press('u')]);
  await page.keyboard.press('j');
  assert.deepEqual(await cursor(), ['Fourth']);
  await page.keyboard.press('e');
  await t.row(page, 'Fourth').waitFor({ state: 'detached' });
  assert.deepEqual((await admin.folder('Archive')).map((m) => m.subject), ['Fourth']);

  step('c opens compose; the rich-text editor sends HTML with a plain-text part');
  await Promise.all([page.waitForURL((u) => u.pathname === '/compose'), page.keyboard.press('c')]);
  assert.equal(await page.locator('.compose-view h1').innerText(), 'New message');
  await page.fill('#to', env.BOB);
  await page.fill('#subject', 'Rich text');
  await page.selectOption('#editor-mode', 'rich');
  await page.locator('#rich').click();
  await page.keyboard.type('Plain words, then ');
  await page.click('[data-format="bold"]');
  await page.keyboard.type('bold words');
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.click('#send')]);
  const bob = t.imap(env, env.BOB, env.BOB_PASSWORD);
  const rich = await t.until('the rich message at bob', async () => {
    const all = await bob.folder('INBOX', true);
    return all.find((m) => m.subject === 'Rich text');
  });
  const raw = rich.raw.toString('latin1');
  assert.match(raw, /Content-Type: multipart\/alternative/i);
  assert.match(raw, /Content-Type: text\/plain/i);
  assert.match(raw, /<b>bold words<\/b>/);
  await page.goto(env.BASE + '/mail');

  step('the phone layout: folders behind the menu button');
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  await t.login(phone, env);
  const folders = phone.locator('#folders');
  const onScreen = async () => {
    const box = await folders.boundingBox();
    return box !== null && box.x >= 0 && box.x + box.width <= 390;
  };
  const offScreen = async () => {
    const box = await folders.boundingBox();
    return box === null || box.x + box.width <= 0;
  };
  await t.until('the folder column to be hidden', offScreen);
  assert.ok(await phone.locator('.menu-toggle').isVisible());
  const noWiderThanScreen = () => phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(await noWiderThanScreen(), 'the inbox fits the screen');
  await phone.click('.menu-toggle');
  await t.until('the folder column to slide in', onScreen);
  assert.ok(await phone.evaluate(() => document.body.classList.contains('folders-open')));
  await phone.click('main', { position: { x: 380, y: 400 }, force: true });
  await t.until('the folder column to slide out', offScreen);
  await phone.click('.menu-toggle');
  await t.until('the folder column to slide in again', onScreen);
  await Promise.all([phone.waitForURL(/folder=Trash/), phone.click('#folder-tree li.trash a')]);
  assert.deepEqual((await t.subjects(phone)).sort(), ['Second', 'Third']);
  await t.until('the folder column to be hidden on the new page', offScreen);

  step('the phone layout: reading a message');
  await Promise.all([phone.waitForURL(/\/mail\/read\?/), t.row(phone, 'Second').locator('.subj').click()]);
  await phone.frameLocator('#message-body').locator('.plain', { hasText: 'The second one.' }).waitFor();
  const frame = await phone.locator('#message-body').boundingBox();
  assert.ok(frame.width <= 390 && frame.height >= 200, JSON.stringify(frame));
  assert.ok(await noWiderThanScreen(), 'the reading view fits the screen');
}
