// The README's TypeScript example: type-checked against the package's published types with
// `tsc --noEmit --strict`, then compiled and run in Chromium against the built package.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startSite } from './harness.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const readme = readFileSync(join(here, '../../README.md'), 'utf8');

/** The ```ts block that follows the marker comment in the README. */
function example() {
  const marker = readme.indexOf('<!-- typescript example: run by tests/browser -->');
  assert.ok(marker >= 0, 'the README marks its TypeScript example');
  const match = /```ts\n([\s\S]*?)```/.exec(readme.slice(marker));
  assert.ok(match, 'a ```ts block follows the marker');
  return match[1];
}

test("the README's TypeScript example type-checks and runs", async () => {
  // Inside this folder, so `import ... from 'tidemark'` resolves to node_modules/tidemark,
  // the installed package, exactly as in an app.
  const dir = join(here, '.example');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  writeFileSync(join(dir, 'example.ts'), example());
  const tsc = join(here, 'node_modules/.bin/tsc');
  const options = [
    '--strict', '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler',
    '--lib', 'es2022,dom', '--pretty', 'false',
  ];
  execFileSync(tsc, ['--noEmit', ...options, join(dir, 'example.ts')], { stdio: 'inherit' });
  execFileSync(tsc, [...options, '--outDir', dir, join(dir, 'example.ts')], { stdio: 'inherit' });

  const site = await startSite([['/example/', `${dir}/`]]);
  const browser = await launchBrowser();
  try {
    const page = await (await browser.newContext()).newPage();
    const logged = [];
    page.on('console', (message) => logged.push(message.text()));
    page.on('pageerror', (error) => logged.push(`error: ${error.message}`));
    await page.goto(`${site.url}/example.html`);
    await page.evaluate(() => window.ready);
    const lines = logged.filter((line) => !line.includes('Failed to load resource'));
    assert.deepEqual(lines, ['1 open order(s)', '0 open order(s)']);
  } finally {
    await browser.close();
    await site.close();
  }
});
