// Attachments: files stored content-addressed in the bucket (`blobs/{sha256}`), uploaded and
// downloaded straight to and from object storage on presigned URLs the server hands out.
// Written in JavaScript rather than wasm: it works on `Blob`s and needs upload progress.
//
// A token is `sha256:{hex}`. Every attachment put or got on this device is kept in Cache
// Storage, so it opens offline afterwards. An attachment put while the server or the bucket
// cannot be reached waits there too, marked as queued, and is uploaded when the store is
// back online (see `flush`).

import { tidemarkError } from './protocol.js';

const TOKEN_PREFIX = 'sha256:';
/** How often a transfer is tried again after a network failure before it gives up. */
const TRIES = 4;
/** Headers a browser sets itself and refuses from scripts. */
const BROWSER_HEADERS = new Set(['content-length', 'host']);

/** Codes of failures that mean "not now" rather than "no": the upload waits on this device. */
const WAIT_CODES = new Set(['sync.unreachable', 'sync.not_connected', 'sync.paused', 'attachment.upload_failed']);
const waitsForNetwork = (error) => WAIT_CODES.has(error?.code) || /^http\.5\d\d$/.test(error?.code ?? '');

/** Partial downloads, resumed with a `Range` request by the next `get` of the same token. */
const partials = new Map();
/** ETags of the parts this page uploaded, by blob: some stores do not list them, and
 * completing a multipart upload needs every part's. */
const partEtags = new Map();

export class Attachments {
  #backend;
  #cacheName;
  /** Whether uploads may be queued (true until the first flush has looked). */
  #queued = true;
  #flushing = null;

  constructor(backend, storeName, sync) {
    this.#backend = backend;
    this.#cacheName = `tidemark-attachments:${storeName}`;
    // Queued uploads go up once sync reaches the server (first after open, then after
    // every time it was offline and a put was queued).
    sync.on((event) => {
      if (event.type === 'status' && event.status.online && this.#queued) this.flush().catch(() => {});
    });
  }

  /**
   * Stores `blob` on this device and uploads it; resolves to its token (`sha256:…`) once it
   * is in the bucket, or once it is queued when the server or the bucket cannot be reached
   * (offline, not connected yet): it is then uploaded when the store is back online.
   * `onProgress(sent, total)` reports bytes; `signal` cancels (rejects with
   * `attachment.cancelled`, nothing is queued). A cancelled or failed upload of a large file
   * resumes where it stopped.
   */
  async put(blob, { onProgress, signal } = {}) {
    const sha256 = await digest(blob);
    await this.#cache(sha256, blob);
    try {
      await this.#upload(sha256, blob, onProgress, signal);
    } catch (error) {
      if (signal?.aborted || !waitsForNetwork(error)) throw error;
      await (await this.#open())?.put(queueKey(sha256), new Response(''));
      this.#queued = true;
    }
    return TOKEN_PREFIX + sha256;
  }

  /** Tokens of the attachments put on this device that are not uploaded yet. */
  async queued() {
    const cache = await this.#open();
    const keys = (await cache?.keys()) ?? [];
    const prefix = queueKey('');
    return keys.filter((r) => r.url.startsWith(prefix)).map((r) => TOKEN_PREFIX + r.url.slice(prefix.length));
  }

  /**
   * Uploads the queued attachments, one at a time. The store calls it by itself when it
   * opens and whenever sync finds the server again; resolves to `{ uploaded, waiting }`
   * (tokens). An upload refused for good (e.g. `blob.too_large`) stays queued, and its
   * error is in `failed`.
   */
  flush() {
    this.#flushing ??= this.#flush().finally(() => { this.#flushing = null; });
    return this.#flushing;
  }

  async #flush() {
    const uploaded = [];
    const failed = [];
    const cache = await this.#open();
    const waiting = await this.queued();
    for (const token of [...waiting]) {
      const sha256 = token.slice(TOKEN_PREFIX.length);
      const kept = await cache.match(cacheKey(sha256));
      try {
        if (!kept) throw tidemarkError({ code: 'attachment.missing', message: `${token} is no longer on this device` });
        await this.#upload(sha256, await kept.blob());
      } catch (error) {
        if (waitsForNetwork(error)) break; // still offline: the rest waits too
        failed.push({ token, code: error.code, message: error.message });
        continue;
      }
      await cache.delete(queueKey(sha256));
      waiting.splice(waiting.indexOf(token), 1);
      uploaded.push(token);
    }
    this.#queued = waiting.length > 0;
    return { uploaded, waiting, failed };
  }

  async #upload(sha256, blob, onProgress, signal) {
    const access = await this.#backend.call('syncAccess', []);
    const start = await api(access, 'POST', `/v1/spaces/${access.space}/blobs`, {
      device: access.device, sha256, size: blob.size,
    }, signal);
    const report = (sent) => onProgress?.(Math.min(sent, blob.size), blob.size);
    if (start.status === 'exists') {
      report(blob.size);
      return;
    }
    const etags = partEtags.get(sha256) ?? new Map();
    partEtags.set(sha256, etags);
    if (start.status === 'upload') {
      await upload(start.put, blob, signal, report);
    } else {
      // Resume: parts in the bucket, or sent from this page before, are not sent again.
      const sent = (part) => part.done || etags.has(part.number);
      let bytes = start.parts.filter(sent).reduce((sum, p) => sum + p.size, 0);
      report(bytes);
      for (const part of start.parts.filter((p) => !sent(p))) {
        const offset = (part.number - 1) * start.partSize;
        const etag = await upload(part.put, blob.slice(offset, offset + part.size), signal,
          (n) => report(bytes + n));
        bytes += part.size;
        if (etag) etags.set(part.number, etag);
      }
    }
    const parts = [...etags].map(([number, etag]) => ({ number, etag }));
    await api(access, 'POST', start.complete, { device: access.device, parts }, signal);
    partEtags.delete(sha256);
    report(blob.size);
  }

