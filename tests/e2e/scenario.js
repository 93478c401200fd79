// The shopper's end-to-end scenario, in a real browser (Debian's Chromium through
// playwright-core): a new shopper signs up, searches with a typo, filters, adds two
// products, checks out and sees the order; the demo partner marks it delivered; the shopper
// sees DELIVERED; the e-mails appear in the admin's mailbox view.
//
// Environment: SHOP_URL (default http://127.0.0.1:8080), ARTIFACTS (screenshots),
// CHROMIUM (default /usr/bin/chromium). Exits 1 at the first failed step, naming it.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const SHOP = (process.env.SHOP_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const ARTIFACTS = process.env.ARTIFACTS || path.join(import.meta.dirname, 'artifacts');
const DEMO_PASSWORD = 'storefront-demo';
const ADMIN = 'admin@storefront.test';
const PARTNER = 'partner@storefront.test';
const STEP_TIMEOUT = Number(process.env.STEP_TIMEOUT_MS || 20000);

mkdirSync(ARTIFACTS, { recursive: true });

let shot = 0;
const results = [];

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
  return file;
}

/** Runs one step; on failure saves a screenshot of `page` and stops the scenario. */
async function step(name, page, fn) {
  const started = Date.now();
  try {
    const detail = await fn();
    const ms = Date.now() - started;
    results.push({ name, ok: true, ms });
    console.log(`ok   ${name} (${ms} ms)${detail ? ` — ${detail}` : ''}`);
    await screenshot(page, slug(name));
  } catch (error) {
    const file = await screenshot(page, `FAILED-${slug(name)}`);
    const shown = await page.locator('.message:not([hidden])').allInnerTexts().catch(() => []);
    console.error(`FAIL ${name}\n     ${error.message.split('\n')[0]}`);
    if (shown.length) console.error(`     the page says: ${shown.join(' | ')}`);
    console.error(`     url: ${page.url()}\n     screenshot: ${file}`);
    results.push({ name, ok: false });
    throw new StepFailed(name);
  }
}

class StepFailed extends Error {}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

/** Waits for the single-page app to finish rendering the current view (the router marks
 * <main> aria-busy from the URL change until the view is shown). */
async function settled(page) {
  await page.locator('main#app:not([aria-busy])').waitFor();
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function logIn(page, email, password, who) {
  await page.goto(`${SHOP}/login`);
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter');
  try {
    await page.locator('#logout').waitFor({ timeout: STEP_TIMEOUT });
  } catch {
    const said = await page.locator('.message:not([hidden])').allInnerTexts().catch(() => []);
    throw new Error(`${who} (${email}) cannot log in: ${said.join(' ') || 'no answer'} — does \`storefront up\` seed the demo accounts?`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  // A fresh, throw-away profile: playwright refuses --user-data-dir with launch() and gives
  // every launch its own temporary one (and every context is isolated in it).
});
// Any request leaving the shop's origin is a failure of "no CDN, no network at run time".
const offsite = [];
async function context(viewport = { width: 1280, height: 900 }) {
  const ctx = await browser.newContext({ viewport, baseURL: SHOP });
  ctx.setDefaultTimeout(STEP_TIMEOUT);
  await ctx.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(SHOP) || url.startsWith('data:')) return route.continue();
    offsite.push(url);
    return route.abort();
  });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`     [browser error] ${e.message}`));
  return page;
}

const shopper = await context();
const stamp = Date.now().toString(36);
const email = `shopper-${stamp}@example.test`;
const name = `Sam Shopper ${stamp}`;
const chosen = []; // {id, title}
let orderId = null;
let exitCode = 0;

