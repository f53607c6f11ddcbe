// The web defences as a browser meets them: the session cookie's attributes; requests
// without the right CSRF token refused (forms, the page script's header, the multipart
// compose form); requests from another origin refused, a hostile page's auto-submitting
// form among them; webmail not framed by another site; logging out; plain http from
// loopback; and login throttling telling the user to wait.

import * as t from './lib.mjs';

export default async function ({ browser, context, page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const admin = t.imap(env, env.ADMIN, env.ADMIN_PASSWORD);
  const bob = t.imap(env, env.BOB, env.BOB_PASSWORD);
  const from = 'Olga Petrova <olga@partner.example>';
  await t.deliver(env, [
    { from, to: env.ADMIN, raw: t.message({ from, to: env.ADMIN, subject: 'Keep me as I am', text: 'Nothing to see.' }).raw },
  ]);
  await t.login(page, env);
  const csrf = await page.locator('meta[name=csrf]').getAttribute('content');
  assert.match(csrf, /^[0-9a-f]{32}$/);
  const uid = await t.row(page, 'Keep me as I am').getAttribute('data-uid');
  const untouched = async () => {
    const m = await admin.bySubject('INBOX', 'Keep me as I am');
    assert.deepEqual(m.flags, [], 'the message was not changed');
  };

  step('the session cookie is Secure, HttpOnly and SameSite=Strict');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'tern_session');
  assert.ok(session, JSON.stringify(cookies));
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the page script cannot read it');

  step('a form post without the right CSRF token is refused');
  const action = (fields, origin = env.BASE) =>
    page.request.post(env.BASE + '/mail/action', {
      form: { folder: 'INBOX', action: 'flag', uid, ...fields },
      headers: { Origin: origin },
      maxRedirects: 0,
    });
  for (const fields of [{}, { csrf: 'not-the-token' }, { csrf: '' }]) {
    const refused = await action(fields);
    assert.equal(refused.status(), 403, JSON.stringify(fields));
    assert.match(await refused.text(), /form has expired/);
  }
  await untouched();

  step('the page script\'s header with a wrong token is refused; the right one works');
  const viaScript = (token, what) =>
    page.evaluate(
      async ([token, uid, what]) => {
        const body = new URLSearchParams({ folder: 'INBOX', action: what, uid });
        const r = await fetch('/mail/action', { method: 'POST', body, headers: { 'X-CSRF-Token': token, Accept: 'application/json' } });
        return r.status;
      },
      [token, uid, what],
    );
  assert.equal(await viaScript('0'.repeat(32), 'flag'), 403);
  await untouched();
  assert.equal(await viaScript(csrf, 'read'), 200);
  assert.deepEqual((await admin.bySubject('INBOX', 'Keep me as I am')).flags, ['\\Seen']);
  await page.evaluate(async ([token, uid]) => {
    const body = new URLSearchParams({ folder: 'INBOX', action: 'unread', uid });
    await fetch('/mail/action', { method: 'POST', body, headers: { 'X-CSRF-Token': token, Accept: 'application/json' } });
  }, [csrf, uid]);
  await untouched();

  step('the multipart compose form and the password form need the token too');
  const send = await page.request.post(env.BASE + '/compose/send', {
    multipart: { csrf: 'not-the-token', to: env.BOB, subject: 'Forged', text: 'Should not go.' },
    headers: { Origin: env.BASE },
    maxRedirects: 0,
  });
  assert.equal(send.status(), 403);
  const password = await page.request.post(env.BASE + '/settings/password', {
    form: { current: env.ADMIN_PASSWORD, new: 'forged-password-1', confirm: 'forged-password-1' },
    headers: { Origin: env.BASE },
    maxRedirects: 0,
  });
  assert.equal(password.status(), 403);
  assert.ok(await t.imapLogin(env, env.ADMIN, env.ADMIN_PASSWORD), 'the password is unchanged');

  step('a request from another origin is refused, even with the token');
  for (const origin of ['https://evil.example', env.HTTP_BASE, 'null']) {
    const refused = await action({ csrf }, origin);
    assert.equal(refused.status(), 403, origin);
    assert.match(await refused.text(), /cross-site/);
  }
  await untouched();

  step('a hostile page\'s auto-submitting form is refused');
  await context.route('https://evil.example/**', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'text/html',
      body: `<!doctype html><title>Win a prize</title>
        <form id="f" method="post" action="${env.BASE}/mail/action">
          <input name="csrf" value="${csrf}"><input name="folder" value="INBOX">
          <input name="action" value="flag"><input name="uid" value="${uid}">
        </form>
        <iframe id="framed" src="${env.BASE}/mail"></iframe>
        <script>document.getElementById('f').submit()</script>`,
    }),
  );
  const evil = await context.newPage();
  const [forged] = await Promise.all([
    evil.waitForResponse((r) => r.url() === `${env.BASE}/mail/action` && r.request().method() === 'POST'),
    evil.goto('https://evil.example/'),
  ]);
  assert.equal(forged.status(), 403);
  assert.equal(forged.request().headers()['cookie'], undefined, 'SameSite=Strict kept the cookie home');
  await untouched();

  step('another site cannot frame webmail');
  const framing = await context.newPage();
  await context.route('https://framer.example/**', (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: `<!doctype html><iframe src="${env.BASE}/mail"></iframe>` }),
  );
  await framing.goto('https://framer.example/');
  await framing.waitForLoadState('load');
  assert.equal(framing.frames().length, 2);
  for (const frame of framing.frames()) {
    // Neither the mail (the cookie stays home anyway) nor the login page shows.
    const shown = await frame.locator('#folder-tree, form[action="/login"]').count().catch(() => 0);
    assert.equal(shown, 0, `framed: ${frame.url()}`);
  }
  await framing.close();
  await evil.close();

  step('logging out ends the session');
  await page.click('.account-menu summary');
  await t.clickAndWait(page, page.locator('.account-menu button', { hasText: 'Log out' }));
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal((await context.cookies()).find((c) => c.name === 'tern_session'), undefined);
  await page.goto(env.BASE + '/mail');
  assert.equal(new URL(page.url()).pathname, '/login');
  const stale = await page.request.post(env.BASE + '/mail/action', {
    form: { folder: 'INBOX', action: 'flag', uid, csrf },
    headers: { Origin: env.BASE, Cookie: `tern_session=${session.value}` },
    maxRedirects: 0,
  });
  assert.notEqual(stale.status(), 200, 'the old session cookie is dead');
  await untouched();

  step('plain http from loopback: logging in works');
  const plain = await (await browser.newContext()).newPage();
  await t.login(plain, env, env.ADMIN, env.ADMIN_PASSWORD, env.HTTP_BASE);
  assert.equal(new URL(plain.url()).origin, env.HTTP_BASE);
  assert.deepEqual(await t.subjects(plain), ['Keep me as I am']);
  await plain.close();

  step('login throttling: after many wrong passwords the page says to wait');
  const guesser = await (await browser.newContext()).newPage();
  await guesser.goto(env.BASE + '/login');
  const guesses = [];
  for (let i = 0; i < 19; i++) {
    guesses.push(
      guesser.request.post(env.BASE + '/login', {
        form: { user: env.ADMIN, password: `guess-${i}`, next: '/mail' },
        headers: { Origin: env.BASE },
        maxRedirects: 0,
      }),
    );
  }
  for (const r of await Promise.all(guesses)) assert.ok([401, 429].includes(r.status()), String(r.status()));
  let message = '';
  for (let i = 0; i < 5 && !/Too many/.test(message); i++) {
    await guesser.fill('input[name=user]', env.ADMIN);
    await guesser.fill('input[name=password]', 'still-guessing');
    await t.clickAndWait(guesser, 'button[type=submit]');
    message = await guesser.locator('#login-error').innerText();
  }
  assert.match(message, /^Too many failed logins; try again in \d+ minutes?\.$/);
  // Even the right password waits now.
  await guesser.fill('input[name=password]', env.ADMIN_PASSWORD);
  await t.clickAndWait(guesser, 'button[type=submit]');
  assert.equal(new URL(guesser.url()).pathname, '/login');
  assert.match(await guesser.locator('#login-error').innerText(), /Too many failed logins/);
}
