// The npm package's figures in headless Chromium (`npm run figures`, or `cargo xtask
// browser-figures` to build and install the package first): the download size of the wasm and
// its JavaScript, durable batched writes per second, and the cold start of a store holding
// 100,000 documents, with the store in the page and in the service worker. Prints tables; it
// asserts nothing about time. Not a test: `npm test` does not run it.
//
// The figures run in an on-disk Chromium profile (a persistent context in a temporary folder):
// the browser contexts the tests use are off the record, and Chromium keeps their IndexedDB in
// memory. The last table repeats the main figures in such a context for comparison.

import { cpus, freemem, loadavg, release, tmpdir, totalmem, type } from 'node:os';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, launchBrowser, openPage, startSite } from './harness.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const DOCS = 100_000;
/** Writes issued in one turn and awaited together: one IndexedDB commit each in page mode. */
const BATCH_SIZES = [100, 1_000, 10_000];
/** The batch size of the store the cold starts open. */
const MAIN_BATCH = 1_000;
/** Service-worker writes are slower (see its table), so fewer of them. */
const WORKER_DOCS = 10_000;
const COLD_STARTS = 3;
/** The first query of a cold start, and the document read after it. */
const QUERY = { where: { table: 7 } };
const PROBE_ID = 'd4242';
/** The wasm and its generated JavaScript glue; the package's other .js files are hand-written. */
const BINDINGS = ['tidemark_wasm_bg.wasm', 'tidemark_wasm.js'];
/** `tidemark/replica`'s own wasm and glue, listed apart: a store never loads them. */
const REPLICA_BINDINGS = ['tidemark_replica_bg.wasm', 'tidemark_replica.js'];
const sites = [];
const profile = await mkdtemp(join(tmpdir(), 'tidemark-figures-'));
let disk;
let offTheRecord;
try {
  disk = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
  });
  offTheRecord = await launchBrowser();
  await machine(disk.browser() ?? offTheRecord);
  await sizes();
  const main = await pageWrites(disk);
  await pageColdStarts(disk, main.site);
  await workerColdStarts(disk, main.site);
  await workerWrites(disk);
  await comparison(offTheRecord);
} finally {
  await disk?.close();
  await offTheRecord?.close();
  for (const site of sites) await site.close();
  await rm(profile, { recursive: true, force: true });
}

async function machine(browser) {
  const cpu = cpus();
  section('Machine');
  console.log(`${type()} ${release()}, ${cpu.length} CPU(s) (${cpu[0]?.model ?? 'unknown'}), ` +
    `${gib(totalmem())} GiB memory (${gib(freemem())} GiB free), load average ` +
    `${loadavg().map((load) => load.toFixed(2)).join(' ')}, Node.js ${process.version}`);
  console.log(`Chromium ${browser.version()} headless (playwright-core), ${DOCS.toLocaleString('en-US')} ` +
    'documents like { id: "d42", table: 2, status: "open", items: ["tea", "cake"], total: 12.5 }');
  console.log('Times are performance.now() in the page (0.1 ms resolution there), in milliseconds.');
}

async function sizes() {
  section('Download size (node_modules/tidemark; gzip -9, node:zlib)');
  const dir = join(here, 'node_modules/tidemark');
  const generated = [...BINDINGS, ...REPLICA_BINDINGS];
  const handWritten = (await readdir(dir)).filter((f) => f.endsWith('.js') && !generated.includes(f)).sort();
  const rows = [];
  const bindings = ['.wasm + JS glue', 0, 0];
  const replica = ['replica .wasm + JS glue', 0, 0];
  const total = ['total', 0, 0];
  for (const file of [...BINDINGS, ...handWritten, ...REPLICA_BINDINGS]) {
    const bytes = await readFile(join(dir, file));
    const row = [file, bytes.length, gzipSync(bytes, { level: 9 }).length];
    rows.push(row);
    const sums = BINDINGS.includes(file) ? [bindings, total] : REPLICA_BINDINGS.includes(file) ? [replica, total] : [total];
    for (const sum of sums) {
      sum[1] += row[1];
      sum[2] += row[2];
    }
  }
  rows.push(bindings, replica, total);
  table(['file', 'bytes', 'gzipped'], rows);
}

