"""What the model learned, as pictures and numbers (paper Figs. 3-6): ``r2cnn visualize`` and ``r2cnn report``.

- :mod:`r2cnn.viz.attention`: a checkpoint's per-point attention and the maps the CNN saw, for chosen sketches
  (:class:`AttentionModel`, :class:`SketchView`, :func:`stroke_importance`). No matplotlib.
- :mod:`r2cnn.viz.deletion`: the deletion check, top-1 after removing the k most / least attended strokes.
- :mod:`r2cnn.viz.figures`: matplotlib figures (Agg, PNG and SVG): colour-coded attention maps with non-stroke
  pixels left uncoloured (Fig. 4), the sketching-order encoding (Fig. 5), stroke importance, top-3 predictions,
  and the charts of the report (training curves, confusion matrix, per-class and partial-sketch accuracy).
- :mod:`r2cnn.viz.report`: one static HTML page for a training run, images embedded, opens offline.

Submodules import torch or matplotlib; this package itself imports nothing.
"""
