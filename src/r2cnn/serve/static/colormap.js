// The attention colour map: matplotlib's "jet" (blue = low, red = high attention), sampled at 33 evenly spaced
// values in [0, 1] and interpolated linearly in between. The figures of `r2cnn visualize` use the same map;
// tests/test_serve.py checks this table against matplotlib.
"use strict";

const ATTENTION_COLORMAP = {
  name: "jet",
  table: [
    [0, 0, 128], [0, 0, 164], [0, 0, 200], [0, 0, 237], [0, 0, 255], [0, 32, 255],
    [0, 64, 255], [0, 96, 255], [0, 128, 255], [0, 160, 255], [0, 192, 255], [0, 224, 251],
    [22, 255, 225], [48, 255, 199], [73, 255, 173], [99, 255, 148], [125, 255, 122], [151, 255, 96],
    [177, 255, 70], [202, 255, 44], [228, 255, 19], [254, 237, 0], [255, 208, 0], [255, 178, 0],
    [255, 148, 0], [255, 119, 0], [255, 89, 0], [255, 59, 0], [255, 30, 0], [232, 0, 0],
    [196, 0, 0], [159, 0, 0], [128, 0, 0]
  ],
};

/** The colour of attention value v (clamped to [0, 1]) as [r, g, b], 0..255. */
function attentionRGB(v) {
  const table = ATTENTION_COLORMAP.table;
  const t = Math.min(Math.max(Number.isFinite(v) ? v : 0, 0), 1) * (table.length - 1);
  const i = Math.min(Math.floor(t), table.length - 2);
  const f = t - i;
  return table[i].map((c, k) => Math.round(c + f * (table[i + 1][k] - c)));
}