/** A static site of its own, so each store has an origin (and a storage estimate) to itself. */
async function freshSite() {
  const site = await startSite();
  sites.push(site);
  return site;
}

/** Durable batched writes in page mode, one fresh store (and origin) per batch size.
 * Resolves to the run of MAIN_BATCH, whose store the cold starts open. */
async function pageWrites(context) {
  const runs = [];
  for (const batch of BATCH_SIZES) {
    const site = await freshSite();
    const page = await openPage(context, `${site.url}/page.html`);
    const run = await page.evaluate(writeDocs, { mode: 'page', docs: DOCS, batch });
    await page.close();
    runs.push({ ...run, batch, site });
  }
  section(`Durable batched writes, page mode: ${DOCS.toLocaleString('en-US')} upserts into a fresh store`);
  table(
    ['batch', 'commits', 'total ms', 'writes/s', 'batch ms (median)', 'batch ms (max)',
      'flushed() ms', 'journal records', 'wasm memory MiB'],
    runs.map((run) => [
      run.batch, run.batches, ms(run.totalMs), perSecond(run.docs, run.totalMs),
      ms(median(run.batchMs)), ms(Math.max(...run.batchMs)), ms(run.flushedMs, 1),
      run.usage.journalRecords, mib(run.wasmMemory),
    ]),
  );
  console.log('Each batch: `batch` upserts issued in one JavaScript turn and awaited with ' +
    'Promise.all, then the next batch. Writes of one turn share one IndexedDB transaction and ' +
    'every promise resolves only after that commit. The journal is folded into a checkpoint ' +
    'of the whole replica every 512 batches or 4 MiB (the max batch time includes one). ' +
    'flushed() is called after the last batch resolved.');
  return runs.find((run) => run.batch === MAIN_BATCH);
}

/** Writes `docs` documents in batches into a fresh store called "figures"; runs in the page. */
async function writeDocs({ mode, docs, batch }) {
  const { loadWasm } = await import('/pkg/index.js');
  const store = await tm.openStore({ name: 'figures', mode });
  const orders = store.collection('orders');
  const order = (n) => ({ id: `d${n}`, table: n % 40, status: 'open', items: ['tea', 'cake'], total: 12.5 });
  const batchMs = [];
  let journalAfterFirst = null;
  for (let from = 0; from < docs; from += batch) {
    const started = performance.now();
    const writes = [];
    for (let n = from; n < Math.min(from + batch, docs); n++) writes.push(orders.upsert(order(n)));
    await Promise.all(writes);
    batchMs.push(performance.now() - started);
    // Outside the timed part: how many journal records the first batch made.
    if (from === 0) journalAfterFirst = (await store.usage()).journalRecords;
  }
  const started = performance.now();
  await store.flushed();
  const flushedMs = performance.now() - started;
  const usage = await store.usage();
  const wasmMemory = mode === 'page' ? (await loadWasm()).memory.buffer.byteLength : null;
  await store.close();
  return {
    docs,
    batches: batchMs.length,
    batchMs,
    totalMs: batchMs.reduce((a, b) => a + b, 0),
    flushedMs,
    journalAfterFirst,
    usage,
    wasmMemory,
  };
}

/** Cold starts in page mode: reload the page, then open the store, query, read. */
async function pageColdStarts(context, site) {
  const page = await openPage(context, `${site.url}/page.html`);
  const runs = [];
  for (let n = 0; n < COLD_STARTS; n++) {
    await page.reload();
    await page.evaluate(() => window.ready);
    runs.push(await page.evaluate(coldStart, { mode: 'page', query: QUERY, probe: PROBE_ID }));
  }
  await page.close();
  coldStartTable('page mode (page.html): reload, then openStore()', runs, [
    'openStore() includes fetching, compiling and instantiating the wasm ("of which wasm"), ' +
    'reading the checkpoint and journal from IndexedDB and decoding them in wasm.',
  ]);
}

/** Cold starts with the store in the service worker: each run stops the worker first, so
 * openStore() wakes it and it opens the store from IndexedDB. */
