// What the setup page scripts share: reading a downloaded Apple profile with Python's
// plistlib, the settings a mail app should be shown, and opening the page for an
// address and an app the way a user does (typing, picking, pressing the button).
//
// `env` (from crates/tern/tests/setup.rs) carries BASE (https://127.0.0.1:port),
// HOSTNAME (the host name clients are told), the client ports IMAP, IMAPS, POP3, POP3S,
// SUBMISSION, SUBMISSIONS, the HTTPS port, BOB and BOB_PASSWORD.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A property list file read by Python's plistlib (XML or binary), as JSON. */
export async function readPlist(file) {
  const program =
    'import json, plistlib, sys\n' +
    'with open(sys.argv[1], "rb") as f:\n' +
    '    print(json.dumps(plistlib.load(f), default=str))\n';
  const { stdout } = await run('python3', ['-c', program, file]);
  return JSON.parse(stdout);
}

/** The mail apps of the page, by the value of their radio button, and their heading. */
export const APPS = {
  outlook: 'Outlook 2010 and later, Microsoft 365',
  'outlook-2007': 'Outlook 2007',
  thunderbird: 'Thunderbird',
  'apple-mail': 'Apple Mail on a Mac',
  iphone: 'iPhone and iPad',
  'android-gmail': 'Android: the Gmail app',
  'android-thunderbird': 'Android: Thunderbird or K-9 Mail',
  'windows-mail': 'Windows Mail',
  other: 'Another mail app',
};

/** Types the address, picks the app and presses "Show me how"; ends on its steps. */
export async function pick(page, email, app) {
  await page.fill('#setup-email', email);
  await page.check(`input[type=radio][name=client][value="${app}"]`);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/setup' && u.searchParams.get('client') === app),
    page.click('button:has-text("Show me how")'),
  ]);
}

/** The rows of the settings table: [role, host, port, security]. */
export async function settingsRows(page) {
  return page.locator('#settings-table tbody tr').evaluateAll((rows) =>
    rows.map((r) => [...r.querySelectorAll('th, td')].map((c) => c.textContent.trim())),
  );
}
