// The drawing page: Pointer Events (mouse, pen, touch) -> strokes -> recognition after every stroke -> the top-5
// list and the strokes redrawn in the colour of the model's attention at each point.
//
// Two engines answer: the server (POST api/predict), and, when `r2cnn serve --onnx` offers the exported model, the
// browser itself (onnxruntime-web, WASM, vendored under static/vendor): it answers first once loaded, and the
// page keeps recognising with the server stopped. The page says which one answered.
//
// One rule keeps the page from contradicting itself: the top-5 list, the attention colours, the range line and
// the "answered by ..." line always describe the same answer, for the strokes on the board; whatever ends that
// answer (Clear, a failed request, a file that cannot be read) clears them together (clearResults).
//
// State the page exposes for tests and tools: #canvas[data-coloured-strokes] is the number of strokes drawn in
// attention colours by the last answer (0 without attention); #canvas[data-predicted-strokes] the number of
// strokes the shown predictions are for; #canvas[data-engine] "browser" or "server", the engine that gave them;
// #canvas[data-colour-range] "low,high", the attention values mapped to the colour bar's ends;
// document.body[data-browser-engine] "loading", "ready", "failed" or "off"; document.body[data-offline] "ready"
// once the service worker has cached the page, its runtime and the model (--onnx only), "cache" when this page
// came from that cache with the server not answering, "off" without; window.sketchPage.drawing() the
// strokes as the engines get them ([[xs, ys], ...], canvas pixels to one decimal), .attention() the attention
// shown (per stroke, per point; null without).
"use strict";

