// The screenshots of docs/screenshots/, from a small realistic mailbox delivered over
// SMTP: several senders, read and unread, a flagged message, attachments, an HTML
// newsletter with remote images, an HTML booking with an inline logo, and a
// conversation of three. 1280x800, and 390x844 for the phone.

import * as t from './lib.mjs';

const me = 'admin@example.test';

export default async function ({ browser, page, env, assert, screenshot, step }) {
  const admin = t.imap(env, env.ADMIN, env.ADMIN_PASSWORD);
  await page.setViewportSize({ width: 1280, height: 800 });

  // A small logo for the booking mail, drawn by the browser.
  await page.setContent('<canvas id="c" width="180" height="48"></canvas>');
  const logo = Buffer.from(
    (
      await page.evaluate(() => {
        const c = document.getElementById('c').getContext('2d');
        c.fillStyle = '#0b6e69';
        c.fillRect(0, 0, 180, 48);
        c.fillStyle = '#fff';
        c.font = 'bold 22px sans-serif';
        c.fillText('Northwind ✈', 14, 32);
        return document.getElementById('c').toDataURL('image/png');
      })
    ).split(',')[1],
    'base64',
  );

  step('deliver the mailbox');
  const days = (n) => new Date(Date.now() - n * 86400000);
  const budget = Buffer.from('Quarter,Planned,Spent\nQ4,120000,98500\n');
  const photo = Buffer.alloc(180000, 7);
  const mail = [
    {
      from: 'Priya Raman <priya@northwind.example>',
      subject: 'Q4 budget review',
      date: days(6),
      text: 'Hi,\n\nthe Q4 numbers are in the attached sheet. We are under budget on travel and a little over on software.\nCan you look before Friday?\n\nThanks,\nPriya',
      attachments: [{ name: 'Q4-budget.csv', type: 'text/csv', data: budget }],
    },
    {
      from: 'Harbour Books <news@harbourbooks.example>',
      subject: 'Autumn newsletter: ten new crime novels',
      date: days(5),
      text: 'Autumn titles are in.',
      html:
        '<table width="100%" cellpadding="0" cellspacing="0" style="font-family:Georgia,serif;background:#faf6ef">' +
        '<tr><td style="padding:24px"><img src="https://tracker.example/harbour/logo.png" alt="Harbour Books" width="200" height="60">' +
        '<h1 style="color:#5b3a1a;font-size:28px">Ten new crime novels for long evenings</h1>' +
        '<p style="font-size:16px;line-height:1.6">From a lighthouse murder in Cornwall to a cold case in Oslo: this autumn\'s shelf is darker than ever.</p>' +
        '<img src="https://tracker.example/harbour/shelf.jpg" alt="The autumn shelf" width="560" height="240">' +
        '<p><a href="https://harbourbooks.example/autumn" style="background:#5b3a1a;color:#fff;padding:10px 18px;text-decoration:none;border-radius:4px">Browse the shelf</a></p>' +
        '<img src="https://tracker.example/open.gif?u=admin" width="1" height="1" alt=""></td></tr></table>',
    },
    {
      from: 'Tom Becker <tom@northwind.example>',
      subject: 'Team offsite in March',
      date: days(4),
      text: 'Hi all,\n\nI would like to hold the team offsite in the second week of March. Lisbon or Porto?\n\nTom',
      id: 'offsite-1@northwind.example',
    },
    {
      from: 'City Library <noreply@library.example>',
      subject: 'Your reservation is ready to collect',
      date: days(4),
      text: '"The Lighthouse" by P. D. James is waiting for you at the front desk until 3 December.',
    },
    {
      from: 'Priya Raman <priya@northwind.example>',
      subject: 'Re: Team offsite in March',
      date: days(3),
      text: 'Lisbon gets my vote: direct flights from everywhere.\n\nPriya\n\n> Lisbon or Porto?',
      id: 'offsite-2@northwind.example',
      inReplyTo: 'offsite-1@northwind.example',
      references: ['offsite-1@northwind.example'],
    },
    {
      from: 'Northwind Travel <bookings@northwind-travel.example>',
      subject: 'Your trip to Lisbon: booking confirmed',
      date: days(2),
      text: 'Booking NW-48213 confirmed.',
      html:
        '<div style="font-family:Helvetica,Arial,sans-serif;max-width:600px">' +
        '<p><img src="cid:logo@northwind-travel.example" alt="Northwind Travel" width="180" height="48"></p>' +
        '<h2 style="color:#0b6e69">Your booking is confirmed</h2>' +
        '<p>Booking reference <strong>NW-48213</strong>. Have a good trip!</p>' +
        '<table style="border-collapse:collapse;width:100%" cellpadding="8">' +
        '<tr style="background:#e6f2f1"><th align="left">Flight</th><th align="left">From</th><th align="left">To</th><th align="left">Date</th></tr>' +
        '<tr><td>NW 512</td><td>London Gatwick 07:05</td><td>Lisbon 09:50</td><td>9 March</td></tr>' +
        '<tr style="background:#f7f7f7"><td>NW 517</td><td>Lisbon 18:40</td><td>London Gatwick 21:15</td><td>13 March</td></tr>' +
        '</table><p style="color:#666;font-size:13px">Check in opens 24 hours before departure.</p></div>',
      related: [{ cid: 'logo@northwind-travel.example', type: 'image/png', data: logo }],
    },
    {
      from: 'Lena Fischer <lena@fischer.example>',
      subject: 'Photos from Saturday',
      date: days(1),
      text: 'Here are the best ones from the lake. The one with the heron is my favourite!\n\nLena',
      attachments: [
        { name: 'heron.jpg', type: 'image/jpeg', data: photo },
        { name: 'sunset over the lake.jpg', type: 'image/jpeg', data: photo },
      ],
    },
    {
      from: 'Tom Becker <tom@northwind.example>',
      subject: 'Re: Team offsite in March',
      date: days(0.2),
      text: 'Lisbon it is. I will book the venue this week.\n\nTom',
      inReplyTo: 'offsite-2@northwind.example',
      references: ['offsite-1@northwind.example', 'offsite-2@northwind.example'],
    },
    {
      from: 'Mum <margaret.morgan@family.example>',
      subject: 'Sunday lunch',
      date: days(0.1),
      text: 'Roast at one o\'clock as usual? Bring the children!\n\nLove, Mum',
    },
  ];
  for (const m of mail) {
    const built = t.message({ ...m, to: `Alex Morgan <${me}>`, messageId: m.id });
    await t.deliver(env, [{ from: m.from, to: me, raw: built.raw }]);
  }
  const bobsLunch = t.message({
    from: `Bob Baker <${env.BOB}>`,
    to: me,
    subject: 'Lunch on Thursday?',
    text: 'The new noodle place on the corner opens on Thursday. Twelve thirty?\n\nBob',
  });
  await t.submit(env, env.BOB, env.BOB_PASSWORD, [{ from: env.BOB, to: me, raw: bobsLunch.raw }]);
  await t.until('all ten in the inbox', async () => (await admin.folder('INBOX')).length === 10);
  for (const subject of ['Q4 budget review', 'Your reservation is ready to collect', 'Team offsite in March', 'Your trip to Lisbon: booking confirmed']) {
    await t.imapStore(env, env.ADMIN, env.ADMIN_PASSWORD, 'INBOX', subject, '+FLAGS', ['\\Seen']);
  }
  await t.imapStore(env, env.ADMIN, env.ADMIN_PASSWORD, 'INBOX', 'Photos from Saturday', '+FLAGS', ['\\Flagged']);
  await t.imapStore(env, env.ADMIN, env.ADMIN_PASSWORD, 'INBOX', 'Q4 budget review', '+FLAGS', ['\\Answered']);

  step('login');
  await page.goto(env.BASE + '/login');
  await page.fill('input[name=user]', me);
  await screenshot('login');
  await t.login(page, env);

  step('settings: name and signature');
  await page.goto(env.BASE + '/settings');
  await page.fill('#profile [name=display_name]', 'Alex Morgan');
  await page.fill('#profile [name=signature]', 'Alex Morgan\nOperations, Example Test Ltd');
  await t.clickAndWait(page, '#profile button[type=submit]');
  await page.mouse.move(0, 0);
  await screenshot('settings');

  step('folders');
  await page.goto(env.BASE + '/folders');
  for (const [name, parent] of [['Projects', ''], ['Lisbon offsite', 'Projects'], ['Receipts', '']]) {
    await page.fill('#create-folder input[name=name]', name);
    await page.selectOption('#create-folder select[name=parent]', parent);
    await t.clickAndWait(page, '#create-folder button[type=submit]');
  }
  await page.goto(env.BASE + '/folders');
  await screenshot('folders');

  step('inbox');
  await page.goto(env.BASE + '/mail');
  assert.equal(await page.locator('#message-list tr.msg').count(), 10);
  await screenshot('inbox');

  step('conversations');
  await t.clickAndWait(page, page.locator('a.toggle', { hasText: 'Conversations' }));
  assert.match(page.url(), /conv=1/);
  assert.equal(await page.locator('#message-list tr.msg').count(), 8);
  await screenshot('conversations');

  step('an HTML message with an inline image');
  await page.goto(env.BASE + '/mail');
  await t.clickAndWait(page, t.row(page, 'Your trip to Lisbon: booking confirmed').locator('.subj'));
  await t.until('the inline logo to show', () =>
    page.frameLocator('#message-body').locator('img').evaluate((img) => img.complete && img.naturalWidth === 180),
  );
  await screenshot('message-html');

  step('remote images held back');
  await page.goto(env.BASE + '/mail');
  await t.clickAndWait(page, t.row(page, 'Autumn newsletter: ten new crime novels').locator('.subj'));
  await page.locator('#remote-images').waitFor();
  await screenshot('message-remote-images-blocked');

  step('compose');
  await page.goto(env.BASE + '/mail');
  await t.clickAndWait(page, t.row(page, 'Lunch on Thursday?').locator('.subj'));
  await t.clickAndWait(page, '#reply');
  await page.fill('#text', 'Twelve thirty works. See you there!' + (await page.inputValue('#text')));
  await page.locator('#text').evaluate((e) => e.setSelectionRange(0, 0));
  await screenshot('compose');

  step('search');
  await page.goto(env.BASE + '/mail');
  await page.fill('#search-box', 'Lisbon');
  await Promise.all([page.waitForNavigation(), page.press('#search-box', 'Enter')]);
  assert.deepEqual((await t.subjects(page)).sort(), [
    'Re: Team offsite in March',
    'Re: Team offsite in March',
    'Team offsite in March',
    'Your trip to Lisbon: booking confirmed',
  ]);
  await screenshot('search');

  step('the phone');
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  await t.login(phone, env);
  await screenshot('phone-inbox', phone);
  await t.clickAndWait(phone, t.row(phone, 'Photos from Saturday').locator('.subj'));
  await screenshot('phone-message', phone);
}
