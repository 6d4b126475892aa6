// Types of `tidemark/sw`.

/** Serves the store to the pages of this origin; call once at the top level of a module
 * service worker. */
export function serveStore(): void;
