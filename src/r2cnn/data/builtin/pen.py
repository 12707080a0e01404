"""The pen of the built-in generator: strokes on a unit canvas (y down) with one person's hand-drawn wobble."""

from __future__ import annotations

import numpy as np

TAU = 2.0 * np.pi
STEP = 0.012  # sampling step of drawn paths on the unit canvas (about 3 px of the final 0..255 square)


class Pen:
    """Collects the strokes of one sketch on a unit canvas (y down) and gives them a hand-drawn look.

    Every path is sampled densely; :meth:`points` then displaces it by a smooth wobble (one sinusoid per axis
    along arc length, amplitude and base frequency fixed per sketch: one person's hand; frequency factor and
    phase per stroke) plus small per-point jitter, for all strokes at once.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.strokes: list[np.ndarray] = []
        self.wobble = rng.uniform(0.002, 0.012)
        self.freq = rng.uniform(4.0, 12.0)
        self.jitter = rng.uniform(0.0, 0.0025)

    def add(self, pts: np.ndarray) -> None:
        self.strokes.append(np.asarray(pts, np.float64))

    def points(self, transform: np.ndarray) -> np.ndarray:
        """float32 ``(N, 3)`` x, y, pen_end of all strokes, wobbled, then mapped by the 2x2 ``transform``."""
        rng = self.rng
        lengths = np.array([len(p) for p in self.strokes])
        xy = np.concatenate(self.strokes)
        sid = np.repeat(np.arange(len(lengths)), lengths)
        ends = np.cumsum(lengths)
        d = np.diff(xy, axis=0)
        seg = np.sqrt((d * d).sum(axis=1))
        seg[ends[:-1] - 1] = 0.0  # no arc length across the pen lifts
        arc = np.zeros(len(xy))
        np.cumsum(seg, out=arc[1:])
        arc -= arc[ends - lengths][sid]
        r = rng.random((len(lengths), 4))  # per stroke: frequency factor in [0.7, 1.4) and phase, per axis
        wob = np.sin(arc[:, None] * (self.freq * (0.7 + 0.7 * r[:, :2]))[sid] + TAU * r[sid, 2:])
        noise = self.wobble * wob + rng.normal(0.0, self.jitter, xy.shape)
        xy += noise * (lengths > 1)[sid, None]  # dots got their own offset in :meth:`dot`
        out = np.zeros((len(xy), 3), np.float32)
        out[:, :2] = xy @ transform.T
        out[ends - 1, 2] = 1.0
        return out

    def line(self, p, q) -> None:
        self.add(polyline([p, q]))

    def poly(self, corners, closed: bool = False) -> None:
        corners = list(corners)
        if closed:
            corners.append(corners[0])
        self.add(polyline(corners))

    def ellipse(self, c, rx, ry, start=0.0, sweep=TAU, rot=0.0) -> None:
        self.add(ellipse_path(c, rx, ry, start, sweep, rot))

    def loop(self, c, r) -> None:
        """A closed hand-drawn circle: random start, random direction, a little over- or under-shoot."""
        sweep = self.rng.choice([-1.0, 1.0]) * (TAU + self.rng.uniform(-0.25, 0.5))
        ry = r * self.rng.uniform(0.85, 1.15)
        self.ellipse(c, r, ry, self.rng.uniform(0, TAU), sweep, self.rng.uniform(0, np.pi))

    def dot(self, p) -> None:
        self.strokes.append(np.asarray(p, np.float64).reshape(1, 2) + self.rng.normal(0, 0.003, (1, 2)))


def polyline(corners) -> np.ndarray:
    """Dense samples (about :data:`STEP` apart) along straight segments through ``corners``."""
    c = np.asarray(corners, np.float64)
    seg = c[1:] - c[:-1]
    n = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / STEP)).astype(np.int64)
    idx = np.repeat(np.arange(len(seg)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / n[idx]
    return np.concatenate([c[idx] + seg[idx] * t[:, None], c[-1:]])


def ellipse_path(c, rx, ry, start, sweep, rot) -> np.ndarray:
    n = max(3, int(abs(sweep) * max(rx, ry) / STEP) + 1)
    t = start + np.linspace(0.0, sweep, n)
    x, y = rx * np.cos(t), ry * np.sin(t)
    cr, sr = np.cos(rot), np.sin(rot)
    return np.stack([c[0] + cr * x - sr * y, c[1] + sr * x + cr * y], axis=1)
