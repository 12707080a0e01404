// The page's service worker, registered only when `r2cnn serve --onnx` hands the page a model (app.js
// offlineCache): it keeps the page, its runtime and the model in the browser's cache, so that a reload works with
// the server stopped and the browser recognises by itself. Served at sw.js beside the page (its scope is the
// page's folder), from static/sw.js.
//
// What comes from where:
// - the page's own files and the vendored runtime: cache first (the same files for a given runtime version);
//   the page's files are refreshed in the background after they are answered, so a new version shows on the next
//   load;
// - api/classes and the model (browser/model.onnx): the server first, the cache when it does not answer. A server
//   started again with another model must never be answered by the one cached before: the two go together, and
//   both carry the header X-R2CNN-Offline: 1 when they come from the cache (the page then says so).
// Everything else (api/predict, api/parse, /docs) is not touched: it goes to the server.
"use strict";

const RUNTIME = new URL(self.location).searchParams.get("runtime") || "runtime";
const CACHE = `r2cnn-page ${RUNTIME}`;
const ORT = "static/vendor/onnxruntime-web/";
const PAGE = ["./", "static/style.css", "static/colormap.js", "static/normalize.js", "static/sketchfile.js",
              "static/app.js", "favicon.ico"];
const RUNTIME_FILES = [`${ORT}ort.wasm.min.js`, `${ORT}ort-wasm-simd-threaded.wasm`,
                       `${ORT}ort-wasm-simd-threaded.mjs`];
const LIVE = ["api/classes", "browser/model.onnx"];

const url = (path) => new URL(path, self.location).href;
const pageFiles = new Set(PAGE.map(url));
const runtimeFiles = new Set(RUNTIME_FILES.map(url));
const liveFiles = new Set(LIVE.map(url));

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll([...PAGE, ...RUNTIME_FILES, ...LIVE].map(url)))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("r2cnn-page") && k !== CACHE)
                                    .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function cacheFirst(request, key, refresh) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(key);
  if (cached && !refresh) return cached;
  const fetched = fetch(request).then(async (response) => {
    if (response.ok) await cache.put(key, response.clone());
    return response;
  });
  if (!cached) return fetched;
  fetched.catch(() => null);  // refreshed for the next load; the server may be gone
  return cached;
}

async function serverFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(key, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(key);
    if (!cached) throw error;
    const headers = new Headers(cached.headers);
    headers.set("X-R2CNN-Offline", "1");
    return new Response(await cached.blob(), {status: cached.status, statusText: cached.statusText, headers});
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const where = new URL(request.url);
  const key = where.origin + where.pathname;  // a query (e.g. a navigation's) does not make another page
  if (request.mode === "navigate" ? key === url("./") : pageFiles.has(key)) {
    event.respondWith(cacheFirst(request, key, true));
  } else if (runtimeFiles.has(key)) {
    event.respondWith(cacheFirst(request, key, false));
  } else if (liveFiles.has(key)) {
    event.respondWith(serverFirst(request, key));
  }
});
