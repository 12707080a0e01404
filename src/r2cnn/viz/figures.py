"""Matplotlib figures (object-oriented API on the Agg canvas; no pyplot, no global state), saved as PNG and SVG.

Attention figures follow the paper: colour-coded attention maps in which non-stroke pixels are left uncoloured
(Fig. 4), the grayscale map (Fig. 3), the sketching-order encoding beside it (Fig. 5), top-3 predictions with
successes in green and failures in red (Figs. 4, 6). Maps are drawn in the sketch's normalised coordinates
(``extent`` [-1, 1]^2, y down), the same frame as the strokes, following the pixel convention of
:mod:`r2cnn.raster`. The report's charts (training curves, confusion matrix, per-class and partial-sketch
accuracy, the deletion check) are here too.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from r2cnn.data.formats.common import AtomicWriter
from r2cnn.sketch import Sketch
from r2cnn.viz.attention import SketchView

CMAP = "jet"  # blue (low attention) to red (high), as the paper's figures; the web page (serve/static/colormap.js) uses the same map
SUCCESS, FAILURE = "#1a7f37", "#cf222e"
_EXTENT = (-1.0, 1.0, 1.0, -1.0)  # left, right, bottom, top: row 0 of a map is y = -1 (y points down)


def colour_code(values: np.ndarray, mask: np.ndarray, cmap: str = CMAP, vmin: float = 0.0,
                vmax: float = 1.0) -> np.ndarray:
    """RGBA ``(H, W, 4)`` float in [0, 1]: stroke pixels (``mask`` ``(H, W)`` bool) coloured by ``values``
    ``(H, W)`` on ``cmap`` over ``[vmin, vmax]``; every other pixel is left uncoloured (transparent white,
    ``(1, 1, 1, 0)``), as in the paper's Figs. 4 and 5."""
    rgba = np.zeros((*values.shape, 4))
    rgba[..., :3] = 1.0
    span = max(vmax - vmin, 1e-12)
    rgba[mask] = colormaps[cmap](np.clip((values[mask] - vmin) / span, 0.0, 1.0))
    return rgba


def _frame(ax, title: str | None = None) -> None:
    ax.set_xlim(-1, 1)
    ax.set_ylim(1, -1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def draw_strokes(ax, sketch: Sketch, colours: Sequence | None = None, linewidth: float = 1.6) -> None:
    """The strokes of a normalised sketch, black or one colour per stroke; a one-point stroke is a dot."""
    for s, xy in enumerate(sketch.strokes()):
        colour = "black" if colours is None else colours[s]
        if len(xy) == 1:
            ax.plot(xy[:, 0], xy[:, 1], "o", color=colour, markersize=linewidth * 1.5)
        else:
            ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, linewidth=linewidth, solid_capstyle="round")


def _map_range(view: SketchView, stretch: bool) -> tuple[float, float]:
    """The colour range of a view's attention: [0, 1] (the sigmoid's range, comparable across sketches) or, with
    ``stretch``, the sketch's own attention range."""
    if not stretch or view.attention is None:
        return 0.0, 1.0
    lo, hi = float(view.attention.min()), float(view.attention.max())
    return (lo, hi) if hi - lo > 1e-6 else (0.0, 1.0)


def _predictions(view: SketchView, classes: Sequence[str], name: str, k: int = 3) -> tuple[str, str]:
    """Top-k lines for a view and the colour of its verdict (green success, red failure, black unknown); a tick
    or cross after the name says the same without colour."""
    mark = {None: "", True: " \u2713", False: " \u2717"}[view.correct]
    lines = [f"{name}{mark}"] + [f"{classes[c]} {p:.2f}" for c, p in view.top(k)]
    colour = "black" if view.correct is None else (SUCCESS if view.correct else FAILURE)
    return "\n".join(lines), colour


def _true_name(view: SketchView, classes: Sequence[str]) -> str:
    return "?" if view.label is None else classes[view.label]


