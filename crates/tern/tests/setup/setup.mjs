// The setup page as a user meets it: the login page's link, an address typed in, each
// mail app picked in turn with its steps showing this server's host name and ports, the
// settings table, the Apple profile downloaded and read back with plistlib, the Outlook
// 2007 profile file, a wrong and a right password checked, the connection check link,
// the page working with JavaScript off, and the phone layout (390x844, nothing wider
// than the screen, the QR code shown).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as t from './lib.mjs';

export default async function ({ browser, page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const host = env.HOSTNAME;
  const downloads = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-setup-'));

  step('the login page links to the setup page');
  await page.goto(env.BASE + '/login');
  await Promise.all([page.waitForURL((u) => u.pathname === '/setup'), page.click('#setup-link')]);
  assert.equal(await page.locator('#setup-email').inputValue(), '');
  assert.equal(await page.locator('input[type=radio][name=client]').count(), Object.keys(t.APPS).length);

  step('an address of a domain not hosted here is refused, and says why');
  await t.pick(page, 'someone@elsewhere.example', 'thunderbird');
  assert.match(await page.locator('#setup-error').innerText(), /not handled by this server/);
  assert.equal(await page.locator('#steps').count(), 0);

  for (const [app, heading] of Object.entries(t.APPS)) {
    step(`${app}: its steps, with this server's names and ports`);
    await t.pick(page, env.BOB, app);
    assert.equal(await page.locator('#steps-title').innerText(), heading);
    assert.equal(await page.locator(`input[type=radio][name=client][value="${app}"]`).isChecked(), true);
    // Steps name the address, and every app with manual values names the recommended
    // host, ports and security (shown or behind "If … cannot find the settings").
    const steps = await page.locator('#steps').textContent();
    assert.ok(steps.includes(env.BOB), `${app}: the address is in the steps`);
    if (app !== 'other') {
      assert.ok(steps.includes(host), `${app}: ${host} is in the steps`);
      if (!['outlook-2007'].includes(app)) {
        assert.ok(steps.includes(env.IMAPS) && steps.includes(env.SUBMISSIONS), `${app}: the ports`);
      }
    }
    if (app === 'android-gmail') {
      assert.ok(steps.includes(`port ${env.IMAPS}, security type SSL/TLS`), steps);
      assert.ok(steps.includes(`port ${env.SUBMISSIONS}, security type SSL/TLS`), steps);
    }
    if (app === 'windows-mail') assert.ok(steps.includes(`${host}:${env.IMAPS}`), steps);
    if (app === 'thunderbird' || app === 'outlook' || app === 'android-thunderbird') {
      assert.match(steps, /find(s)? the settings by (it|them)sel(f|ves)/);
    }
    assert.equal(
      await page.locator('#check-link').getAttribute('href'),
      `/setup/check?email=${encodeURIComponent(env.BOB)}`,
    );
  }

  step('the settings table: every client port, the recommended ones first');
  assert.deepEqual(await t.settingsRows(page), [
    ['Incoming mail (IMAP)', host, env.IMAPS, 'SSL/TLS'],
    ['Incoming mail (IMAP) (alternative)', host, env.IMAP, 'STARTTLS'],
    ['Incoming mail (POP3)', host, env.POP3S, 'SSL/TLS'],
    ['Incoming mail (POP3) (alternative)', host, env.POP3, 'STARTTLS'],
    ['Outgoing mail (SMTP)', host, env.SUBMISSIONS, 'SSL/TLS'],
    ['Outgoing mail (SMTP) (alternative)', host, env.SUBMISSION, 'STARTTLS'],
  ]);

  step('iPhone: a QR code of the profile URL, and the profile downloaded and read back');
  await t.pick(page, env.BOB, 'iphone');
  const qr = await page.locator('svg.qr').boundingBox();
  assert.ok(qr && qr.width >= 150 && qr.height >= 150, `the QR code is shown: ${JSON.stringify(qr)}`);
  const profileUrl = `https://${host}:${env.HTTPS}/setup/apple.mobileconfig?email=${encodeURIComponent(env.BOB)}`;
  assert.ok((await page.locator('.profile-url').innerText()).includes(profileUrl));
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#profile-download')]);
  assert.equal(download.suggestedFilename(), 'example.test.mobileconfig');
  const profileFile = path.join(downloads, 'profile.mobileconfig');
  await download.saveAs(profileFile);
  const profile = await t.readPlist(profileFile);
  assert.equal(profile.PayloadType, 'Configuration');
  assert.equal(profile.PayloadContent.length, 1);
  const mail = profile.PayloadContent[0];
  assert.equal(mail.PayloadType, 'com.apple.mail.managed');
  assert.equal(mail.EmailAccountType, 'EmailTypeIMAP');
  assert.equal(mail.EmailAddress, env.BOB);
  assert.equal(mail.IncomingMailServerHostName, host);
  assert.equal(mail.IncomingMailServerPortNumber, Number(env.IMAPS));
  assert.equal(mail.IncomingMailServerUseSSL, true);
  assert.equal(mail.IncomingMailServerUsername, env.BOB);
  assert.equal(mail.OutgoingMailServerHostName, host);
  assert.equal(mail.OutgoingMailServerPortNumber, Number(env.SUBMISSIONS));
  assert.equal(mail.OutgoingMailServerUseSSL, true);
  assert.ok(!JSON.stringify(profile).includes(env.BOB_PASSWORD), 'no password in the profile');

  step('Apple Mail on a Mac: the same profile');
  await t.pick(page, env.BOB, 'apple-mail');
  const [macDownload] = await Promise.all([page.waitForEvent('download'), page.click('#profile-download')]);
  await macDownload.saveAs(path.join(downloads, 'mac.mobileconfig'));
  const mac = await t.readPlist(path.join(downloads, 'mac.mobileconfig'));
  assert.equal(mac.PayloadIdentifier, profile.PayloadIdentifier, 'the same identifier for the same address');

  step('Outlook 2007: the profile file and the command that imports it');
  await t.pick(page, env.BOB, 'outlook-2007');
  assert.match(await page.locator('code.command').innerText(), /outlook\.exe \/importprf ".*example\.test\.prf"/);
  const [prfDownload] = await Promise.all([page.waitForEvent('download'), page.click('#prf-download')]);
  assert.equal(prfDownload.suggestedFilename(), 'example.test.prf');
  const prfFile = path.join(downloads, 'outlook.prf');
  await prfDownload.saveAs(prfFile);
  const prf = fs.readFileSync(prfFile, 'utf8');
  for (const line of [
    'Account1=IMAP_I_Mail',
    `IMAPServer=${host}`,
    `IMAPUserName=${env.BOB}`,
    `IMAPPort=${env.IMAPS}`,
    'IMAPUseSSL=1',
    `SMTPPort=${env.SUBMISSIONS}`,
    'SMTPSecureConnection=1',
  ]) {
    assert.ok(prf.split('\r\n').includes(line), `${line} in the PRF`);
  }

  step('a wrong password is refused, the right one works');
  await t.pick(page, env.BOB, 'thunderbird');
  await page.fill('input[name=password]', 'not-the-password');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Check password")')]);
  assert.match(await page.locator('#password-result').innerText(), /Wrong password/);
  assert.equal(await page.locator('#steps-title').innerText(), 'Thunderbird', 'the steps stay');
  assert.equal(await page.locator('input[name=password]').inputValue(), '', 'the password is not put back');
  await page.fill('input[name=password]', env.BOB_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Check password")')]);
  assert.match(await page.locator('#password-result').innerText(), /Your password works/);
  assert.ok(!(await page.content()).includes(env.BOB_PASSWORD), 'the password is not in the page');

  step('the page works with JavaScript off');
  const noScript = await browser.newContext({ javaScriptEnabled: false });
  const plain = await noScript.newPage();
  await plain.goto(env.BASE + '/setup');
  await t.pick(plain, env.BOB, 'android-gmail');
  assert.equal(await plain.locator('#steps-title').innerText(), t.APPS['android-gmail']);
  await noScript.close();

  step('phone layout: nothing wider than the screen, the QR code and the download shown');
  await page.setViewportSize({ width: 390, height: 844 });
  await t.pick(page, env.BOB, 'iphone');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  assert.ok(await page.locator('svg.qr').isVisible());
  assert.ok(await page.locator('#profile-download').isVisible());
  const table = await page.locator('#settings-table').boundingBox();
  assert.ok(table.width <= 390, `the settings table fits: ${table.width}`);

  fs.rmSync(downloads, { recursive: true, force: true });
}
