// The console as an administrator uses it: in through the login page, Bob (not an
// administrator) turned away, every section, a domain added with its keys rotated and
// its DNS checked, users added, imported, reset and disabled, Bob's migration started
// (the table refreshing by itself until the pass ends), paused and resumed, queued mail
// retried and deleted, an API token made, used and revoked, and the pages working
// with JavaScript off.

import * as t from './lib.mjs';

export default async function ({ browser, context, page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const notice = () => page.locator('#notice').innerText();

  step('without a session, /admin is the login page, and comes back after');
  await page.goto(env.BASE + '/admin');
  let url = new URL(page.url());
  assert.equal(url.pathname, '/login');
  assert.equal(url.searchParams.get('next'), '/admin');

  step('Bob, who is not an administrator, is told how to become one');
  await t.login(page, env.BOB, env.BOB_PASSWORD);
  const refusal = await page.locator('#forbidden').innerText();
  assert.match(refusal, /is not an administrator of this server/);
  assert.match(refusal, /tern admin grant ADDRESS/);
  await t.submit(page, '#forbidden button[type=submit]', '/login');

  step('the administrator logs in and lands on the dashboard');
  await page.goto(env.BASE + '/admin/users');
  await t.login(page, env.ADMIN, env.ADMIN_PASSWORD, '/admin/users');
  await t.section(page, 'Dashboard');
  assert.equal(await page.locator('h1').innerText(), 'Dashboard');
  assert.equal(await page.locator('#count-accounts').innerText(), '3');
  assert.match(await page.locator('#dashboard-migrations').innerText(), /2 mailbox\(es\): 0 running, 0 waiting, 2 idle or between passes/);
  assert.match(await page.locator('#dashboard-queue').innerText(), /2 message\(s\) waiting/);
  assert.equal(await page.locator('#admin-address').innerText(), env.ADMIN);

  step('every section of the navigation');
  for (const [label, path, heading] of t.SECTIONS) {
    await t.section(page, label);
    assert.equal(await page.locator('h1').first().innerText(), heading, path);
    assert.equal(await page.locator('nav.admin-nav a[aria-current=page]').innerText(), label);
  }

  step('a domain added: its page, the zone to publish; keys rotated');
  await t.section(page, 'Domains');
  await page.fill('#add-domain input[name=domain]', 'branch.example.test');
  await t.submit(page, '#add-domain button[type=submit]', '/admin/domains/branch.example.test');
  assert.match(await notice(), /The domain is added/);
  assert.equal(await page.locator('#domain-name').innerText(), 'branch.example.test');
  const zone = await page.locator('pre.zone').innerText();
  assert.ok(zone.includes('branch.example.test. 3600 IN MX 10 mail.example.test.'), zone);
  assert.ok(zone.includes('._domainkey.branch.example.test. 3600 IN TXT'), zone);
  assert.equal(await page.locator('#dkim .badge:text-is("signing")').count(), 2);
  await t.submit(page, '#rotate', '/admin/domains/branch.example.test');
  assert.match(await notice(), /New DKIM keys sign from now on/);
  assert.equal(await page.locator('#dkim .badge:text-is("signing")').count(), 2);
  assert.equal(await page.locator('#dkim .badge:text-is("retired")').count(), 2);

  step('a retired key deleted after the confirmation page');
  await t.submit(page, '#dkim button:has-text("Delete")', (u) => u.pathname.endsWith('/delete'));
  assert.match(await page.locator('#confirm h1').innerText(), /Delete DKIM key/);
  await t.submit(page, '#confirm-button', '/admin/domains/branch.example.test');
  assert.equal(await page.locator('#dkim .badge:text-is("retired")').count(), 1);

  step('its DNS status: every check with a status, and what to publish');
  await t.submit(page, '#dns-link', '/admin/domains/branch.example.test/dns');
  assert.equal(await page.locator('h1').innerText(), 'DNS status of branch.example.test');
  assert.ok((await page.locator('tr.finding').count()) > 5);
  assert.match(await page.locator('#dns-counts').innerText(), /\d+ ok, \d+ warning\(s\), \d+ error\(s\)/);

  step('a user added without a password: the generated one is shown once and logs in');
  await t.section(page, 'Users');
  await page.fill('#add-user input[name=address]', 'frank@example.test');
  await page.fill('#add-user input[name=name]', 'Frank Fisher');
  await page.fill('#add-user input[name=quota]', '2GB');
  await t.submit(page, '#add-user button[type=submit]', '/admin/users');
  assert.equal(await page.locator('#result-title').innerText(), 'Account frank@example.test created');
  const frank = await t.secret(page);
  step(`shown once: ${frank}`);
  assert.ok(await t.canLogIn(browser, env.BASE, 'frank@example.test', frank), 'Frank logs in');
  await t.section(page, 'Users');
  assert.ok(!(await page.content()).includes(frank), 'the list never shows the password');
  assert.match(await page.locator('tr[data-address="frank@example.test"]').innerText(), /2\.1 GB/);

  step('a CSV file imported: the good line made, the bad one listed with why');
  await page.setInputFiles('#import-users input[type=file]', env.CSV);
  await t.submit(page, '#import-users button[type=submit]', '/admin/users/import');
  assert.equal(await page.locator('#result-title').innerText(), 'Imported 1 account(s), skipped 1 line(s)');
  assert.equal(await page.locator('#created td.address').innerText(), 'dan@example.test');
  const dan = await t.secret(page);
  step(`shown once: ${dan}`);
  assert.match(await page.locator('#skipped').innerText(), /Line 3: erin@nowhere\.test/);

  step("Dan's password reset: the new one works, the old one no longer");
  await t.section(page, 'Users');
  await t.submit(page, 'tr[data-address="dan@example.test"] button.reset', '/admin/users/dan%40example.test/password');
  assert.equal(await page.locator('#result-title').innerText(), 'New password for dan@example.test');
  const danNew = await t.secret(page);
  step(`shown once: ${danNew}`);
  assert.notEqual(danNew, dan);
  assert.ok(await t.canLogIn(browser, env.BASE, 'dan@example.test', danNew), 'the new password works');
  assert.ok(!(await t.canLogIn(browser, env.BASE, 'dan@example.test', dan)), 'the old one does not');

  step('Dan disabled: he can no longer log in; enabled again');
  await t.section(page, 'Users');
  await t.submit(page, 'tr[data-address="dan@example.test"] button.disable', '/admin/users');
  assert.match(await notice(), /The account is disabled/);
  assert.match(await page.locator('tr[data-address="dan@example.test"]').innerText(), /disabled/);
  assert.ok(!(await t.canLogIn(browser, env.BASE, 'dan@example.test', danNew)), 'a disabled account cannot log in');
  await t.submit(page, 'tr[data-address="dan@example.test"] button.enable', '/admin/users');
  assert.match(await notice(), /enabled again/);
  // The administrator's own row has no Disable button.
  assert.equal(await page.locator(`tr[data-address="${env.ADMIN}"] button.disable`).count(), 0);

  step("Bob's migration: a full pass started, the table follows it by itself to the end");
  await t.section(page, 'Migrations');
  const bob = `tr[data-address="${env.BOB}"]`;
  assert.equal(await page.locator(`${bob} .phase`).innerText(), 'idle');
  await page.selectOption(`${bob} select[name=pass]`, 'full');
  await t.submit(page, `${bob} button.start`, '/admin/migrations');
  assert.match(await notice(), /The pass is asked for/);
  // No reload from here: admin.js swaps in the fresh table every few seconds.
  await page.waitForFunction(
    (row) => document.querySelector(`${row} .phase`)?.textContent === 'passed',
    bob,
    { timeout: 120000 },
  );
  assert.match(await page.locator(`${bob} td.progress`).innerText(), /100%/);

  step('the mailbox report: its folders');
  await t.submit(page, `${bob} a`, `/admin/migrations/${encodeURIComponent(env.BOB)}`);
  assert.ok((await page.locator('#folders tbody tr').count()) >= 5);

  step('paused and resumed from the table');
  await t.section(page, 'Migrations');
  await t.submit(page, `${bob} button.pause`, '/admin/migrations');
  assert.match(await notice(), /Paused/);
  assert.equal(await page.locator(`${bob} .phase`).innerText(), 'paused');
  await t.submit(page, `${bob} button.resume`, '/admin/migrations');
  assert.equal(await page.locator(`${bob} .phase`).innerText(), 'passed');

  step('queued mail: one tried again now, the other deleted after the confirmation');
  await t.section(page, 'Queue');
  assert.equal(await page.locator('#queue-table tbody tr').count(), 2);
  assert.match(await page.locator('#queue-table').innerText(), /451 4\.7\.1 Greylisted/);
  const first = await page.locator('#queue-table tbody tr').first().getAttribute('data-id');
  const second = await page.locator('#queue-table tbody tr').nth(1).getAttribute('data-id');
  await t.submit(page, `tr[data-id="${first}"] button.retry`, '/admin/queue');
  assert.match(await notice(), /tried again within seconds/);
  await t.submit(page, `tr[data-id="${second}"] button.delete`, `/admin/queue/${second}/delete`);
  assert.match(await page.locator('#confirm').innerText(), /sender is not told/);
  await t.submit(page, '#confirm-button', '/admin/queue');
  assert.match(await notice(), /deleted from the queue/);
  assert.equal(await page.locator(`tr[data-id="${second}"]`).count(), 0);

  step('an API token: shown once, answers the API, revoked after the confirmation');
  await t.section(page, 'API tokens');
  await page.fill('#create-token input[name=name]', 'backup-script');
  await t.submit(page, '#create-token button[type=submit]', '/admin/tokens');
  const token = (await page.locator('#new-token').innerText()).trim();
  step(`shown once: ${token}`);
  assert.match(token, /^tern_[0-9a-f]{64}$/);
  assert.ok((await page.locator('#token-usage').innerText()).includes(`Authorization: Bearer ${token}`));
  const api = await browser.newContext({ ignoreHTTPSErrors: true });
  const health = await api.request.get(env.BASE + '/admin/api/v1/health', {
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(health.status(), 200);
  await t.section(page, 'API tokens');
  assert.match(await page.locator('#tokens-table').innerText(), /backup-script/);
  assert.ok(!(await page.content()).includes(token), 'the list never shows the token');
  await t.submit(page, 'tr[data-name="backup-script"] button.revoke', '/admin/tokens/backup-script/revoke');
  await t.submit(page, '#confirm-button', '/admin/tokens');
  assert.match(await notice(), /revoked/);
  const refused = await api.request.get(env.BASE + '/admin/api/v1/health', {
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(refused.status(), 401);

  step('a read-only token expiring in 30 days: it reads, and any change is refused');
  await t.section(page, 'API tokens');
  await page.fill('#create-token input[name=name]', 'monitoring');
  await page.selectOption('#create-token select[name=access]', 'read-only');
  await page.selectOption('#create-token select[name=expires_in_days]', '30');
  await t.submit(page, '#create-token button[type=submit]', '/admin/tokens');
  const monitor = (await page.locator('#new-token').innerText()).trim();
  assert.match(await page.locator('#token-terms').innerText(), /Access: read-only\. Expires in 30 day\(s\), on /);
  const read = await api.request.get(env.BASE + '/admin/api/v1/migrations', {
    headers: { Authorization: `Bearer ${monitor}` },
  });
  assert.equal(read.status(), 200);
  const change = await api.request.post(env.BASE + '/admin/api/v1/queue/retry', {
    headers: { Authorization: `Bearer ${monitor}` },
  });
  assert.equal(change.status(), 403);
  assert.match((await change.json()).error, /read-only/);
  await t.section(page, 'API tokens');
  assert.equal(await page.locator('tr[data-name="monitoring"] .access').innerText(), 'read-only');
  assert.notEqual(await page.locator('tr[data-name="monitoring"] .expires').innerText(), 'never');
  await api.close();

  step('health: the version, the listeners');
  await t.section(page, 'Health');
  assert.match(await page.locator('#version').innerText(), /^Tern \d/);
  assert.ok((await page.locator('#listeners tbody tr').count()) >= 5);

  step('without JavaScript the pages and forms work the same');
  const plain = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false });
  const p = await plain.newPage();
  await p.goto(env.BASE + '/admin/migrations');
  await t.login(p, env.ADMIN, env.ADMIN_PASSWORD, '/admin/migrations');
  await t.submit(p, `${bob} button.pause`, '/admin/migrations');
  assert.equal(await p.locator(`${bob} .phase`).innerText(), 'paused');
  await plain.close();

  step('logging out from the console');
  await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.click('form.logout button')]);
  await page.goto(env.BASE + '/admin');
  assert.equal(new URL(page.url()).pathname, '/login');
}
