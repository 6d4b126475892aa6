// The demo's service worker: hosts the Tidemark store for every tab (serveStore), and keeps
// the app shell in the Cache API so the app opens with no network once it has been opened.

import { serveStore } from './pkg/sw.js';

serveStore();

const SHELL_CACHE = 'tidemark-diner-shell';
/** Everything the app needs to start, relative to this worker. */
const SHELL = [
  './', 'index.html', 'style.css', 'app.js', 'manifest.webmanifest', 'icon.svg',
  'views/counter.js', 'views/kitchen.js', 'views/menu.js', 'views/devices.js', 'views/ui.js',
  'vendor/uqr.mjs',
  'pkg/index.js', 'pkg/store.js', 'pkg/protocol.js', 'pkg/attachments.js',
  'pkg/tidemark_wasm.js', 'pkg/tidemark_wasm_bg.wasm',
].map((path) => new URL(path, self.location.href).href);

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)));
  // A new version takes over at once: the store's data is in IndexedDB, not in the worker.
  self.skipWaiting();
});

// Network first (a new deploy shows up on the next load), the cached shell when offline or
// when the server is down. The API (/v1/) and the bucket are never cached here.
self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  const shellUrl = request.mode === 'navigate' ? new URL('./', self.location.href).href : url.href.split('?')[0];
  if (!SHELL.includes(shellUrl)) return;
  event.respondWith((async () => {
    const cache = await caches.open(SHELL_CACHE);
    try {
      const response = await fetch(request);
      if (response.ok) await cache.put(shellUrl, response.clone());
      return response;
    } catch (error) {
      const kept = await cache.match(shellUrl);
      if (kept) return kept;
      throw error;
    }
  })());
});