  /**
   * The attachment as a `Blob`: from this device when it has it, else downloaded (checked
   * against its SHA-256, kept for offline use). `onProgress(received, total)` reports bytes;
   * `signal` cancels, and the next `get` resumes from what was received.
   */
  async get(token, { onProgress, signal } = {}) {
    const sha256 = parseToken(token);
    const cache = await this.#open();
    const cached = await cache?.match(cacheKey(sha256));
    if (cached) {
      const blob = await cached.blob();
      onProgress?.(blob.size, blob.size);
      return blob;
    }
    const access = await this.#backend.call('syncAccess', []);
    const { url, size } = await api(access, 'GET', `/v1/spaces/${access.space}/blobs/${sha256}`, undefined, signal);
    const chunks = partials.get(sha256) ?? [];
    partials.set(sha256, chunks);
    let received = chunks.reduce((sum, c) => sum + c.byteLength, 0);
    for (let attempt = 1; received < size; attempt++) {
      try {
        received = await download(url, received, chunks, signal, (n) => onProgress?.(n, size));
      } catch (error) {
        if (signal?.aborted || attempt >= TRIES) throw asTidemarkError(error, 'attachment.download_failed');
        await pause(250 * attempt);
      }
    }
    partials.delete(sha256);
    const blob = new Blob(chunks);
    if ((await digest(blob)) !== sha256) {
      throw tidemarkError({ code: 'attachment.corrupt', message: `attachment ${token} does not match its SHA-256` });
    }
    await this.#cache(sha256, blob);
    return blob;
  }

  async #open() {
    return globalThis.caches?.open(this.#cacheName);
  }

  async #cache(sha256, blob) {
    const cache = await this.#open();
    await cache?.put(cacheKey(sha256), new Response(blob));
  }
}

function parseToken(token) {
  const sha256 = typeof token === 'string' && token.startsWith(TOKEN_PREFIX) ? token.slice(TOKEN_PREFIX.length) : '';
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    throw tidemarkError({ code: 'store.bad_argument', message: `not an attachment token: ${token}` });
  }
  return sha256;
}

function cacheKey(sha256) {
  return new URL(`/.tidemark/attachments/${sha256}`, globalThis.location.href).href;
}

/** The mark of an attachment waiting for its upload (an empty entry). */
function queueKey(sha256) {
  return new URL(`/.tidemark/attachments/queued/${sha256}`, globalThis.location.href).href;
}

async function digest(blob) {
  const hash = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function asTidemarkError(error, code) {
  if (error?.name === 'TidemarkError') return error;
  if (error?.name === 'AbortError') return tidemarkError({ code: 'attachment.cancelled', message: 'cancelled' });
  return tidemarkError({ code, message: String(error?.message ?? error) });
}

/** A call to the server's API; `path` may be a full URL (the server's `complete` links). */
async function api(access, method, path, body, signal) {
  const url = new URL(path, access.server).href;
  let response;
  try {
    response = await fetch(url, {
      method,
      signal,
      headers: { authorization: `Bearer ${access.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (error) {
    throw asTidemarkError(error, 'sync.unreachable');
  }
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw tidemarkError({ code: json.code ?? `http.${response.status}`, message: json.message ?? `HTTP ${response.status}` });
  }
  return json;
}

/** PUTs `body` on a presigned request, with its signed headers as given; resolves to the
 * answer's ETag. Progress needs XMLHttpRequest, which pages have and service workers lack. */
async function upload(presigned, body, signal, onBytes) {
  const headers = (presigned.headers ?? []).filter(([name]) => !BROWSER_HEADERS.has(name.toLowerCase()));
  for (let attempt = 1; ; attempt++) {
    try {
      if (typeof XMLHttpRequest === 'undefined') {
        const response = await fetch(presigned.url, { method: presigned.method, headers, body, signal });
        if (!response.ok) throw tidemarkError({ code: 'attachment.upload_refused', message: `object storage answered ${response.status}` });
        onBytes(body.size);
        return response.headers.get('etag');
      }
      return await xhrUpload(presigned, headers, body, signal, onBytes);
    } catch (error) {
      if (signal?.aborted || error?.code === 'attachment.upload_refused' || attempt >= TRIES) {
        throw asTidemarkError(error, 'attachment.upload_failed');
      }
      await pause(250 * attempt);
    }
  }
}

function xhrUpload(presigned, headers, body, signal, onBytes) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(presigned.method, presigned.url);
    for (const [name, value] of headers) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onBytes(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.getResponseHeader('etag'));
      else reject(tidemarkError({ code: 'attachment.upload_refused', message: `object storage answered ${xhr.status}` }));
    };
    xhr.onerror = () => reject(new Error('network error'));
    xhr.onabort = () => reject(new DOMException('cancelled', 'AbortError'));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    if (signal?.aborted) xhr.abort();
    else xhr.send(body);
  });
}

/** Reads `url` from byte `from` on (a Range request), appending to `chunks`; resolves to
 * the bytes received in all. */
async function download(url, from, chunks, signal, onBytes) {
  const response = await fetch(url, {
    signal,
    cache: 'no-store',
    headers: from > 0 ? { range: `bytes=${from}-` } : {},
  });
  if (from > 0 && response.status !== 206) {
    // The store ignored the range: start over.
    chunks.length = 0;
    from = 0;
  }
  if (!response.ok) throw new Error(`object storage answered ${response.status}`);
  const reader = response.body.getReader();
  let received = from;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return received;
    chunks.push(value);
    received += value.byteLength;
    onBytes(received);
  }
}
