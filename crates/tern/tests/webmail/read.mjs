// Logging in and reading: a wrong password first, the inbox, a plain-text message, an
// HTML message with its remote images held back until asked for, attachments downloaded
// under their own names (one not ASCII), and "Show original" giving the stored bytes.

import fs from 'node:fs';
import * as t from './lib.mjs';

export default async function ({ page, context, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });

  // Everything asked of the remote hosts is written down; the tracker answers a PNG.
  const remote = [];
  context.on('request', (r) => {
    const host = new URL(r.url()).hostname;
    if (host !== '127.0.0.1') remote.push(r.url());
  });
  await context.route('https://tracker.example/**', (route) =>
    route.fulfill({ status: 200, contentType: 'image/png', body: t.PNG_1X1 }),
  );
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });

  step('deliver three messages over SMTP');
  const plain = t.message({
    from: 'Carol Jones <carol@partner.example>',
    to: env.ADMIN,
    subject: 'Lunch on Friday?',
    text: 'Shall we try the new place on Friday at 12:30?\n\nCarol',
  });
  const html = t.message({
    from: 'Harbour Books <news@books.example>',
    to: env.ADMIN,
    subject: 'Autumn newsletter',
    text: 'Autumn titles are in.',
    html:
      '<h1 id="headline">Autumn titles are in</h1><p>Ten new <b>crime novels</b> and a <a href="https://ok.example/x">catalogue</a>.</p>' +
      '<p><img id="banner" src="https://tracker.example/banner.png?u=admin" alt="banner" width="1" height="1"></p>' +
      '<script>alert("script ran")</script><p onclick="alert(2)">Happy reading</p>',
  });
  const binary = Buffer.alloc(3000);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7 + 13) & 0xff;
  const files = [
    { name: 'figures-q3.bin', type: 'application/octet-stream', data: binary },
    { name: 'Übersicht Größe – Ω.txt', type: 'text/plain', data: Buffer.from('Zürich: 12\nMünchen: 7\n', 'utf8') },
  ];
  const report = t.message({
    from: 'Dan Ortiz <dan@partner.example>',
    to: env.ADMIN,
    subject: 'Quarterly report',
    text: 'The figures are attached.',
    attachments: files,
  });
  await t.deliver(env, [
    { from: 'carol@partner.example', to: env.ADMIN, raw: plain.raw },
    { from: 'news@books.example', to: env.ADMIN, raw: html.raw },
    { from: 'dan@partner.example', to: env.ADMIN, raw: report.raw },
  ]);

  step('a page of webmail sends to the login page; a wrong password is refused');
  await page.goto(env.BASE + '/mail');
  assert.equal(new URL(page.url()).pathname, '/login');
  await page.fill('input[name=user]', env.ADMIN);
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button[type=submit]');
  await page.locator('#login-error').waitFor();
  assert.match(await page.locator('#login-error').innerText(), /Wrong email address or password/);
  assert.equal(new URL(page.url()).pathname, '/login');

  step('the right password opens the inbox with the three messages, unread');
  await page.fill('input[name=password]', env.ADMIN_PASSWORD);
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.click('button[type=submit]')]);
  await page.locator('#message-list').waitFor();
  assert.deepEqual(await t.subjects(page), ['Quarterly report', 'Autumn newsletter', 'Lunch on Friday?']);
  assert.equal(await page.locator('#message-list tr.msg.unread').count(), 3);
  assert.equal((await page.locator('#folder-tree li.inbox .count').innerText()).trim(), '3');
  assert.equal(await t.row(page, 'Quarterly report').locator('.attachment').count(), 1);

  step('a plain-text message shows its text in the body frame');
  await t.row(page, 'Lunch on Friday?').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  assert.equal(await page.locator('#subject').innerText(), 'Lunch on Friday?');
  assert.match(await page.locator('.message-head .from').innerText(), /Carol Jones <carol@partner\.example>/);
  const frame = page.frameLocator('#message-body');
  await frame.locator('.plain').waitFor();
  assert.equal(
    (await frame.locator('.plain').innerText()).trim(),
    'Shall we try the new place on Friday at 12:30?\n\nCarol',
  );
  assert.equal(await page.locator('#remote-images').count(), 0);
  // Opening it read it, as an IMAP client sees.
  const seen = await t.imap(env, env.ADMIN, env.ADMIN_PASSWORD).bySubject('INBOX', 'Lunch on Friday?');
  assert.ok(seen.flags.includes('\\Seen'), JSON.stringify(seen.flags));

  step('an HTML message: sanitised, remote images held back with a notice');
  await page.goto(env.BASE + '/mail');
  await t.row(page, 'Autumn newsletter').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  await frame.locator('h1').waitFor();
  assert.equal(await frame.locator('h1').innerText(), 'Autumn titles are in');
  assert.equal(await frame.locator('img').getAttribute('src'), null, 'the remote image has no source');
  assert.equal(await frame.locator('b').innerText(), 'crime novels');
  assert.equal(await frame.locator('a').getAttribute('href'), 'https://ok.example/x');
  assert.equal(await frame.locator('script').count(), 0, 'no script element in the body');
  assert.equal(await frame.locator('[onclick]').count(), 0, 'no event handler in the body');
  await page.locator('#remote-images').waitFor();
  assert.match(await page.locator('#remote-images').innerText(), /Remote images are hidden/);
  // The frame has loaded completely, and nothing went to the tracker.
  await page.frame({ url: /\/mail\/body\?/ }).waitForLoadState('load');
  assert.deepEqual(remote, [], 'no request to a remote host before "Show images"');

  step('"Show images" loads the remote image');
  await Promise.all([page.waitForURL(/remote=1/), page.click('#show-images')]);
  await t.until('the tracker image to be requested', () => remote.some((u) => u.startsWith('https://tracker.example/banner.png')));
  await t.until('the remote image to be shown', () =>
    frame.locator('img').evaluate((img) => img.complete && img.naturalWidth === 1),
  );
  assert.equal(await frame.locator('img').getAttribute('src'), 'https://tracker.example/banner.png?u=admin');
  assert.equal(await page.locator('#remote-images').count(), 0, 'no notice once images are shown');
  assert.deepEqual(dialogs, [], 'the message ran no script');

  step('attachments are listed and download under their names with their bytes');
  await page.goto(env.BASE + '/mail');
  await t.row(page, 'Quarterly report').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  const links = page.locator('.attachments a.attachment-link');
  assert.equal(await links.count(), 2);
  for (const [i, file] of files.entries()) {
    const link = links.nth(i);
    assert.equal(await link.locator('.name').innerText(), file.name);
    const [download] = await Promise.all([page.waitForEvent('download'), t.scrollThenClick(page, link)]);
    assert.equal(download.suggestedFilename(), file.name);
    const saved = fs.readFileSync(await download.path());
    assert.ok(saved.equals(file.data), `the bytes of ${file.name}`);
    // The server's own header names it too (for a browser ignoring `download`).
    const response = await page.request.get(new URL(await link.getAttribute('href'), page.url()).href);
    assert.equal(response.status(), 200);
    const disposition = response.headers()['content-disposition'];
    assert.ok(
      disposition.startsWith('attachment;') && disposition.includes(`filename*=UTF-8''${encodeURIComponent(file.name).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())}`),
      disposition,
    );
    assert.ok((await response.body()).equals(file.data));
  }

  step('"Show original" opens the message exactly as stored');
  const stored = (await t.imap(env, env.ADMIN, env.ADMIN_PASSWORD).folder('INBOX', true)).find(
    (m) => m.subject === 'Quarterly report',
  );
  assert.ok(stored.raw.subarray(stored.raw.length - report.raw.length).equals(report.raw), 'stored as delivered');
  const [popup] = await Promise.all([context.waitForEvent('page'), page.click('text=Show original')]);
  await popup.waitForLoadState();
  assert.match(new URL(popup.url()).pathname, /^\/mail\/raw$/);
  assert.match(await popup.locator('body').innerText(), /Subject: Quarterly report/);
  const raw = await page.request.get(popup.url());
  assert.equal(raw.status(), 200);
  assert.ok((await raw.body()).equals(stored.raw), 'the original is byte for byte what IMAP gives');
  await popup.close();

  assert.deepEqual(dialogs, []);
}