async function workerColdStarts(context, site) {
  try {
    const page = await openPage(context, `${site.url}/app.html`);
    const cdp = await context.newCDPSession(page);
    const workers = new Map();
    cdp.on('ServiceWorker.workerVersionUpdated', ({ versions }) => {
      for (const version of versions) workers.set(version.versionId, version.runningStatus);
    });
    await cdp.send('ServiceWorker.enable');
    const runs = [];
    for (let n = 0; n < COLD_STARTS; n++) {
      await page.reload();
      await page.evaluate(() => window.ready);
      await cdp.send('ServiceWorker.stopAllWorkers');
      await until(() => workers.size > 0 && [...workers.values()].every((s) => s === 'stopped'),
        'the service worker to stop');
      const run = await page.evaluate(coldStart, { mode: 'service-worker', query: QUERY, probe: PROBE_ID });
      // The worker the run woke up: it was stopped before.
      run.woke = [...workers.values()].includes('running');
      runs.push(run);
    }
    await cdp.detach();
    await page.close();
    const woke = runs.filter((run) => run.woke).length;
    coldStartTable('service-worker mode (app.html): reload, stop the worker, then openStore()', runs, [
      'Same origin and IndexedDB data as page mode. openStore() includes starting the worker, ' +
      'its fetching and compiling the wasm, and opening the store from IndexedDB; queries and ' +
      'reads go through postMessage.',
      `The worker was stopped before each run (CDP ServiceWorker.stopAllWorkers) and running ` +
      `after it in ${woke} of ${runs.length} runs.`,
    ]);
  } catch (error) {
    section('Cold start, service-worker mode');
    console.log(`not measured: ${error.stack ?? error}`);
  }
}

/** Opens the store and makes a first query and read, timed; runs in the page. */
async function coldStart({ mode, query, probe }) {
  // Already imported by the page; the wasm is not loaded yet.
  const { loadWasm } = await import('/pkg/index.js');
  const started = performance.now();
  let wasmMs = null;
  let wasmMemory = null;
  if (mode === 'page') {
    await loadWasm();
    wasmMs = performance.now() - started;
  }
  const store = await tm.openStore({ name: 'figures', mode });
  const opened = performance.now();
  const orders = store.collection('orders');
  const found = await orders.find(query);
  const queried = performance.now();
  const doc = await orders.get(probe);
  const read = performance.now();
  const again = await orders.find({ where: { table: 8 } });
  const queriedAgain = performance.now();
  const usage = await store.usage();
  if (mode === 'page') wasmMemory = (await loadWasm()).memory.buffer.byteLength;
  await store.close();
  return {
    mode: store.mode,
    openMs: opened - started,
    wasmMs,
    findMs: queried - opened,
    found: found.length,
    getMs: read - queried,
    got: doc?.id === probe,
    againMs: queriedAgain - read,
    foundAgain: again.length,
    usage,
    wasmMemory,
  };
}

function coldStartTable(title, runs, notes) {
  section(`Cold start, ${title}`);
  const row = (label, run) => [
    label, ms(run.openMs), run.wasmMs === null ? '-' : ms(run.wasmMs), ms(run.findMs),
    ms(run.getMs, 1), ms(run.openMs + run.findMs + run.getMs), ms(run.againMs),
    run.wasmMemory === null ? '-' : mib(run.wasmMemory),
  ];
  const pick = (key) => median(runs.map((run) => run[key]));
  const typical = {
    openMs: pick('openMs'),
    wasmMs: runs[0].wasmMs === null ? null : pick('wasmMs'),
    findMs: pick('findMs'),
    getMs: pick('getMs'),
    againMs: pick('againMs'),
    wasmMemory: runs[0].wasmMemory === null ? null : pick('wasmMemory'),
  };
  table(
    ['run', 'openStore() ms', 'of which wasm', 'first find() ms', 'get() ms', 'open+find+get ms',
      'next find() ms', 'wasm memory MiB'],
    [...runs.map((run, n) => row(`${n + 1}`, run)), row('median', typical)],
  );
  const last = runs.at(-1);
  const wrong = runs.filter((run) => run.found !== DOCS / 40 || !run.got || run.mode !== runs[0].mode);
  console.log(`mode ${last.mode}; find(${JSON.stringify(QUERY)}) gave ${last.found.toLocaleString('en-US')} ` +
    `documents, get("${PROBE_ID}") ${last.got ? 'found it' : 'did NOT find it'}` +
    (wrong.length ? `; ${wrong.length} run(s) gave unexpected results` : ''));
  console.log(`usage(): ${last.usage.documents.toLocaleString('en-US')} documents, ` +
    `${last.usage.registers.toLocaleString('en-US')} registers, ${last.usage.journalRecords} journal ` +
    `records, ${last.usage.journalBytes.toLocaleString('en-US')} journal bytes; storage.usage ` +
    `${last.usage.storage?.usage?.toLocaleString('en-US') ?? '-'} bytes for the origin`);
  for (const note of notes) console.log(note);
}