def _colourbar(fig, ax, vmin: float, vmax: float, label: str):
    """A colour bar of :data:`CMAP` over [vmin, vmax] beside ``ax`` (one axes or a list of them); returns it."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), CMAP), ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return bar


def sketch_figure(view: SketchView, classes: Sequence[str], *, name: str = "R2CNN",
                  compare: SketchView | None = None, compare_name: str = "compared", stretch: bool = False,
                  where: str | None = None) -> Figure:
    """Everything about one sketch: input strokes, attention grayscale and colour-coded (per channel on a second
    row when C > 1), the sketching-order encoding, strokes coloured by their mean attention, the strokes ranked
    by it, and the top-3 of the model (and of ``compare``). ``where`` names the sketch in the title, in the
    numbering of the files and printed lines (``r2cnn visualize``: ``"test #11"`` for ``sketch-test-11.png``);
    without it, the view's store index, so named."""
    has_att = view.attention is not None
    channels = view.attention.shape[1] if has_att else 0
    cols = 7 if has_att else 3
    rows = 2 if channels > 1 else 1
    fig = Figure(figsize=(2.3 * cols, 2.5 * rows), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    truth = _true_name(view, classes)
    if where is None and view.index is not None:
        where = f"store index {view.index}"
    fig.suptitle(f"true class: {truth}" + (f" ({where})" if where else ""), fontsize=10)
    top = list(axes[0])

    ax = top.pop(0)
    ax.set_axis_on()
    draw_strokes(ax, view.sketch)
    _frame(ax, "input strokes")
    if has_att:
        vmin, vmax = _map_range(view, stretch)
        mean_map = view.attention_map.mean(axis=0)
        ax = top.pop(0)
        ax.set_axis_on()
        ax.imshow(mean_map, cmap="gray", vmin=vmin, vmax=vmax, extent=_EXTENT, interpolation="nearest")
        _frame(ax, "attention (grayscale)" + (f", mean of {channels} ch." if channels > 1 else ""))
        ax = top.pop(0)
        ax.set_axis_on()
        ax.imshow(colour_code(mean_map, view.stroke_mask, vmin=vmin, vmax=vmax), extent=_EXTENT,
                  interpolation="nearest")
        _frame(ax, "attention (colour-coded)")
        _colourbar(fig, ax, vmin, vmax, "attention")
    ax = top.pop(0)
    ax.set_axis_on()
    ax.imshow(colour_code(view.order_map, view.stroke_mask), extent=_EXTENT, interpolation="nearest")
    _frame(ax, "sketching order (Fig. 5)")
    if has_att:
        importance = view.importance
        colours = colormaps[CMAP](np.clip((importance - vmin) / max(vmax - vmin, 1e-12), 0, 1))
        ax = top.pop(0)
        ax.set_axis_on()
        draw_strokes(ax, view.sketch, colours, linewidth=2.2)
        _frame(ax, "stroke mean attention")
        ax = top.pop(0)
        ax.set_axis_on()
        _importance_bars(ax, importance, colours)
    ax = top.pop(0)
    text, colour = _predictions(view, classes, name)
    ax.text(0.0, 1.0, text, va="top", ha="left", fontsize=9, color=colour, transform=ax.transAxes)
    if compare is not None:
        text, colour = _predictions(compare, classes, compare_name)
        ax.text(0.0, 0.45, text, va="top", ha="left", fontsize=9, color=colour, transform=ax.transAxes)
    if channels > 1:
        for c, ax in enumerate(axes[1][:channels]):
            ax.set_axis_on()
            ax.imshow(colour_code(view.attention_map[c], view.stroke_mask, vmin=vmin, vmax=vmax), extent=_EXTENT,
                      interpolation="nearest")
            _frame(ax, f"channel {c}")
    return fig


def _importance_bars(ax, importance: np.ndarray, colours: np.ndarray, show: int = 15) -> None:
    """Horizontal bars, strokes ranked by mean attention (highest on top), labelled by drawing-order number."""
    order = np.argsort(-importance, kind="stable")[:show]
    y = np.arange(len(order))
    ax.barh(y, importance[order], color=colours[order])
    ax.set_yticks(y, [f"stroke {i + 1}" for i in order], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(importance.max())))
    ax.tick_params(axis="x", labelsize=6)
    more = f" (top {show} of {len(importance)})" if len(importance) > show else ""
    ax.set_title("strokes ranked" + more, fontsize=9)


