// Managing folders: create (at the top and inside another), rename (the mail goes with
// it), delete (refused while a folder has children, asked to confirm), names that
// cannot be; each checked in the folder tree and over IMAP LIST.

import * as t from './lib.mjs';

export default async function ({ page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const admin = t.imap(env, env.ADMIN, env.ADMIN_PASSWORD);
  const confirms = [];
  page.on('dialog', (d) => {
    confirms.push(d.message());
    d.accept();
  });
  const from = 'Max Field <max@partner.example>';
  await t.deliver(env, [
    { from, to: env.ADMIN, raw: t.message({ from, to: env.ADMIN, subject: 'Project kickoff', text: 'Monday 9:00.' }).raw },
  ]);
  await t.login(page, env);
  const standard = ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash'];
  assert.deepEqual(await admin.folders(), standard);

  step('the folders page lists the standard folders, which cannot be renamed or deleted');
  await t.clickAndWait(page, '.folders a.manage');
  assert.equal(new URL(page.url()).pathname, '/folders');
  for (const name of standard) {
    const row = page.locator(`.folder-table tr[data-folder="${name}"]`);
    assert.match(await row.locator('.folder-actions').innerText(), /standard folder/);
    assert.equal(await row.locator('button', { hasText: 'Delete' }).count(), 0);
  }

  const create = async (name, parent = '') => {
    await page.fill('#create-folder input[name=name]', name);
    await page.selectOption('#create-folder select[name=parent]', parent);
    await t.clickAndWait(page, '#create-folder button[type=submit]');
  };
  const said = async () => page.locator('.folders-view .ok, .folders-view .error').innerText();

  step('create a top-level folder and one inside it');
  await create('Projects');
  assert.equal(await said(), 'Created Projects.');
  await create('Alpha', 'Projects');
  assert.equal(await said(), 'Created Projects/Alpha.');
  assert.deepEqual(await admin.folders(), [...standard, 'Projects', 'Projects/Alpha'].sort());
  const alpha = page.locator('#folder-tree li[data-folder="Projects/Alpha"]');
  assert.equal(await alpha.locator('.label').innerText(), 'Alpha');
  assert.match(await alpha.getAttribute('class'), /depth-1/);

  step('a name with the separator is refused');
  await create('a/b');
  assert.match(await said(), /cannot contain "\/"/);
  assert.deepEqual(await admin.folders(), [...standard, 'Projects', 'Projects/Alpha'].sort());

  step('move a message into the new folder');
  await t.openFolder(page, env, 'INBOX');
  await t.select(page, 'Project kickoff');
  await page.selectOption('#list-form select[name=target]', 'Projects/Alpha');
  await t.clickAndWait(page, page.locator('#list-form button[name=action][value=move]'));
  assert.deepEqual((await admin.folder('Projects/Alpha')).map((m) => m.subject), ['Project kickoff']);

  step('rename: the message goes with the folder');
  await t.clickAndWait(page, '.folders a.manage');
  const alphaRow = page.locator('.folder-table tr[data-folder="Projects/Alpha"]');
  await alphaRow.locator('input[name=name]').fill('Beta');
  await t.clickAndWait(page, alphaRow.locator('button', { hasText: 'Rename' }));
  assert.equal(await said(), 'Renamed Projects/Alpha to Projects/Beta.');
  assert.deepEqual(await admin.folders(), [...standard, 'Projects', 'Projects/Beta'].sort());
  assert.deepEqual((await admin.folder('Projects/Beta')).map((m) => m.subject), ['Project kickoff']);
  assert.equal(await page.locator('#folder-tree li[data-folder="Projects/Beta"]').count(), 1);
  assert.equal(await page.locator('#folder-tree li[data-folder="Projects/Alpha"]').count(), 0);

  step('a folder with a folder inside is not deleted');
  await t.clickAndWait(page, page.locator('.folder-table tr[data-folder="Projects"] button', { hasText: 'Delete' }));
  assert.equal(confirms.pop(), 'Delete Projects and the 0 messages in it?');
  assert.equal(await page.locator('.folders-view .error').count(), 1, await said());
  assert.deepEqual(await admin.folders(), [...standard, 'Projects', 'Projects/Beta'].sort());

  step('delete the inner folder, then the outer one');
  await t.clickAndWait(page, page.locator('.folder-table tr[data-folder="Projects/Beta"] button', { hasText: 'Delete' }));
  assert.equal(confirms.pop(), 'Delete Projects/Beta and the 1 messages in it?');
  assert.equal(await said(), 'Deleted Projects/Beta and the messages in it.');
  await t.clickAndWait(page, page.locator('.folder-table tr[data-folder="Projects"] button', { hasText: 'Delete' }));
  assert.equal(await said(), 'Deleted Projects and the messages in it.');
  assert.deepEqual(await admin.folders(), standard);
  assert.equal(await page.locator('#folder-tree li[data-folder^="Projects"]').count(), 0);
}