/** Durable batched writes with the store in the service worker. */
async function workerWrites(context) {
  try {
    const site = await freshSite();
    const page = await openPage(context, `${site.url}/app.html`);
    const run = await page.evaluate(writeDocs, { mode: 'service-worker', docs: WORKER_DOCS, batch: MAIN_BATCH });
    await page.close();
    section(`Durable batched writes, service-worker mode: ${WORKER_DOCS.toLocaleString('en-US')} upserts into a fresh store`);
    table(
      ['batch', 'batches', 'total ms', 'writes/s', 'batch ms (median)', 'batch ms (max)',
        'flushed() ms', 'journal records after 1st batch'],
      [[MAIN_BATCH, run.batches, ms(run.totalMs), perSecond(run.docs, run.totalMs),
        ms(median(run.batchMs)), ms(Math.max(...run.batchMs)), ms(run.flushedMs, 1),
        run.journalAfterFirst]],
    );
    console.log(`The requests of one page turn travel to the worker as one message and start in ` +
      `one task there, so the writes of a batch share one IndexedDB transaction: the first batch ` +
      `of ${MAIN_BATCH.toLocaleString('en-US')} left ${run.journalAfterFirst} journal record(s) ` +
      '(page mode: 1). Each answer still comes back as its own message.');
  } catch (error) {
    section('Durable batched writes, service-worker mode');
    console.log(`not measured: ${error.stack ?? error}`);
  }
}

/** The main figures again in an off-the-record context (IndexedDB in memory), as the tests
 * run: writes of MAIN_BATCH and page-mode cold starts. */
async function comparison(browser) {
  const context = await browser.newContext();
  const site = await freshSite();
  const page = await openPage(context, `${site.url}/page.html`);
  const writes = await page.evaluate(writeDocs, { mode: 'page', docs: DOCS, batch: MAIN_BATCH });
  const colds = [];
  for (let n = 0; n < COLD_STARTS; n++) {
    await page.reload();
    await page.evaluate(() => window.ready);
    colds.push(await page.evaluate(coldStart, { mode: 'page', query: QUERY, probe: PROBE_ID }));
  }
  await context.close();
  section('Comparison: an off-the-record context (harness.launchBrowser + newContext, IndexedDB in memory)');
  table(
    ['batch', 'writes/s', 'cold openStore() ms (median)', 'first find() ms (median)',
      'get() ms (median)'],
    [[MAIN_BATCH, perSecond(writes.docs, writes.totalMs), ms(median(colds.map((c) => c.openMs))),
      ms(median(colds.map((c) => c.findMs))), ms(median(colds.map((c) => c.getMs)), 1)]],
  );
}

async function until(condition, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function section(title) {
  console.log(`\n== ${title}\n`);
}

/** Prints rows under headers, numbers right-aligned. */
function table(headers, rows) {
  const cells = rows.map((row) => row.map((cell) =>
    typeof cell === 'number' ? cell.toLocaleString('en-US') : String(cell)));
  const widths = headers.map((header, n) => Math.max(header.length, ...cells.map((row) => row[n].length)));
  const line = (row) => row.map((cell, n) => (n === 0 ? cell.padEnd(widths[n]) : cell.padStart(widths[n])))
    .join('  ');
  console.log(line(headers));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of cells) console.log(line(row));
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function ms(value, digits = 0) {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function perSecond(count, milliseconds) {
  return Math.round((count / milliseconds) * 1000);
}

function mib(bytes) {
  return (bytes / 2 ** 20).toFixed(1);
}

function gib(bytes) {
  return (bytes / 2 ** 30).toFixed(1);
}
