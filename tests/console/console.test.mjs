// The release console in a real browser: Debian's Chromium, headless, driven by Playwright
// (playwright-core, pointed at the system browser; nothing is downloaded). Every step is done
// with the keyboard alone, as a user who cannot use a mouse would: Tab to the control, type,
// Enter. Runs `baleen serve --demo` (its seeded fleet) and writes a screenshot of each page to
// $BALEEN_SCREENSHOTS (docs/console when scripts/console-screenshots asks); without it, to a
// temporary directory removed at the end.
//
// Run by scripts/test through scripts/console-test: BALEEN_BIN names the server binary.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BALEEN = process.env.BALEEN_BIN;
const CHROMIUM = process.env.BALEEN_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.BALEEN_SCREENSHOTS || mkdtempSync(join(tmpdir(), 'baleen-console-'));

/** Starts the demo server; resolves with its JSON banner and the process. */
async function startDemo() {
  assert.ok(BALEEN, 'BALEEN_BIN names the baleen binary');
  const child = spawn(
    BALEEN,
    ['serve', '--demo', '--json', '--listen', '127.0.0.1:0', '--ramp-interval-secs', '1'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout });
  const banner = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`baleen exited with ${code}`)));
    lines.once('line', (line) => resolve(JSON.parse(line)));
  });
  return { child, banner };
}

/** Presses Tab until the focused element matches `selector` (the keyboard's way there). */
async function tabTo(page, selector, max = 400) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const there = await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector);
    if (there) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** Tabs to an input, replaces its text with `text`. */
async function typeInto(page, selector, text) {
  await tabTo(page, selector);
  await page.keyboard.press('Control+A');
  await page.keyboard.type(text);
}

/** Submits the focused form control with Enter and waits for the page it leads to. */
async function enterAndWait(page, url) {
  await Promise.all([page.waitForURL(url), page.keyboard.press('Enter')]);
}

