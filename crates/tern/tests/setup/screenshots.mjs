// The setup page's screenshots in docs/screenshots/: the empty page, the iPhone steps
// with the QR code, Thunderbird's steps with the manual settings opened (1280x800), and
// the iPhone steps on a phone (390x844).

import * as t from './lib.mjs';

export default async function ({ page, env, screenshot }) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(env.BASE + '/setup');
  await page.fill('#setup-email', env.BOB);
  await screenshot('setup-start');
  await t.pick(page, env.BOB, 'iphone');
  await screenshot('setup-iphone');
  await t.pick(page, env.BOB, 'thunderbird');
  await page.locator('details.fallback summary').click();
  await screenshot('setup-thunderbird');
  await page.setViewportSize({ width: 390, height: 844 });
  await t.pick(page, env.BOB, 'iphone');
  await screenshot('setup-phone');
}
