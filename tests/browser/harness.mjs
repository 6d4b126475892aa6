// Shared by the browser tests: a static site on 127.0.0.1 serving the test pages and the
// installed `tidemark` package, and Debian's Chromium driven by playwright-core.

import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = fileURLToPath(new URL('.', import.meta.url));
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};
/** URL prefixes and the folders they serve. */
const ROOTS = [
  ['/pkg/', join(here, 'node_modules/tidemark/')],
  ['/', join(here, 'site/')],
];

/** Serves the site on a free loopback port; resolves to `{ url, close }`. */
export async function startSite(extraRoots = []) {
  const roots = [...extraRoots, ...ROOTS];
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://x').pathname);
    const [prefix, dir] = roots.find(([p]) => path.startsWith(p));
    const relative = normalize(path.slice(prefix.length) || 'index.html');
    if (relative.startsWith('..')) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(join(dir, relative));
      response.writeHead(200, {
        'content-type': TYPES[extname(relative)] ?? 'application/octet-stream',
        'cache-control': 'no-store',
      });
      response.end(body);
    } catch {
      response.writeHead(404).end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Debian's Chromium, and the flags known to work headless on these machines. */
export const CHROMIUM_PATH = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Headless Debian Chromium. */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

/** Opens `path` in a new page of `context` and waits for its `window.ready` promise. */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`[page error] ${error.message}`));
  await page.goto(url);
  await page.evaluate(() => window.ready);
  return page;
}

/**
 * Evaluates `fn(arg)` in the page until it gives something truthy, and returns that.
 * (Playwright's `waitForFunction` does not await an async predicate.) An evaluation that
 * throws, as one does while the page reloads, counts as not yet; the last error is in the
 * timeout's message.
 */
export async function until(page, fn, arg, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    const value = await page.evaluate(fn, arg).catch((error) => {
      lastError = error;
      return null;
    });
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${fn}${lastError ? ` (last error: ${lastError.message})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The real `tidemark-server` binary: `TIDEMARK_SERVER_BIN`, else the workspace's debug build. */
const SERVER_BIN = process.env.TIDEMARK_SERVER_BIN ?? join(here, '../../target/debug/tidemark-server');
const ADMIN_SECRET = 'browser-tests-admin-secret';

/**
 * Starts the real server on a free loopback port with a fresh data folder and its embedded
 * object store, serving the test site and the installed package (under `/pkg/`: `/tidemark/`
 * is the embedded store's bucket) as its app, so pages, API and store share one origin.
 * Resolves to `{ url, dataDir, invite(role), halt, resume, stop }`: `halt` stops the process
 * and keeps its data, `resume` starts it again on the same port and data. `appDir` serves
 * another app instead (the demo, assembled by `cargo xtask demo`).
 */
export async function startServer({ appDir } = {}) {
  const work = await mkdtemp(join(tmpdir(), 'tidemark-browser-'));
  let app = appDir;
  if (!app) {
    app = join(work, 'app');
    await cp(join(here, 'site'), app, { recursive: true });
    await cp(join(here, 'node_modules/tidemark'), join(app, 'pkg'), { recursive: true, dereference: true });
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dataDir = join(work, 'data');
  const args = [
    '--listen', `127.0.0.1:${port}`,
    '--data-dir', dataDir,
    '--admin-secret', ADMIN_SECRET,
    '--auth-rate-per-minute', '100000',
    '--app-dir', app,
  ];
  let running = await launchServer(url, args);
  const admin = await post(`${url}/v1/session`, { adminSecret: ADMIN_SECRET });
  const halt = async () => {
    await running?.stop();
    running = null;
  };
  return {
    url,
    /** The server's data folder (registry, embedded objects). */
    dataDir,
    /** A fresh invite code to the default space. */
    invite: async (role = 'writer') =>
      (await post(`${url}/v1/spaces/default/invites`, { role }, admin.token)).code,
    halt,
    resume: async () => {
      running ??= await launchServer(url, args);
    },
    stop: async () => {
      await halt();
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** Runs the server binary with `args` and waits until `url` answers its health check. */
async function launchServer(url, args) {
  const child = spawn(SERVER_BIN, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (let tries = 0; ; tries++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // Not listening yet.
    }
    if (child.exitCode !== null || tries > 300) throw new Error(`${SERVER_BIN} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    stop: async () => {
      child.kill();
      await exited;
    },
  };
}

async function post(url, body, token) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

function freePort() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}
