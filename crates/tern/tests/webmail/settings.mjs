// Settings: display name and signature (used by compose and in what is sent), the
// vacation reply and forwarding forms (saved and shown again, bad input refused), and
// the password (the old one stops working over IMAP and webmail, the new one works).

import * as t from './lib.mjs';

export default async function ({ browser, page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const bob = t.imap(env, env.BOB, env.BOB_PASSWORD);
  await t.login(page, env);
  const said = () => page.locator('.settings-view .ok, .settings-view .error').innerText();
  const value = (form, name) => page.locator(`#${form} [name=${name}]`).inputValue();

  step('the account menu leads to the settings');
  await page.click('.account-menu summary');
  await t.clickAndWait(page, '.account-menu a[href="/settings"]');
  assert.equal(await page.locator('.settings-view h1').innerText(), 'Settings');

  step('display name and signature');
  await page.fill('#profile [name=display_name]', 'Ada Admin');
  await page.fill('#profile [name=signature]', 'Ada Admin\nExample Test Ltd');
  await t.clickAndWait(page, '#profile button[type=submit]');
  assert.equal(await said(), 'Your name and signature are saved.');
  assert.equal(await value('profile', 'display_name'), 'Ada Admin');
  assert.equal(await value('profile', 'signature'), 'Ada Admin\nExample Test Ltd');
  assert.equal(await page.locator('.account-menu summary').innerText(), 'Ada Admin');

  step('a new message starts with the signature and is sent with the name');
  await t.clickAndWait(page, 'a.compose-button');
  assert.equal(await page.inputValue('#text'), '\n\n-- \nAda Admin\nExample Test Ltd');
  assert.equal(await page.locator('#from option:checked').innerText(), 'Ada Admin <admin@example.test>');
  await page.fill('#to', env.BOB);
  await page.fill('#subject', 'Signed');
  await page.fill('#text', 'Hello Bob.' + (await page.inputValue('#text')));
  await t.clickAndWait(page, '#send');
  const signed = await t.until('the message at bob', () => bob.bySubject('INBOX', 'Signed'));
  assert.equal(signed.from, 'Ada Admin <admin@example.test>');
  assert.match(signed.text, /Hello Bob\.\r?\n\r?\n-- \r?\nAda Admin\r?\nExample Test Ltd/);

  step('vacation reply: saved and shown again; an end before the start is refused');
  await page.goto(env.BASE + '/settings');
  await page.check('#vacation [name=enabled]');
  await page.fill('#vacation [name=start]', '2026-12-20');
  await page.fill('#vacation [name=end]', '2027-01-05');
  await page.fill('#vacation [name=days]', '7');
  await page.fill('#vacation [name=subject]', 'Away until January');
  await page.fill('#vacation [name=body]', 'I am away until 5 January.\nFor urgent matters write to bob@example.test.');
  await t.clickAndWait(page, '#vacation button[type=submit]');
  assert.equal(await said(), 'Your vacation reply is saved.');
  assert.ok(await page.isChecked('#vacation [name=enabled]'));
  assert.equal(await value('vacation', 'start'), '2026-12-20');
  assert.equal(await value('vacation', 'end'), '2027-01-05');
  assert.equal(await value('vacation', 'days'), '7');
  assert.equal(await value('vacation', 'subject'), 'Away until January');
  assert.equal(await value('vacation', 'body'), 'I am away until 5 January.\nFor urgent matters write to bob@example.test.');
  await page.fill('#vacation [name=end]', '2026-12-01');
  await t.clickAndWait(page, '#vacation button[type=submit]');
  assert.equal(await said(), 'The vacation ends before it starts.');
  await page.reload();
  assert.equal(await value('vacation', 'end'), '2027-01-05', 'the refused change was not saved');

  step('forwarding: saved and shown again; this very mailbox is refused; emptied stops it');
  await page.fill('#forwarding [name=to]', 'ada@elsewhere.example');
  await page.check('#forwarding [name=keep_copy]');
  await t.clickAndWait(page, '#forwarding button[type=submit]');
  assert.equal(await said(), 'Forwarding is saved.');
  assert.equal(await value('forwarding', 'to'), 'ada@elsewhere.example');
  assert.ok(await page.isChecked('#forwarding [name=keep_copy]'));
  await page.fill('#forwarding [name=to]', env.ADMIN);
  await t.clickAndWait(page, '#forwarding button[type=submit]');
  assert.equal(await said(), 'Forwarding to this very mailbox would loop.');
  await page.fill('#forwarding [name=to]', '');
  await page.uncheck('#forwarding [name=keep_copy]');
  await t.clickAndWait(page, '#forwarding button[type=submit]');
  assert.equal(await said(), 'Forwarding is saved.');
  assert.equal(await value('forwarding', 'to'), '');

  step('password: a wrong current password and a mistyped repeat are refused');
  const fresh = 'a-new-password-4567';
  const change = async (current, next, confirm) => {
    await page.fill('#password [name=current]', current);
    await page.fill('#password [name=new]', next);
    await page.fill('#password [name=confirm]', confirm);
    await t.clickAndWait(page, '#password button[type=submit]');
    return said();
  };
  assert.equal(await change('not-the-password', fresh, fresh), 'The current password is wrong.');
  assert.equal(await change(env.ADMIN_PASSWORD, fresh, fresh + 'x'), 'The two new passwords differ.');
  assert.ok(await t.imapLogin(env, env.ADMIN, env.ADMIN_PASSWORD), 'nothing changed yet');

  step('password changed: IMAP and webmail take the new one only; this session goes on');
  assert.equal(
    await change(env.ADMIN_PASSWORD, fresh, fresh),
    'Your password is changed. Other webmail sessions were logged out.',
  );
  assert.equal(await t.imapLogin(env, env.ADMIN, env.ADMIN_PASSWORD), false, 'the old password over IMAP');
  assert.equal(await t.imapLogin(env, env.ADMIN, fresh), true, 'the new password over IMAP');
  const other = await (await browser.newContext()).newPage();
  await other.goto(env.BASE + '/login');
  await other.fill('input[name=user]', env.ADMIN);
  await other.fill('input[name=password]', env.ADMIN_PASSWORD);
  await other.click('button[type=submit]');
  await other.locator('#login-error').waitFor();
  assert.match(await other.locator('#login-error').innerText(), /Wrong email address or password/);
  await t.login(other, env, env.ADMIN, fresh);
  await page.goto(env.BASE + '/mail');
  assert.equal(new URL(page.url()).pathname, '/mail', 'the session that changed it goes on');
}
