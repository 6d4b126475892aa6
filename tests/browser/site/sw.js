// The app's service worker: hosts the store for every tab.
import { serveStore } from '/pkg/sw.js';

serveStore();