/** A package's state as the channel page shows it. */
async function shown(page) {
  return page.locator('#checkout dl.state').innerText();
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

test('the console in Chromium, by keyboard alone', async (t) => {
  const { child, banner } = await startDemo();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const base = banner.listening;
  const channelUrl = `${base}/console/apps/demo/channels/production`;
  try {
    await t.test('the printed console address leads to sign-in; a token signs in', async () => {
      assert.equal(banner.console, `${base}/console`);
      await page.goto(banner.console);
      assert.equal(new URL(page.url()).pathname, '/console/sign-in');
      await shot(page, 'sign-in');
      // The token field has the focus on arrival.
      assert.equal(await page.evaluate(() => document.activeElement.id), 'token');
      await page.keyboard.type('baleen_not-a-token');
      await enterAndWait(page, /sign-in/);
      assert.match(await page.locator('.problem').innerText(), /not known here/);
      await page.keyboard.type(banner.admin_token);
      await enterAndWait(page, /\/console\/apps$/);
      assert.match(await page.locator('.who').innerText(), /demo-admin/);
      await shot(page, 'apps');
    });

    await t.test("the seeded fleet's figures, with intervals and charts", async () => {
      await tabTo(page, 'a[href="/console/apps/demo/channels/production"]');
      await enterAndWait(page, channelUrl);
      // The demo reports its fleet just after it starts: wait for all 600 devices.
      for (let i = 0; i < 60; i++) {
        const text = await page.locator('#checkout table.figures').innerText().catch(() => '');
        if (/1\.0\.0\s+stable\s+400\s+400/.test(text) && /1\.1\.0\s+candidate\s+200\s+200/.test(text)) break;
        await page.waitForTimeout(500);
        await page.reload();
      }
      const rows = await page.locator('#checkout table.figures tbody tr').allInnerTexts();
      const candidate = rows.find((r) => r.startsWith('1.1.0')).split('\t');
      const stable = rows.find((r) => r.startsWith('1.0.0')).split('\t');
      // 200 candidate devices of which 5 failed; 400 stable devices of which 2 failed.
      assert.deepEqual(candidate.slice(0, 7), ['1.1.0', 'candidate', '200', '200', '5', '5', '2.5 %']);
      assert.deepEqual(stable.slice(0, 7), ['1.0.0', 'stable', '400', '400', '2', '2', '0.50 %']);
      assert.match(candidate[7], /^1\.\d % – 5\.\d %$/, 'a Wilson interval around 2.5 %');
      // Failed boots with intervals, opens under 1 s and offline, adoption by day.
      assert.equal(await page.locator('#checkout svg.chart').count(), 3);
      assert.match(await page.locator('#checkout table.adoption').innerText(), /1\.1\.0\s+\S+\s+200\s+0 d\s+0 d/);
      assert.match(await shown(page), /1\.1\.0 to 50 % of devices/);
      await shot(page, 'channel');
    });

    await t.test('every control of the page is reachable with Tab', async () => {
      await page.reload();
      const controls = await page.evaluate(() =>
        [...document.querySelectorAll('main a, main button, main input:not([type=hidden]), main select')]
          .filter((e) => e.offsetParent !== null)
          .map((e, i) => { e.dataset.k = String(i); return String(i); }));
      const reached = new Set();
      for (let i = 0; i < 600 && reached.size < controls.length; i++) {
        await page.keyboard.press('Tab');
        const k = await page.evaluate(() => document.activeElement?.dataset?.k ?? null);
        if (k !== null) reached.add(k);
      }
      assert.deepEqual([...reached].sort(), [...controls].sort());
    });

    await t.test('a ramped rollout starts and holds on a small sample', async () => {
      await page.goto(channelUrl);
      await typeInto(page, '#checkout-ramp-steps', '60, 100');
      await typeInto(page, '#checkout-ramp-devices', '1000');
      await typeInto(page, '#checkout-ramp-secs', '0');
      await typeInto(page, '#checkout-ramp-margin', '6');
      await typeInto(page, '#checkout-ramp-reason', 'ramp from the console');
      await typeInto(page, '#checkout-ramp-confirm', 'production');
      await tabTo(page, 'form:has(#checkout-ramp-steps) button');
      await enterAndWait(page, /done=ramp/);
      assert.match(await page.locator('.done').innerText(), /Ramp started: checkout/);
      // The ramp moves the share to its first step above the current one at once.
      assert.match(await shown(page), /1\.1\.0 to 60 % of devices/);
      // The server evaluates every second: 200 devices are fewer than the step needs.
      let verdict = '';
      for (let i = 0; i < 30 && !/^Last evaluation: hold/.test(verdict); i++) {
        await page.waitForTimeout(500);
        await page.reload();
        verdict = await page.locator('#checkout .verdict').innerText().catch(() => '');
      }
      assert.match(verdict, /^Last evaluation: hold/);
      assert.match(await shown(page), /1\.1\.0 to 60 % of devices/, 'the share held');
      await shot(page, 'ramp-holding');
    });

    await t.test('a forged request without the CSRF secret is refused', async () => {
      // The browser's own cookies, but no form secret: what another page's script could send.
      const forged = await context.request.post(
        `${base}/console/apps/demo/channels/production/packages/checkout/actions`,
        { form: { action: 'pause' }, maxRedirects: 0 },
      );
      assert.equal(forged.status(), 403);
      await page.reload();
      assert.doesNotMatch(await shown(page), /paused/);
    });

    await t.test('roll back on a protected channel, then undo', async () => {
      await typeInto(page, '#checkout-rollback-reason', 'blank page on Android 9');
      await typeInto(page, '#checkout-rollback-confirm', 'production');
      await tabTo(page, 'form:has(#checkout-rollback-reason) button');
      await enterAndWait(page, /done=rollback/);
      assert.match(await page.locator('.done').innerText(), /Rolled back: checkout/);
      assert.match(await shown(page), /Candidate\s+none/);
      const timeline = await page.locator('#checkout ol.timeline li').first().innerText();
      assert.match(timeline, /rollback 1\.1\.0 → 1\.0\.0 by demo-admin: “blank page on Android 9”/);

      await typeInto(page, '#checkout-undo-reason', 'rolled back the wrong package');
      await typeInto(page, '#checkout-undo-confirm', 'production');
      await tabTo(page, 'form:has(#checkout-undo-reason) button');
      await enterAndWait(page, /done=undo/);
      assert.match(await shown(page), /1\.1\.0 to 60 % of devices/, 'the rollout is back whole');
      await shot(page, 'after-undo');
    });

    await t.test('a release and a comparison', async () => {
      await tabTo(page, '#checkout dl.state a[href$="/releases/1.1.0"]');
      await enterAndWait(page, /\/releases\/1\.1\.0$/);
      assert.match(await page.locator('h1').innerText(), /checkout 1\.1\.0/);
      assert.match(await page.locator('table.files').innerText(), /index\.html/);
      await shot(page, 'release');
      await tabTo(page, 'form[action$="/compare"] button');
      await enterAndWait(page, /compare\?/);
      assert.match(await page.locator('table.summary').innerText(), /Changed\s+\d+/);
      await shot(page, 'compare');
    });

    await t.test('sign out ends the session', async () => {
      await tabTo(page, 'form[action="/console/sign-out"] button');
      await enterAndWait(page, /sign-in/);
      await page.goto(`${base}/console/apps`);
      assert.equal(new URL(page.url()).pathname, '/console/sign-in');
    });
  } finally {
    await browser.close();
    child.kill('SIGTERM');
    if (!process.env.BALEEN_SCREENSHOTS) {
      rmSync(SHOTS, { recursive: true, force: true });
    }
  }
});