def overview_figure(views: Sequence[SketchView], classes: Sequence[str], *, name: str = "R2CNN",
                    compare: Sequence[SketchView] | None = None, compare_name: str = "compared",
                    columns: int = 6, stretch: bool = False, where: Sequence[str] | None = None) -> Figure:
    """Paper Fig. 4 (with ``compare``) / Fig. 6 layout for several sketches: per sketch a column of the input
    strokes (under it the compared model's top-3), the colour-coded attention (under it this model's top-3) and
    the sketching-order encoding (Fig. 5). Top-3 in green for a success, red for a failure. A colour bar beside
    the attention row gives its scale ([0, 1], or with ``stretch`` each sketch's own low to high), one beside the
    order row the order's. ``where``: each sketch's name before its class (as in :func:`sketch_figure`)."""
    has_att = bool(views) and views[0].attention is not None
    block = 2 + int(has_att)
    cols = max(1, min(columns, len(views)))
    groups = -(-len(views) // cols)
    fig = Figure(figsize=(2.0 * cols, 2.6 * block * groups), dpi=100, layout="constrained")
    axes = fig.subplots(block * groups, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, view in enumerate(views):
        g, c = divmod(i, cols)
        col = [axes[g * block + r][c] for r in range(block)]
        for ax in col:
            ax.set_axis_on()
        draw_strokes(col[0], view.sketch)
        _frame(col[0], (f"{where[i]}: " if where else "") + _true_name(view, classes))
        if compare is not None:
            text, colour = _predictions(compare[i], classes, compare_name)
            col[0].set_xlabel(text, fontsize=7, color=colour)
        if has_att:
            vmin, vmax = _map_range(view, stretch)
            col[1].imshow(colour_code(view.attention_map.mean(axis=0), view.stroke_mask, vmin=vmin, vmax=vmax),
                          extent=_EXTENT, interpolation="nearest")
            _frame(col[1], "attention")
        text, colour = _predictions(view, classes, name)
        col[block - 2].set_xlabel(text, fontsize=7, color=colour)
        col[-1].imshow(colour_code(view.order_map, view.stroke_mask), extent=_EXTENT, interpolation="nearest")
        _frame(col[-1], "sketching order")
    rows = lambda r: [axes[g * block + r][c] for g in range(groups) for c in range(cols)]
    if has_att:
        bar = _colourbar(fig, rows(1), 0.0, 1.0, "attention, each sketch's own range" if stretch else "attention")
        if stretch:
            bar.set_ticks([0.0, 1.0], labels=["low", "high"])
    _colourbar(fig, rows(block - 1), 0.0, 1.0, "order: 1 first point, 0 last")
    return fig


def sketches_figure(sketches: Sequence[Sketch], titles: Sequence[str], colours: Sequence[str] | None = None,
                    columns: int = 6) -> Figure:
    """A grid of sketches (normalised) with a title under each, e.g. misclassified examples of a class."""
    cols = max(1, min(columns, len(sketches)))
    rows = max(1, -(-len(sketches) // cols))
    fig = Figure(figsize=(1.7 * cols, 1.9 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (sketch, title) in enumerate(zip(sketches, titles)):
        ax = axes[i // cols][i % cols]
        ax.set_axis_on()
        draw_strokes(ax, sketch, linewidth=1.2)
        _frame(ax)
        ax.set_xlabel(title, fontsize=7, color="black" if colours is None else colours[i])
    return fig


def deletion_figure(result: dict) -> Figure:
    """Top-1 against the number of removed strokes, one line per arm of the deletion check."""
    fig = Figure(figsize=(4.8, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    ks = result["ks"]
    for arm, style in (("most", "o-"), ("least", "s-"), ("random", "^--")):
        ax.plot(ks, [result["top1"][arm][str(k)] for k in ks], style, label=f"{arm} attended removed"
                if arm != "random" else "random strokes removed")
    ax.set_xticks(ks)
    ax.set_xlabel("strokes removed (k)")
    ax.set_ylabel("top-1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"deletion check ({result['count']} sketches)", fontsize=10)
    return fig


def training_curves_figure(records: Sequence[dict]) -> Figure:
    """Loss and accuracy against the step from a run's ``log.jsonl`` records (:mod:`r2cnn.engine.log`)."""
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    fig = Figure(figsize=(9, 3.2), dpi=100, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    if train:
        steps = [r["step"] for r in train]
        loss_ax.plot(steps, [r["loss"] for r in train], label="train loss")
        acc_ax.plot(steps, [r["acc"] for r in train], label="train top-1 (running)", alpha=0.7)
    if valid:
        steps = [r["step"] for r in valid]
        acc_ax.plot(steps, [r["top1"] for r in valid], "o-", label="valid top-1")
        acc_ax.plot(steps, [r["top5"] for r in valid], "s--", label="valid top-5")
    for ax, label in ((loss_ax, "cross-entropy"), (acc_ax, "accuracy")):
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    acc_ax.set_ylim(0, 1)
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (rows: true class, columns: predicted); names shown up to 40 classes."""
    m = np.asarray(confusion, np.float64)
    m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    side = min(10.0, 2.5 + 0.28 * k)
    fig = Figure(figsize=(side + 1, side), dpi=100, layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(m, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        if k <= 15:
            for t in range(k):
                for p in range(k):
                    if m[t, p] >= 0.005:
                        ax.text(p, t, f"{m[t, p]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if m[t, p] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    return fig


def per_class_figure(per_class: dict) -> Figure:
    """Per-class top-1, sorted from the worst class; class names shown up to 60 classes."""
    items = sorted((acc, name) for name, acc in per_class.items() if acc is not None)
    fig = Figure(figsize=(min(12.0, 2 + 0.25 * len(items)), 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(items))
    ax.bar(x, [a for a, _ in items], color=[colormaps["RdYlGn"](a) for a, _ in items])
    if len(items) <= 60:
        ax.set_xticks(x, [n for _, n in items], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1")
    ax.grid(axis="y", alpha=0.3)
    return fig


def partial_figure(partial: dict) -> Figure:
    """Top-1 on partial sketches (first 25/50/75/100 % of the strokes), as :mod:`r2cnn.engine.evaluate` reports."""
    fractions = sorted(partial, key=float)
    fig = Figure(figsize=(4.5, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.plot([100 * float(f) for f in fractions], [partial[f] for f in fractions], "o-")
    ax.set_xlabel("strokes given (% of the sketch, in drawing order)")
    ax.set_ylabel("top-1")
    ax.set_ylim(0, 1)
    ax.set_xticks([100 * float(f) for f in fractions])
    ax.grid(alpha=0.3)
    return fig


def save(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (or ``formats``), each atomically; returns the paths."""
    stem = Path(stem)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with AtomicWriter(path, compress=False) as f:
            fig.savefig(f, format=fmt)
        paths.append(path)
    return paths


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
