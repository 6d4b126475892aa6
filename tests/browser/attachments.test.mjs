// Attachments through the real server and its embedded object store: a 20 MiB file (a
// multipart upload) is cancelled mid-way, resumes where it stopped, and another device
// downloads it intact, resuming a cancelled download with a Range request.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, startServer } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function connectedPage(name) {
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}/page.html`);
  const invite = await server.invite();
  await page.evaluate(async ({ invite, name }) => {
    window.store = await tm.openStore({ name: 'files' });
    await window.store.sync.connect({ server: location.origin, invite, name });
  }, { invite, name });
  return { context, page };
}

test('a 20 MiB attachment: cancelled, resumed, downloaded intact', { timeout: 120_000 }, async () => {
  const a = await connectedPage('uploader');
  const upload = await a.page.evaluate(async () => {
    // Random bytes from a fixed seed, so both sides can check them.
    const bytes = new Uint8Array(20 * 1024 * 1024);
    let x = 0x9e3779b9;
    for (let i = 0; i < bytes.length; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      bytes[i] = x & 0xff;
    }
    const file = new Blob([bytes], { type: 'application/octet-stream' });
    window.file = file;
    const hash = await crypto.subtle.digest('SHA-256', bytes);
    const expected = 'sha256:' + [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, '0')).join('');

    // Cancel once the first 8 MiB part is in.
    const controller = new AbortController();
    let cancelledAt = 0;
    const first = await window.store.attachments.put(file, {
      signal: controller.signal,
      onProgress: (sent) => {
        if (sent > 9 * 1024 * 1024 && !controller.signal.aborted) {
          cancelledAt = sent;
          controller.abort();
        }
      },
    }).then(() => 'finished', (error) => error.code);

    // Again: the parts already in the bucket are not sent again.
    const progress = [];
    const token = await window.store.attachments.put(file, { onProgress: (sent) => progress.push(sent) });
    return { first, cancelledAt, resumedFrom: progress[0], last: progress.at(-1), token, expected };
  });
  assert.equal(upload.first, 'attachment.cancelled');
  assert.ok(upload.cancelledAt > 8 * 1024 * 1024);
  assert.ok(upload.resumedFrom >= 8 * 1024 * 1024, `resumed from ${upload.resumedFrom}`);
  assert.equal(upload.last, 20 * 1024 * 1024);
  assert.equal(upload.token, upload.expected);

  const b = await connectedPage('viewer');
  const download = await b.page.evaluate(async (token) => {
    const controller = new AbortController();
    const first = await window.store.attachments.get(token, {
      signal: controller.signal,
      onProgress: (received) => { if (received > 4 * 1024 * 1024) controller.abort(); },
    }).then(() => 'finished', (error) => error.code);
    const progress = [];
    const blob = await window.store.attachments.get(token, { onProgress: (n) => progress.push(n) });
    const hash = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    const sha = 'sha256:' + [...new Uint8Array(hash)].map((x) => x.toString(16).padStart(2, '0')).join('');
    return { first, resumedFrom: progress[0], size: blob.size, sha };
  }, upload.token);
  assert.equal(download.first, 'attachment.cancelled');
  assert.ok(download.resumedFrom > 4 * 1024 * 1024, `download resumed from ${download.resumedFrom}`);
  assert.equal(download.size, 20 * 1024 * 1024);
  assert.equal(download.sha, upload.token);

  // Kept on the device: it opens offline.
  await b.context.setOffline(true);
  const offline = await b.page.evaluate((token) => window.store.attachments.get(token).then((blob) => blob.size), upload.token);
  assert.equal(offline, 20 * 1024 * 1024);

  const bad = await b.page.evaluate(() => window.store.attachments.get('not-a-token').then(() => 'ok', (e) => e.code));
  assert.equal(bad, 'store.bad_argument');
  await a.context.close();
  await b.context.close();
});

test('an attachment put offline is queued, and uploaded once sync reaches the server', { timeout: 60_000 }, async () => {
  const a = await connectedPage('offline-uploader');
  await a.context.setOffline(true);
  const put = await a.page.evaluate(async () => {
    const file = new Blob([crypto.getRandomValues(new Uint8Array(60_000)), 'menu photo']);
    const token = await window.store.attachments.put(file);
    return { token, queued: await window.store.attachments.queued() };
  });
  assert.match(put.token, /^sha256:[0-9a-f]{64}$/);
  assert.deepEqual(put.queued, [put.token]);

  // Back online: sync finds the server, and the queued upload goes up by itself.
  await a.context.setOffline(false);
  const deadline = Date.now() + 30_000;
  while ((await a.page.evaluate(() => window.store.attachments.queued())).length > 0) {
    assert.ok(Date.now() < deadline, 'the queued upload did not go up');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const b = await connectedPage('offline-viewer');
  const size = await b.page.evaluate((token) => window.store.attachments.get(token).then((blob) => blob.size), put.token);
  assert.equal(size, 60_000 + 'menu photo'.length);
  await a.context.close();
  await b.context.close();
});
