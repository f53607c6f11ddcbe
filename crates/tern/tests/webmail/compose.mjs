// Writing mail: a new message with an attachment (saved as a draft on its own first,
// then sent), a reply, and a forward as attachment; each checked where an IMAP client
// would find it, at bob's and in admin's Sent, Drafts and INBOX.

import * as t from './lib.mjs';

export default async function ({ page, env, assert, step }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  const admin = t.imap(env, env.ADMIN, env.ADMIN_PASSWORD);
  const bob = t.imap(env, env.BOB, env.BOB_PASSWORD);

  step('bob writes to admin through submission');
  const garden = t.message({
    from: `Bob Baker <${env.BOB}>`,
    to: env.ADMIN,
    subject: 'Garden plans',
    text: 'Shall we plant the apple trees on Saturday?\n\nBob',
  });
  await t.submit(env, env.BOB, env.BOB_PASSWORD, [{ from: env.BOB, to: env.ADMIN, raw: garden.raw }]);
  await t.until('bob\'s message in admin\'s INBOX', async () => (await admin.bySubject('INBOX', 'Garden plans')));

  await t.login(page, env);

  step('a new message with an attachment: saved as a draft by itself');
  await Promise.all([page.waitForURL((u) => u.pathname === '/compose'), page.click('a.compose-button')]);
  const photo = Buffer.alloc(5000);
  for (let i = 0; i < photo.length; i++) photo[i] = (i * 31 + 7) & 0xff;
  await page.fill('#to', env.BOB);
  await page.fill('#subject', 'Photos from the trip');
  await page.fill('#text', 'Here is the photo from the lake.\n\nAdmin');
  await page.setInputFiles('#files', { name: 'lake.jpg', mimeType: 'image/jpeg', buffer: photo });
  await page.locator('#draft-status', { hasText: 'Draft saved' }).waitFor({ timeout: 60000 });
  // The draft's attachment is now listed as kept (it travels from the draft).
  await page.locator('#kept input[name=keep_part]').first().waitFor();
  assert.match(await page.locator('#kept').innerText(), /lake\.jpg/);
  const drafts = await admin.folder('Drafts');
  assert.equal(drafts.length, 1, JSON.stringify(drafts.map((d) => d.subject)));
  assert.equal(drafts[0].subject, 'Photos from the trip');
  assert.ok(drafts[0].flags.includes('\\Draft'), JSON.stringify(drafts[0].flags));
  assert.equal(drafts[0].attachments.length, 1);
  assert.ok(drafts[0].attachments[0].data.equals(photo));

  step('sent: bob has it with the attachment, Sent has a read copy, Drafts is empty');
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.click('#send')]);
  const received = await t.until('the message at bob', async () => bob.bySubject('INBOX', 'Photos from the trip'));
  assert.match(received.from, /admin@example\.test/);
  assert.match(received.text, /Here is the photo from the lake\./);
  assert.equal(received.attachments.length, 1);
  assert.equal(received.attachments[0].name, 'lake.jpg');
  assert.equal(received.attachments[0].content_type, 'image/jpeg');
  assert.ok(received.attachments[0].data.equals(photo), 'the attachment\'s bytes');
  const sent = await admin.bySubject('Sent', 'Photos from the trip');
  assert.ok(sent, 'a copy in Sent');
  assert.ok(sent.flags.includes('\\Seen'), JSON.stringify(sent.flags));
  assert.ok(sent.attachments[0].data.equals(photo));
  assert.deepEqual(await admin.folder('Drafts'), [], 'sending removed the draft');

  step('a reply to bob: In-Reply-To at bob, \\Answered on the original');
  await t.openFolder(page, env, 'INBOX');
  await t.row(page, 'Garden plans').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  await Promise.all([page.waitForURL((u) => u.pathname === '/compose'), page.click('#reply')]);
  assert.equal(await page.inputValue('#subject'), 'Re: Garden plans');
  assert.match(await page.inputValue('#to'), /bob@example\.test/);
  const quoted = await page.inputValue('#text');
  assert.match(quoted, /> Shall we plant the apple trees on Saturday\?/);
  await page.fill('#text', 'Saturday works. I will bring a spade.' + quoted);
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.click('#send')]);
  const reply = await t.until('the reply at bob', async () => bob.bySubject('INBOX', 'Re: Garden plans'));
  assert.equal(reply.in_reply_to, `<${garden.id}>`);
  assert.match(reply.references, new RegExp(t.escapeRegExp(`<${garden.id}>`)));
  assert.match(reply.text, /Saturday works\. I will bring a spade\./);
  assert.match(reply.text, /> Shall we plant the apple trees on Saturday\?/);
  const original = await t.until('\\Answered on the original', async () => {
    const m = await admin.bySubject('INBOX', 'Garden plans');
    return m.flags.includes('\\Answered') && m;
  });
  assert.ok(original);
  // The list shows it answered.
  await t.openFolder(page, env, 'INBOX');
  assert.equal(await t.row(page, 'Garden plans').locator('.answered').count(), 1);

  step('forward as attachment: bob gets the original as a message/rfc822 part');
  await t.row(page, 'Garden plans').locator('.subj').click();
  await page.waitForURL(/\/mail\/read\?/);
  await Promise.all([page.waitForURL((u) => u.pathname === '/compose'), page.click('text=Forward as attachment')]);
  assert.equal(await page.inputValue('#subject'), 'Fwd: Garden plans');
  assert.match(await page.locator('#kept').innerText(), /original message is attached/);
  await page.fill('#to', env.BOB);
  await page.fill('#text', 'See below.');
  await Promise.all([page.waitForURL((u) => u.pathname === '/mail'), page.click('#send')]);
  const forwarded = await t.until('the forward at bob', async () => bob.bySubject('INBOX', 'Fwd: Garden plans'));
  assert.equal(forwarded.attachments.length, 1, JSON.stringify(forwarded.attachments.map((a) => a.name)));
  const attached = forwarded.attachments[0];
  assert.equal(attached.content_type, 'message/rfc822');
  assert.equal(attached.name, 'Garden plans.eml');
  const inner = attached.data.toString('utf8');
  assert.match(inner, new RegExp(t.escapeRegExp(`Message-ID: <${garden.id}>`), 'i'));
  assert.match(inner, /Shall we plant the apple trees on Saturday\?/);
  // ... byte for byte, not re-encoded (RFC 2046 §5.2.1: no base64 for message/rfc822).
  const originalRaw = (await admin.folder('INBOX', true)).find((m) => m.subject === 'Garden plans').raw;
  const forwardedRaw = (await bob.folder('INBOX', true)).find((m) => m.subject === 'Fwd: Garden plans').raw;
  assert.ok(forwardedRaw.includes(originalRaw), 'the original\'s bytes are in the forward as they are');
  const marked = await admin.bySubject('INBOX', 'Garden plans');
  assert.ok(marked.flags.includes('$Forwarded'), JSON.stringify(marked.flags));
}