try {
  await step('shop opens', shopper, async () => {
    await shopper.goto(SHOP);
    await shopper.locator('.cards .card').first().waitFor();
    expect((await shopper.title()).includes('Storefront'), 'the page title names the shop');
  });

  await step('sign-up shows field errors next to the fields', shopper, async () => {
    await shopper.getByRole('link', { name: 'Sign up' }).click();
    await shopper.getByLabel('Name').fill(name);
    await shopper.getByLabel('E-mail').fill(email);
    await shopper.getByLabel('Password').fill('short');
    await shopper.getByRole('button', { name: 'Sign up' }).click();
    const error = shopper.locator('[data-field="password"] .field-error');
    await error.waitFor({ state: 'visible' });
    const text = await error.innerText();
    expect(/12/.test(text), `password error names the rule, got "${text}"`);
    return `password: "${text}"`;
  });

  await step('a new shopper signs up (and is logged in)', shopper, async () => {
    await shopper.getByLabel('Password').fill('correct horse battery');
    await shopper.getByLabel('Password').press('Enter');
    await shopper.locator('#logout').waitFor();
    const who = await shopper.locator('#logout').innerText();
    expect(who.includes(name), `the header names the shopper, got "${who}"`);
    return email;
  });

  await step('the search box suggests products while typing', shopper, async () => {
    const box = shopper.getByRole('combobox', { name: 'Search products' });
    await box.click();
    await box.pressSequentially('headph', { delay: 30 });
    const options = shopper.getByRole('listbox', { name: 'Suggestions' }).getByRole('option');
    await options.first().waitFor();
    const n = await options.count();
    await box.press('ArrowDown');
    expect((await box.getAttribute('aria-activedescendant')) === 'suggestion-0', 'ArrowDown highlights the first suggestion');
    await box.press('Escape');
    return `${n} suggestions`;
  });

  let unfiltered = 0;
  await step('a search with a typo ("hedphones") finds headphones', shopper, async () => {
    const box = shopper.getByRole('combobox', { name: 'Search products' });
    await box.fill('hedphones');
    await box.press('Enter');
    await shopper.waitForURL(/\/search\?q=hedphones/);
    await settled(shopper);
    await shopper.getByRole('heading', { level: 1, name: 'Results for “hedphones”' }).waitFor();
    unfiltered = parseInt(await shopper.locator('#result-count').innerText(), 10);
    expect(unfiltered > 0, 'some results');
    const titles = await shopper.locator('.card-title').allInnerTexts();
    expect(titles.some((t) => /headphones/i.test(t)), `results are headphones, got ${titles.slice(0, 3).join(', ')}`);
    return `${unfiltered} results`;
  });

  await step('a brand filter narrows the results', shopper, async () => {
    const firstBrand = shopper.locator('fieldset.facet').filter({ hasText: 'Brand' }).locator('input[type=checkbox]').first();
    const label = await shopper.locator(`label[for="${await firstBrand.getAttribute('id')}"]`).innerText();
    const brand = label.replace(/\s*\(\d+\)$/, '');
    await firstBrand.check();
    await shopper.waitForURL(/brand=/);
    await settled(shopper);
    const filtered = parseInt(await shopper.locator('#result-count').innerText(), 10);
    expect(filtered > 0 && filtered < unfiltered, `brand ${brand}: ${filtered} of ${unfiltered}`);
    const brands = await shopper.locator('.card p.muted').allInnerTexts();
    expect(brands.every((b) => b === brand), `every result is ${brand}`);
    expect(await shopper.getByLabel(label).isChecked(), 'the filter shows as checked');
    return `${brand}: ${filtered} of ${unfiltered}`;
  });

  await step('two products go into the cart', shopper, async () => {
    const cards = shopper.locator('.cards .card');
    for (const i of [0, 1]) {
      const card = cards.nth(i);
      chosen.push({ id: await card.getAttribute('data-product-id'), title: await card.locator('.card-title').innerText() });
      await card.getByRole('button', { name: /Add .* to cart/ }).click();
      await shopper.locator('.message-success').filter({ hasText: chosen[i].title }).waitFor();
    }
    await shopper.locator('#cart-count', { hasText: '2' }).waitFor();
    return chosen.map((c) => `${c.id} ${c.title}`).join('; ');
  });

  const admin = await context();
  await step('the admin (demo account) logs in', admin, () => logIn(admin, ADMIN, DEMO_PASSWORD, 'the demo admin'));

  await step('the admin stocks both products in the admin view', admin, async () => {
    for (const c of chosen) {
      await admin.goto(`${SHOP}/admin/products/${encodeURIComponent(c.id)}`);
      const stock = admin.getByRole('form', { name: 'Stock' });
      await stock.getByLabel('Available').fill('100');
      await stock.getByRole('button', { name: 'Save stock' }).click();
      await stock.locator('.message-success').waitFor();
    }
  });

  await step('a new product with a SKU another has shows the error next to the SKU', admin, async () => {
    const [first] = chosen;
    await admin.goto(`${SHOP}/admin/products/${encodeURIComponent(first.id)}`);
    const sku = await admin.getByRole('form', { name: 'Product' }).getByLabel('SKU').inputValue();
    await admin.goto(`${SHOP}/admin/products/new`);
    const form = admin.getByRole('form', { name: 'Product' });
    await form.getByLabel('SKU').fill(sku);
    await form.getByLabel('Title').fill('A twin');
    await form.getByLabel('Brand').fill('Twin');
    await form.getByLabel('Category').fill('electronics/audio');
    await form.getByLabel('Price').fill('9.99');
    await form.getByRole('button', { name: 'Create product' }).click();
    const error = form.locator('[data-field="sku"] .field-error');
    await error.waitFor({ state: 'visible' });
    const text = await error.innerText();
    expect(text.includes(first.id), `the SKU error names the product holding it, got "${text}"`);
    return `sku: "${text}"`;
  });

  await step('"In stock only" finds a product the admin stocked', shopper, async () => {
    const [first] = chosen;
    await shopper.goto(`${SHOP}/search?q=${encodeURIComponent(first.title)}`);
    await settled(shopper);
    await shopper.getByLabel('In stock only').check();
    await shopper.waitForURL(/in_stock=true/);
    // The order service reports stock in events; search applies them within about a second.
    let titles = [];
    for (let i = 0; i < 20; i += 1) {
      await settled(shopper);
      titles = await shopper.locator('.card-title').allInnerTexts();
      if (titles.includes(first.title)) break;
      await shopper.waitForTimeout(500);
      await shopper.reload();
    }
    expect(titles.includes(first.title), `${first.title} among in-stock results, got ${titles.slice(0, 3).join(', ')}`);
    const notes = await shopper.locator('.card [data-stock]').evaluateAll((els) => els.map((e) => e.dataset.stock));
    expect(!notes.includes('out'), 'no result is out of stock');
    expect(await shopper.getByLabel('In stock only').isChecked(), 'the toggle shows as checked');
    return `${titles.length} in stock for “${first.title}”`;
  });

  await step('the cart shows both products', shopper, async () => {
    await shopper.getByRole('link', { name: /Cart/ }).click();
    await shopper.locator('table.lines tbody tr').nth(1).waitFor();
    const rows = await shopper.locator('table.lines tbody tr').count();
    expect(rows === 2, `2 lines, got ${rows}`);
    return `total ${await shopper.locator('#cart-total').innerText()}`;
  });

  await step('checkout places the order and shows it', shopper, async () => {
    await shopper.getByRole('link', { name: 'Checkout' }).click();
    await shopper.getByLabel(/^Address( \*)?$/).fill('Invalidenstraße 1');
    await shopper.getByLabel('Postal code').fill('10115');
    await shopper.getByLabel('City').fill('Berlin');
    await shopper.getByLabel('Country').selectOption('DE');
    await shopper.getByRole('button', { name: 'Place order' }).click();
    await shopper.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
    await settled(shopper);
    orderId = decodeURIComponent(shopper.url().split('/').pop());
    await shopper.locator('#order-status [data-status]').waitFor();
    const status = await shopper.locator('#order-status [data-status]').getAttribute('data-status');
    const lines = await shopper.locator('table.lines tbody tr').count();
    expect(lines === 2, `the order has 2 lines, got ${lines}`);
    return `order ${orderId}, status ${status}`;
  });

  await step('the order is in the order history', shopper, async () => {
    await shopper.getByRole('link', { name: 'Orders' }).click();
    await shopper.locator(`.order-row[data-order-id="${orderId}"]`).waitFor();
    const status = await shopper.locator(`.order-row[data-order-id="${orderId}"] [data-status]`).getAttribute('data-status');
    // The shopper stays on the order's page while the partner works: it must update by itself.
    await shopper.locator(`.order-row[data-order-id="${orderId}"] a`).click();
    await shopper.locator('#order-status [data-status]').waitFor();
    return `listed as ${status}`;
  });

  const partner = await context({ width: 390, height: 844 }); // the partner is on a phone
  await step('the partner (demo account) logs in', partner, () => logIn(partner, PARTNER, DEMO_PASSWORD, 'the demo partner'));

  await step('the partner sees the order and marks it delivered', partner, async () => {
    await partner.goto(`${SHOP}/partner`);
    // Going on shift offers pending orders at once.
    const shift = partner.getByLabel('On shift');
    // The switch is disabled until the partner's current state has loaded.
    await partner.waitForFunction(() => !document.getElementById('on-shift').disabled);
    if (!(await shift.isChecked())) {
      await shift.check();
      await partner.locator('.message-success, .message-error').first().waitFor();
    }
    const card = partner.locator(`.delivery[data-order-id="${orderId}"]`);
    try {
      await card.waitFor({ timeout: 30000 });
    } catch {
      throw new Error(`order ${orderId} never reached the partner's list (assignment needs the partner on shift with a service area covering 10115)`);
    }
    for (const [step, status] of [['picked-up', 'PICKED_UP'], ['out-for-delivery', 'OUT_FOR_DELIVERY'], ['delivered', 'DELIVERED']]) {
      await card.locator(`button[data-step="${step}"]`).click();
      await partner.locator(`.delivery[data-order-id="${orderId}"][data-status="${status}"]`).waitFor();
    }
  });

  await step('the shopper sees DELIVERED (live, without reloading)', shopper, async () => {
    const before = shopper.url();
    await shopper.locator('#order-status [data-status="DELIVERED"]').waitFor({ timeout: 30000 });
    expect(shopper.url() === before, 'the page did not navigate');
  });

  await step('the e-mails appear in the admin mailbox view', admin, async () => {
    const deadline = Date.now() + 30000;
    let subjects = [];
    while (Date.now() < deadline) {
      await admin.goto(`${SHOP}/admin/mailbox`);
      await admin.locator('h2', { hasText: /E-mails|Sent-log/ }).first().waitFor();
      const mails = admin.locator('.mail').filter({ hasText: email });
      subjects = await mails.locator('.card-title').allInnerTexts();
      if (subjects.length >= 2) break;
      await admin.waitForTimeout(1000);
    }
    expect(subjects.length >= 1, `no e-mail to ${email} in the mailbox`);
    await admin.locator('.mail').filter({ hasText: email }).first().locator('summary').click();
    return `${subjects.length} e-mails to the shopper: ${subjects.join(' | ')}`;
  });

  await step('the shop fits a phone screen', shopper, async () => {
    await shopper.setViewportSize({ width: 360, height: 780 });
    await shopper.goto(`${SHOP}/search?q=headphones`);
    await shopper.locator('.cards .card').first().waitFor();
    const overflow = await shopper.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  });

  await step('an expired session goes back to the login page with a message', shopper, async () => {
    await shopper.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('storefront.session'));
      localStorage.setItem('storefront.session', JSON.stringify({ ...s, access_token: 'expired', refresh_token: 'spent' }));
    });
    await shopper.goto(`${SHOP}/orders`);
    await shopper.waitForURL(/\/login\?next=%2Forders/);
    await settled(shopper);
    const text = await shopper.locator('.message:not([hidden])').first().innerText();
    expect(/session expired/i.test(text), `the login page says why, got "${text}"`);
  });

  expect(offsite.length === 0, `requests left the shop: ${offsite.slice(0, 3).join(', ')}`);
} catch (error) {
  exitCode = 1;
  if (!(error instanceof StepFailed)) console.error(`FAIL ${error.message}`);
} finally {
  await browser.close().catch(() => {});
}

const passed = results.filter((r) => r.ok).length;
console.log(`\n${passed} of ${results.length} steps passed${exitCode ? ' — the scenario FAILED' : ''}; screenshots in ${ARTIFACTS}`);
process.exit(exitCode);
