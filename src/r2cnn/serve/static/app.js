// The drawing page: Pointer Events (mouse, pen, touch) -> strokes -> POST api/predict after every stroke ->
// the top-5 list and the strokes redrawn in the colour of the model's attention at each point.
//
// State the page exposes for tests and tools: #canvas[data-coloured-strokes] is the number of strokes drawn in
// attention colours by the last answer (0 without attention); #canvas[data-predicted-strokes] the number of
// strokes the shown predictions are for.
"use strict";

(() => {
  const INK = "rgb(17, 17, 17)";  // strokes without attention (while drawing, and for a CNN-only model)
  const LINE_WIDTH = 5;
  const MIN_STEP = 1.5;  // canvas pixels between recorded points; closer pointer samples add nothing
  const MAX_FILE_BYTES = 2000000;  // the server's default request limit
  const TOP_K = 5;

  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const list = document.getElementById("predictions");
  const statusLine = document.getElementById("status");
  const modelLine = document.getElementById("model");

  let strokes = [];       // [{xs: [...], ys: [...]}] in canvas pixels, drawing order
  let attention = null;   // per stroke, per point, in [0, 1]; aligned with strokes[0 .. attention.length)
  let current = null;     // the stroke being drawn: {pointerId, xs, ys}
  let requestId = 0;      // answers to anything but the latest request are stale and dropped
  let hasAttention = true;

  function say(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  // ---------------------------------------------------------------------------------------------------------
  // drawing

  function colourOf(v) {
    const [r, g, b] = attentionRGB(v);
    return `rgb(${r}, ${g}, ${b})`;
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
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    let coloured = 0;
    strokes.forEach((s, i) => {
      const a = attention && i < attention.length ? attention[i] : null;
      coloured += a ? 1 : 0;
      strokePath(s.xs, s.ys, a ? (j, k) => colourOf((a[j] + a[k]) / 2) : null);
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

  async function predict() {
    const id = ++requestId;
    if (!strokes.length) {
      attention = null;
      list.replaceChildren();
      canvas.dataset.predictedStrokes = "0";
      redraw();
      say("Draw with mouse, pen or finger.");
      return;
    }
    const sent = strokes.length;
    const drawing = strokes.map((s) => [s.xs.map((v) => Math.round(v * 10) / 10),
                                        s.ys.map((v) => Math.round(v * 10) / 10)]);
    say("recognising…");
    let response;
    try {
      response = await fetch("api/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify({drawing, top_k: TOP_K})});
    } catch (error) {
      if (id === requestId) say(`the server did not answer: ${error}`, true);
      return;
    }
    if (id !== requestId) return;
    if (!response.ok) {
      say(`not recognised: ${await errorText(response)}`, true);
      return;
    }
    const answer = await response.json();
    if (id !== requestId) return;
    attention = answer.attention;
    showPredictions(answer.top);
    canvas.dataset.predictedStrokes = String(sent);
    redraw();
    say(hasAttention ? `${sent} stroke${sent > 1 ? "s" : ""}; colours show the model's attention at each point.`
                     : `${sent} stroke${sent > 1 ? "s" : ""}. This model has no per-point attention ` +
                       "(CNN-only): strokes stay in ink colour.");
  }

  // ---------------------------------------------------------------------------------------------------------
  // undo, clear, load

  document.getElementById("undo").addEventListener("click", () => {
    if (!strokes.length) return;
    strokes.pop();
    if (attention) attention = attention.slice(0, strokes.length);
    redraw();
    predict();
  });

  document.getElementById("clear").addEventListener("click", () => {
    strokes = [];
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

  document.getElementById("file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = "";  // the same file may be chosen again
    if (!file) return;
    const format = /\.svg$/i.test(file.name) ? "svg" : /\.(ndjson|jsonl?)$/i.test(file.name) ? "ndjson" : null;
    if (!format) return say(`${file.name}: not a sketch file (.ndjson, .json, .jsonl or .svg)`, true);
    if (file.size > MAX_FILE_BYTES) return say(`${file.name}: larger than ${MAX_FILE_BYTES} bytes`, true);
    const query = new URLSearchParams({format, name: file.name});
    const response = await fetch(`api/parse?${query}`, {method: "POST", body: await file.arrayBuffer(),
                                                       headers: {"Content-Type": "application/octet-stream"}});
    if (!response.ok) return say(await errorText(response), true);  // the message names the file
    const parsed = await response.json();
    strokes = fitToCanvas(parsed.drawing);
    attention = null;
    redraw();
    await predict();
    if (parsed.label) say(`${statusLine.textContent} Loaded ${file.name} (labelled "${parsed.label}").`);
  });

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

  async function start() {
    drawColorbar();
    redraw();
    canvas.dataset.predictedStrokes = "0";
    try {
      const response = await fetch("api/classes");
      if (!response.ok) throw new Error(await errorText(response));
      const info = await response.json();
      hasAttention = info.has_attention;
      modelLine.textContent = `model ${info.model}, ${info.classes.length} classes`;
      modelLine.title = info.classes.join(", ");
      if (!hasAttention) {
        document.getElementById("legend").classList.add("hidden");
        say("This model has no per-point attention (CNN-only): you get predictions, and strokes stay in ink " +
            "colour.");
      }
    } catch (error) {
      modelLine.textContent = `could not ask the server about the model: ${error.message || error}`;
    }
  }

  start();
})();
