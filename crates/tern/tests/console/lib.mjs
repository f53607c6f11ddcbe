// What the console scripts share: logging in on the shared login page, moving through
// the navigation, reading a secret shown once, and trying a password in a fresh browser
// context.
//
// `env` (from crates/tern/tests/console.rs) carries BASE (https://127.0.0.1:port),
// ADMIN and ADMIN_PASSWORD (quickstart's first account, an administrator), BOB and
// BOB_PASSWORD (an ordinary user whose mailbox is being migrated) and CSV (a file of
// accounts to import: one good line, one of a domain not hosted here).

/** Fills the login form the page shows and waits to land on `landing` (a path). */
export async function login(page, user, password, landing = '/admin') {
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([
    page.waitForURL((u) => u.pathname === landing),
    page.click('button[type=submit]:has-text("Log in")'),
  ]);
}

/** The console's sections: navigation label, path, the page's heading. */
export const SECTIONS = [
  ['Domains', '/admin/domains', 'Domains'],
  ['Users', '/admin/users', 'Users'],
  ['Migrations', '/admin/migrations', 'Migrations'],
  ['Queue', '/admin/queue', 'Outgoing queue'],
  ['Health', '/admin/health', 'Health'],
  ['API tokens', '/admin/tokens', 'API tokens'],
  ['Dashboard', '/admin', 'Dashboard'],
];

/** Clicks a section in the navigation and waits for its page. */
export async function section(page, label) {
  const [, path] = SECTIONS.find(([l]) => l === label);
  await Promise.all([
    page.waitForURL((u) => u.pathname === path),
    page.click(`nav.admin-nav a:text-is("${label}")`),
  ]);
}

/** Clicks `selector` (a submit button) and waits for the page the form leads to. */
export async function submit(page, selector, pathname) {
  await Promise.all([
    page.waitForURL((u) => (typeof pathname === 'function' ? pathname(u) : u.pathname === pathname)),
    page.click(selector),
  ]);
}

/** The password or token a page shows once. */
export async function secret(page) {
  return (await page.locator('code.secret').first().innerText()).trim();
}

/** Whether `user` can log in to webmail with `password`, in a browser of its own. */
export async function canLogIn(browser, base, user, password) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const page = await context.newPage();
    await page.goto(base + '/login');
    await page.fill('input[name=user]', user);
    await page.fill('input[name=password]', password);
    await page.click('button[type=submit]');
    await Promise.race([
      page.waitForURL((u) => u.pathname === '/mail'),
      page.locator('#login-error').waitFor(),
    ]);
    return new URL(page.url()).pathname === '/mail';
  } finally {
    await context.close();
  }
}
