// What pages and the service worker share: their messages, errors, the single-writer lock.
//
// Messages between pages and the service worker that hosts the store:
//
// page → worker  { tidemark: VERSION, store, requests: [{ id, method, args }] }  via
//                controller.postMessage, which wakes a stopped worker, so a page never talks
//                to a dead port; the requests of one page turn travel together.
// worker → page  { tidemark: VERSION, id, epoch, value } or { ..., error: { code, message } }
// worker → page  { tidemark: VERSION, observation, results }        a live query changed
//
// `epoch` names one life of the worker. When it changes (the browser stopped and restarted
// the worker), pages register their live queries again.

export const VERSION = 2;

/** An Error as data that survives postMessage, keeping its stable `code`. */
export function errorData(error) {
  return {
    code: error?.code ?? 'store.internal',
    message: String(error?.message ?? error),
  };
}

/** The Error apps see, with `name` 'TidemarkError' and a stable `code`. */
export function tidemarkError({ code, message }) {
  const error = new Error(message);
  error.name = 'TidemarkError';
  error.code = code;
  return error;
}

/** Holds the Web Lock that makes one page, or the service worker, the store's only writer;
 * resolves to its release. */
export function lockStore(name) {
  const locks = globalThis.navigator?.locks;
  if (!locks) return Promise.resolve(() => {});
  return new Promise((resolve, reject) => {
    locks.request(`tidemark:${name}`, { ifAvailable: true }, (lock) => {
      if (!lock) {
        reject(tidemarkError({
          code: 'store.locked',
          message: `store "${name}" is open in another tab; serve it from a service worker ` +
            "(import { serveStore } from 'tidemark/sw') to share it between tabs",
        }));
        return undefined;
      }
      // The lock is held until this promise resolves.
      return new Promise((release) => resolve(release));
    }).catch(reject);
  });
}
