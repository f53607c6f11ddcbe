// The admin console's screenshots in docs/screenshots/ (1280x800): the dashboard after
// a full pass of every migration (Bob's copied, Carol's refused by the old provider), the domains, example.test's page and its DNS
// status, the users, the migrations, the queue with two deferred messages, health, and
// the API tokens with two made (one full, one read-only that expires).

import * as t from './lib.mjs';

export default async function ({ page, env, assert, screenshot, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(env.BASE + '/admin');
  await t.login(page, env.ADMIN, env.ADMIN_PASSWORD);

  step('a second domain, a full pass of every mailbox, an API token');
  await t.section(page, 'Domains');
  await page.fill('#add-domain input[name=domain]', 'branch.example.test');
  await t.submit(page, '#add-domain button[type=submit]', '/admin/domains/branch.example.test');
  await t.section(page, 'Migrations');
  await page.selectOption('#selection-actions select[name=pass]', 'full');
  await t.submit(page, '#selection-actions button[value=start]', '/admin/migrations');
  // Bob's pass copies everything; Carol's stops at the old provider's login.
  await page.waitForFunction(
    (bob) =>
      document.querySelector(`tr[data-address="${bob}"] .phase`)?.textContent === 'passed' &&
      document.querySelector('tr[data-address="carol@example.test"] .phase')?.textContent === 'failed',
    env.BOB,
    { timeout: 120000 },
  );
  await t.section(page, 'API tokens');
  await page.fill('#create-token input[name=name]', 'backup-script');
  await t.submit(page, '#create-token button[type=submit]', '/admin/tokens');
  step(`shown once: ${(await page.locator('#new-token').innerText()).trim()}`);
  await t.section(page, 'API tokens');
  await page.fill('#create-token input[name=name]', 'monitoring');
  await page.selectOption('#create-token select[name=access]', 'read-only');
  await page.selectOption('#create-token select[name=expires_in_days]', '90');
  await t.submit(page, '#create-token button[type=submit]', '/admin/tokens');

  await t.section(page, 'Dashboard');
  await screenshot('admin-dashboard');
  await t.section(page, 'Domains');
  await screenshot('admin-domains');
  await t.submit(page, 'a:text-is("example.test")', '/admin/domains/example.test');
  await screenshot('admin-domain');
  await t.submit(page, '#dns-link', '/admin/domains/example.test/dns');
  assert.ok((await page.locator('tr.finding').count()) > 5);
  await screenshot('admin-dns');
  await t.section(page, 'Users');
  await screenshot('admin-users');
  await t.section(page, 'Migrations');
  await screenshot('admin-migrations');
  await t.section(page, 'Queue');
  await screenshot('admin-queue');
  await t.section(page, 'Health');
  await screenshot('admin-health');
  await t.section(page, 'API tokens');
  await screenshot('admin-tokens');
}
