// The model's input, computed in the page for the in-browser engine exactly as the server computes it:
// r2cnn.data.formats.common.points_from_strokes (float32 x, y, pen_end = 1 on the last point of each stroke), then
// r2cnn.data.transforms.normalize. NumPy evaluates `(points - centre) * scale` in float32 (a Python float next
// to a float32 array is cast to float32), while the bounding box size and the scale are Python floats (float64):
// Math.fround reproduces both, so the two inputs are equal bit for bit (tests/test_serve_browser.py checks it).
"use strict";

/**
 * Strokes [[xs, ys], ...] (any coordinates, y down) -> Float32Array of N * 3 values: x, y, pen_end per point,
 * the sketch's bounding box centred and its longest side fitted into [-1 + margin, 1 - margin].
 */
function normalizeStrokes(drawing, margin) {
  const f = Math.fround;
  const n = drawing.reduce((total, [xs]) => total + xs.length, 0);
  const points = new Float32Array(3 * n);
  let k = 0;
  for (const [xs, ys] of drawing) {
    for (let j = 0; j < xs.length; j++, k++) {
      points[3 * k] = xs[j];
      points[3 * k + 1] = ys[j];
      points[3 * k + 2] = j === xs.length - 1 ? 1 : 0;
    }
  }
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    x0 = Math.min(x0, points[3 * i]);
    x1 = Math.max(x1, points[3 * i]);
    y0 = Math.min(y0, points[3 * i + 1]);
    y1 = Math.max(y1, points[3 * i + 1]);
  }
  const size = Math.max(x1 - x0, y1 - y0);
  const scale = f(size > 0 ? (2 - 2 * margin) / size : 0);
  const cx = f((x0 + x1) * 0.5), cy = f((y0 + y1) * 0.5);
  for (let i = 0; i < n; i++) {
    points[3 * i] = f(points[3 * i] - cx) * scale;  // the Float32Array store rounds the product to float32
    points[3 * i + 1] = f(points[3 * i + 1] - cy) * scale;
  }
  return points;
}