(() => {
  const INK = "rgb(17, 17, 17)";  // strokes without attention (while drawing, and for a CNN-only model)
  const LINE_WIDTH = 5;
  const MIN_STEP = 1.5;  // canvas pixels between recorded points; closer pointer samples add nothing
  const MAX_FILE_BYTES = 2000000;  // the server's default request limit (an SVG goes to the server)
  const MAX_JSON_BYTES = 256e6;  // a JSON or ndjson file is read in the page: a Quick, Draw! class file fits
  const TOP_K = 5;
  const ORT_DIR = "static/vendor/onnxruntime-web/";

  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const list = document.getElementById("predictions");
  const statusLine = document.getElementById("status");
  const modelLine = document.getElementById("model");
  const engineLine = document.getElementById("engine");
  const stretchBox = document.getElementById("stretch");
  const picker = document.getElementById("picker");
  const sketchNumber = document.getElementById("sketch-number");

  let strokes = [];       // [{xs: [...], ys: [...]}] in canvas pixels, drawing order
  let attention = null;   // per stroke, per point, in [0, 1]; aligned with strokes[0 .. attention.length)
  let current = null;     // the stroke being drawn: {pointerId, xs, ys}
  let requestId = 0;      // answers to anything but the latest request are stale and dropped
  let hasAttention = true;
  let classes = [];
  let colourRange = [0, 1];  // attention values at the colour bar's ends
  let browserEngine = null;  // when offered: {runtime, margin, session: Promise of an ort.InferenceSession,
                             // last: the latest run, settled}
  let engineNote = "";       // the engine line while no answer is shown: which engine will answer
  let loaded = null;         // the file the board shows a sketch of: {name, file: openSketchFile's, index}

  function say(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  // ---------------------------------------------------------------------------------------------------------
  // drawing

  function colourOf(v, [low, high] = [0, 1]) {
    const [r, g, b] = attentionRGB((v - low) / (high - low));
    return `rgb(${r}, ${g}, ${b})`;
  }

  /** The attention values at the colour bar's ends: [0, 1] (the sigmoid's range, comparable across sketches) or,
   *  stretched, this sketch's lowest and highest (as `r2cnn visualize --stretch`; [0, 1] when they are equal). */
  function rangeOf(values) {
    if (!values.length) return [0, 1];
    const low = Math.min(...values), high = Math.max(...values);
    return stretchBox.checked && high - low > 1e-6 ? [low, high] : [0, 1];
  }

  function showScale() {
    const values = attention ? attention.flat() : [];
    colourRange = rangeOf(values);
    canvas.dataset.colourRange = colourRange.join(",");
    const digits = colourRange[1] - colourRange[0] < 0.1 ? 3 : 2;
    document.getElementById("scale-low").textContent = colourRange[0].toFixed(digits);
    document.getElementById("scale-high").textContent = colourRange[1].toFixed(digits);
    document.getElementById("range").textContent = values.length ?
      `attention of this sketch: ${Math.min(...values).toFixed(3)} to ${Math.max(...values).toFixed(3)}` : "";
  }

  function strokePath(xs, ys, colours) {
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (xs.length === 1) {  // a dot
      ctx.fillStyle = colours ? colours(0, 0) : INK;
      ctx.beginPath();
      ctx.arc(xs[0], ys[0], LINE_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    for (let j = 0; j + 1 < xs.length; j++) {
      // one segment at a time, in the colour of its end points' mean attention (the NLR's intensity varies
      // linearly along a segment, eq. (1); the mean is its value at the midpoint)
      ctx.strokeStyle = colours ? colours(j, j + 1) : INK;
      ctx.beginPath();
      ctx.moveTo(xs[j], ys[j]);
      ctx.lineTo(xs[j + 1], ys[j + 1]);
      ctx.stroke();
    }
  }

  function redraw() {
    showScale();
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    let coloured = 0;
    strokes.forEach((s, i) => {
      const a = attention && i < attention.length ? attention[i] : null;
      coloured += a ? 1 : 0;
      strokePath(s.xs, s.ys, a ? (j, k) => colourOf((a[j] + a[k]) / 2, colourRange) : null);
    });
    if (current) strokePath(current.xs, current.ys, null);
    canvas.dataset.colouredStrokes = String(coloured);
  }

  function canvasPoint(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
            (event.clientY - box.top) * canvas.height / box.height];
  }

  function addPoint(event) {
    const [x, y] = canvasPoint(event);
    const n = current.xs.length;
    if (n && Math.hypot(x - current.xs[n - 1], y - current.ys[n - 1]) < MIN_STEP) return;
    current.xs.push(x);
    current.ys.push(y);
    if (n) {  // draw just the new segment; the full redraw waits for the answer
      strokePath(current.xs.slice(n - 1), current.ys.slice(n - 1), null);
    } else {
      strokePath([x], [y], null);
    }
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (current || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    current = {pointerId: event.pointerId, xs: [], ys: []};
    addPoint(event);
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current || event.pointerId !== current.pointerId) return;
    const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of samples.length ? samples : [event]) addPoint(sample);
  });

  function finishStroke(event) {
    if (!current || event.pointerId !== current.pointerId) return;
    strokes.push({xs: current.xs, ys: current.ys});
    current = null;
    predict();
  }

  canvas.addEventListener("pointerup", finishStroke);
  canvas.addEventListener("pointercancel", finishStroke);

  // ---------------------------------------------------------------------------------------------------------
  // predictions

  function showPredictions(top) {
    list.replaceChildren(...top.map(({class: name, probability}) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      const value = document.createElement("span");
      value.className = "probability";
      value.textContent = `${(100 * probability).toFixed(1)}%`;
      value.dataset.probability = String(probability);
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(1, 100 * probability).toFixed(1)}%`;
      item.append(label, value, bar);
      return item;
    }));
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return body.message || JSON.stringify(body.detail);
    } catch {
      return `${response.status} ${response.statusText}`;
    }
  }

  /** The strokes to one decimal: what the server gets, and what the browser engine normalises, so that both see
   *  the same sketch. */
  function sentDrawing() {
    return strokes.map((s) => [s.xs.map((v) => Math.round(v * 10) / 10), s.ys.map((v) => Math.round(v * 10) / 10)]);
  }

  window.sketchPage = {drawing: sentDrawing, attention: () => attention};

  /** The server's answer: {top, attention}; throws an Error saying why there is none. */
  async function askServer(drawing) {
    let response;
    try {
      response = await fetch("api/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify({drawing, top_k: TOP_K})});
    } catch (error) {
      throw new Error("The server is not answering (stopped?): no recognition until it is back " +
                      `(${error.message || error}).`);
    }
    if (!response.ok) throw new Error(`not recognised: ${await errorText(response)}`);
    return await response.json();
  }

  /** The in-browser engine's answer, in the server's form: softmax of the logits, and per stroke the attention at
   *  each point (the mean over the model's channels, as the server gives it). */
  async function askBrowser(drawing) {
    const session = await browserEngine.session;
    const points = normalizeStrokes(drawing, browserEngine.margin);
    const n = points.length / 3;
    // one run at a time: a second stroke may end before the first one's answer
    const run = browserEngine.last.then(() => session.run({[session.inputNames[0]]:
                                                            new ort.Tensor("float32", points, [n, 3])}));
    browserEngine.last = run.catch(() => null);
    const outputs = await run;
    const logits = (outputs.logits || outputs[session.outputNames[0]]).data;
    const peak = Math.max(...logits);
    const exps = Array.from(logits, (v) => Math.exp(v - peak));
    const total = exps.reduce((a, b) => a + b, 0);
    const top = exps.map((e, i) => ({class: classes[i], probability: e / total}))
      .sort((a, b) => b.probability - a.probability).slice(0, TOP_K);
    const raw = hasAttention ? (outputs.attention || outputs[session.outputNames[1]]) : null;
    let perStroke = null;
    if (raw) {
      const channels = raw.data.length / n;
      const perPoint = Array.from({length: n}, (_, i) => {
        let sum = 0;
        for (let c = 0; c < channels; c++) sum += raw.data[i * channels + c];
        return sum / channels;
      });
      let start = 0;
      perStroke = drawing.map(([xs]) => perPoint.slice(start, start += xs.length));
    }
    return {top, attention: perStroke};
  }

  /** No answer is shown: the top-5 list, the attention colours and range, and "answered by ..." go together. */
  function clearResults() {
    attention = null;
    list.replaceChildren();
    canvas.dataset.predictedStrokes = "0";
    delete canvas.dataset.engine;
    engineLine.textContent = engineNote;
    redraw();
  }

  /** The engine line while no answer is shown. */
  function setEngineNote(text) {
    engineNote = text;
    if (canvas.dataset.predictedStrokes === "0") engineLine.textContent = text;
  }

  async function predict() {
    const id = ++requestId;
    if (!strokes.length) {
      clearResults();
      say("Draw with mouse, pen or finger.");
      return;
    }
    const sent = strokes.length;
    const drawing = sentDrawing();
    say("recognising…");
    let answer = null, engine = null, failure = null;
    if (browserEngine && document.body.dataset.browserEngine === "ready") {
      try {
        [answer, engine] = [await askBrowser(drawing), "browser"];
      } catch (error) {
        failure = new Error(`the browser engine failed: ${error.message || error}`);
      }
    }
    if (!answer) {
      try {
        [answer, engine] = [await askServer(drawing), "server"];
      } catch (error) {
        failure = error;
        if (browserEngine && document.body.dataset.browserEngine === "loading") {  // no server: wait for it
          try {
            [answer, engine] = [await askBrowser(drawing), "browser"];
          } catch { /* failure says why */ }
        }
      }
    }
    if (id !== requestId) return;
    if (!answer) {
      clearResults();
      say(failure.message, true);
      return;
    }
    attention = answer.attention;
    showPredictions(answer.top);
    canvas.dataset.predictedStrokes = String(sent);
    canvas.dataset.engine = engine;
    engineLine.textContent = engine === "browser" ? `answered by the browser (${browserEngine.runtime}, WASM)`
                                                  : "answered by the server";
    redraw();
    say(hasAttention ? `${sent} stroke${sent > 1 ? "s" : ""}; colours show the model's attention at each point.`
                     : `${sent} stroke${sent > 1 ? "s" : ""}. This model has no per-point attention ` +
                       "(CNN-only): strokes stay in ink colour.");
  }

  // ---------------------------------------------------------------------------------------------------------
  // undo, clear, load

  function undo() {
    if (!strokes.length) return;
    strokes.pop();
    if (attention) attention = attention.slice(0, strokes.length);
    redraw();
    predict();
  }

  document.getElementById("undo").addEventListener("click", undo);
  document.addEventListener("keydown", (event) => {
    if (event.target === sketchNumber) return;  // its own undo
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    }
  });
  stretchBox.addEventListener("change", redraw);

  /** Forget the loaded file: the picker goes, the board is the person's own drawing. */
  function unload() {
    loaded = null;
    picker.hidden = true;
  }

  document.getElementById("clear").addEventListener("click", () => {
    strokes = [];
    unload();
    predict();
  });

  /** Strokes [[xs, ys], ...] in any coordinates -> canvas strokes, fitted into the canvas with a margin. */
  function fitToCanvas(drawing) {
    const xs = drawing.flatMap((s) => s[0]);
    const ys = drawing.flatMap((s) => s[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const margin = 0.08 * canvas.width;
    const scale = (canvas.width - 2 * margin) / Math.max(x1 - x0, y1 - y0, 1e-9);
    const dx = (canvas.width - scale * (x1 - x0)) / 2 - scale * x0;
    const dy = (canvas.height - scale * (y1 - y0)) / 2 - scale * y0;
    return drawing.map(([sx, sy]) => ({xs: sx.map((x) => scale * x + dx), ys: sy.map((y) => scale * y + dy)}));
  }

  /** A file could not give a sketch: an empty board, no answer, and the message (it names the file). */
  function loadFailed(message) {
    ++requestId;  // an answer still on its way is for the board that is gone
    strokes = [];
    clearResults();
    say(message, true);
  }

  /** Sketch `index` (0-based) of the loaded file onto the board, then recognised. */
  async function showSketch(index) {
    const {name, file} = loaded;
    loaded.index = index;
    sketchNumber.value = String(index + 1);
    sketchNumber.max = String(file.count);
    document.getElementById("previous-sketch").disabled = index === 0;
    document.getElementById("next-sketch").disabled = index === file.count - 1;
    const where = file.count > 1 ? `sketch ${index + 1} of ${file.count}` : "";
    document.getElementById("sketch-of").textContent = `${where} in ${name}`;
    picker.hidden = file.count < 2;
    let sketch;
    try {
      sketch = await file.sketch(index);
    } catch (error) {
      return loadFailed(error.message || String(error));
    }
    strokes = fitToCanvas(sketch.drawing);
    attention = null;
    redraw();
    const id = requestId + 1;
    await predict();
    if (id !== requestId || statusLine.classList.contains("error")) return;
    const label = sketch.label === null ? "" : ` (labelled "${sketch.label}")`;
    say(`${statusLine.textContent} Loaded ${where ? `${where} of ` : ""}${name}${label}.`);
  }

  /** An SVG file: read by the server (POST api/parse), one sketch. */
  function svgFile(file) {
    return {count: 1, async sketch() {
      const query = new URLSearchParams({format: "svg", name: file.name});
      let response;
      try {
        response = await fetch(`api/parse?${query}`, {method: "POST", body: await file.arrayBuffer(),
                                                      headers: {"Content-Type": "application/octet-stream"}});
      } catch (error) {
        throw new Error(`${file.name}: an SVG is read by the server, which is not answering (${error.message})`);
      }
      if (!response.ok) throw new Error(await errorText(response));  // the message names the file
      return {drawing: (await response.json()).drawing, label: null};
    }};
  }

  document.getElementById("file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = "";  // the same file may be chosen again
    if (!file) return;
    unload();
    const svg = /\.svg$/i.test(file.name);
    if (!svg && !/\.(ndjson|jsonl?)$/i.test(file.name)) {
      return loadFailed(`${file.name}: not a sketch file (.ndjson, .json, .jsonl or .svg)`);
    }
    const limit = svg ? MAX_FILE_BYTES : MAX_JSON_BYTES;
    if (file.size > limit) return loadFailed(`${file.name}: larger than ${limit} bytes`);
    let opened;
    try {
      opened = svg ? svgFile(file) : openSketchFile(file.name, await file.text());
    } catch (error) {
      return loadFailed(error.message || String(error));
    }
    loaded = {name: file.name, file: opened, index: 0};
    await showSketch(0);
  });

  function pick(index) {
    if (!loaded) return;
    const k = Math.min(Math.max(Math.round(index) || 0, 0), loaded.file.count - 1);
    if (k !== loaded.index || String(k + 1) !== sketchNumber.value) showSketch(k);
  }

  document.getElementById("previous-sketch").addEventListener("click", () => pick(loaded.index - 1));
  document.getElementById("next-sketch").addEventListener("click", () => pick(loaded.index + 1));
  sketchNumber.addEventListener("change", () => pick(Number(sketchNumber.value) - 1));

  // ---------------------------------------------------------------------------------------------------------
  // start

  function drawColorbar() {
    const bar = document.getElementById("colorbar");
    const c = bar.getContext("2d");
    for (let x = 0; x < bar.width; x++) {
      c.fillStyle = colourOf(x / (bar.width - 1));
      c.fillRect(x, 0, 1, bar.height);
    }
  }

  /** The runtime's script, loaded only when the server offers a model (it brings 15 MB of WebAssembly). */
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.append(script);
    });
  }

  function startBrowserEngine(offer) {
    document.body.dataset.browserEngine = "loading";
    setEngineNote(`loading the model into the browser (${(offer.bytes / 1e6).toFixed(1)} MB)…`);
    const session = loadScript(`${ORT_DIR}ort.wasm.min.js`).then(() => {
      ort.env.wasm.wasmPaths = new URL(ORT_DIR, location.href).href;
      ort.env.wasm.numThreads = 1;  // threads need a cross-origin-isolated page
      return ort.InferenceSession.create(offer.url, {executionProviders: ["wasm"]});
    });
    browserEngine = {runtime: offer.runtime, margin: offer.margin, session, last: Promise.resolve()};
    session.then(() => {
      document.body.dataset.browserEngine = "ready";
      setEngineNote(`the browser recognises by itself (${offer.runtime}, WASM): no server needed`);
    }, (error) => {
      document.body.dataset.browserEngine = "failed";
      setEngineNote(`the browser engine did not start (${error.message || error}): the server answers`);
    });
  }

  /** With a model for the browser (--onnx), a service worker (static/sw.js, served at sw.js) keeps the page, its
   *  runtime and the model in the browser's cache, so that a reload works with the server stopped. Without one,
   *  an earlier worker of this address and its cache go: the page is the server's again. */
  async function offlineCache(offer) {
    if (!("serviceWorker" in navigator) || !window.caches) {  // not a secure context (http://127.0.0.1 is one)
      document.body.dataset.offline = "off";
      return;
    }
    try {
      if (!offer) {
        document.body.dataset.offline = "off";
        for (const registration of await navigator.serviceWorker.getRegistrations()) await registration.unregister();
        for (const key of await caches.keys()) if (key.startsWith("r2cnn-page")) await caches.delete(key);
        return;
      }
      await navigator.serviceWorker.register(`sw.js?runtime=${encodeURIComponent(offer.runtime)}`, {scope: "./"});
      await navigator.serviceWorker.ready;
      if (document.body.dataset.offline !== "cache") document.body.dataset.offline = "ready";
    } catch (error) {
      if (document.body.dataset.offline !== "cache") document.body.dataset.offline = "off";
      console.warn(`the page cannot be kept for offline use: ${error.message || error}`);
    }
  }

  async function start() {
    drawColorbar();
    redraw();
    canvas.dataset.predictedStrokes = "0";
    try {
      const response = await fetch("api/classes");
      if (!response.ok) throw new Error(await errorText(response));
      const fromCache = response.headers.get("X-R2CNN-Offline") === "1";  // sw.js: the server did not answer
      if (fromCache) document.body.dataset.offline = "cache";
      const info = await response.json();
      hasAttention = info.has_attention;
      classes = info.classes;
      modelLine.textContent = `model ${info.model}, ${classes.length} classes`;
      document.getElementById("classes").textContent = classes.join(", ");
      if (info.browser_model) {
        startBrowserEngine(info.browser_model);
      } else {
        document.body.dataset.browserEngine = "off";
        setEngineNote(info.browser_note || "recognition on the server");
      }
      offlineCache(info.browser_model);
      if (fromCache) {
        say("The server is not answering: this page, its runtime and the model come from the browser's cache, " +
            "and the browser recognises by itself. Loading an .svg needs the server.");
      } else if (!hasAttention) {
        say("This model has no per-point attention (CNN-only): you get predictions, and strokes stay in ink " +
            "colour.");
      }
      if (!hasAttention) document.getElementById("legend").classList.add("hidden");
    } catch (error) {
      modelLine.textContent = `could not ask the server about the model: ${error.message || error}`;
      document.getElementById("classes").textContent = "(unknown: the server did not say)";
    }
  }

  start();
})();
