"""Built-in data: a procedural sketch generator, so the main job, tests and demos run without any download.

Twelve classes drawn the way people draw them in Quick, Draw!: wobbly strokes in a typical (but not fixed)
order, varying shape, proportions, stroke count and detail, sometimes with distractor strokes. Some classes
share parts on purpose (house / envelope: a rectangle with a triangle; sun / flower: a circle with things around
it; umbrella / cup / fish: arcs), so a classifier has to look at the arrangement. Coordinates end as Quick, Draw!
*simplified* data: ints in 0..255 (longest side 255), RDP epsilon 2 (:func:`r2cnn.data.transforms.raw_to_simplified`).
How each class is drawn: ``docs/builtin-data.md``.

- :data:`CLASSES`: class names.
- :func:`draw`: one sketch of a class from a ``numpy.random.Generator``.
- :func:`generate`: ``n_per_class`` sketches of every class, deterministic by ``seed`` (:func:`iterate`: lazily).
- :func:`split_sizes`: how a store of built-in sketches alone is split (``r2cnn prepare --builtin N`` without
  ``--split-sizes``, ``r2cnn demo``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

__all__ = ["CLASSES", "draw", "generate", "iterate", "key_id", "split_sizes"]

TAU = 2.0 * np.pi
_STEP = 0.012  # sampling step of drawn paths on the unit canvas (about 3 px of the final 0..255 square)


class _Pen:
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
        self.add(_polyline([p, q]))

    def poly(self, corners, closed: bool = False) -> None:
        corners = list(corners)
        if closed:
            corners.append(corners[0])
        self.add(_polyline(corners))

    def ellipse(self, c, rx, ry, start=0.0, sweep=TAU, rot=0.0) -> None:
        self.add(_ellipse(c, rx, ry, start, sweep, rot))

    def loop(self, c, r) -> None:
        """A closed hand-drawn circle: random start, random direction, a little over- or under-shoot."""
        sweep = self.rng.choice([-1.0, 1.0]) * (TAU + self.rng.uniform(-0.25, 0.5))
        ry = r * self.rng.uniform(0.85, 1.15)
        self.ellipse(c, r, ry, self.rng.uniform(0, TAU), sweep, self.rng.uniform(0, np.pi))

    def dot(self, p) -> None:
        self.strokes.append(np.asarray(p, np.float64).reshape(1, 2) + self.rng.normal(0, 0.003, (1, 2)))


def _polyline(corners) -> np.ndarray:
    """Dense samples (about :data:`_STEP` apart) along straight segments through ``corners``."""
    c = np.asarray(corners, np.float64)
    seg = c[1:] - c[:-1]
    n = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / _STEP)).astype(np.int64)
    idx = np.repeat(np.arange(len(seg)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / n[idx]
    return np.concatenate([c[idx] + seg[idx] * t[:, None], c[-1:]])


def _ellipse(c, rx, ry, start, sweep, rot) -> np.ndarray:
    n = max(3, int(abs(sweep) * max(rx, ry) / _STEP) + 1)
    t = start + np.linspace(0.0, sweep, n)
    x, y = rx * np.cos(t), ry * np.sin(t)
    cr, sr = np.cos(rot), np.sin(rot)
    return np.stack([c[0] + cr * x - sr * y, c[1] + sr * x + cr * y], axis=1)


def _u(rng, lo, hi):
    return rng.uniform(lo, hi)


# ----------------------------------------------------------------------------------------------------------------
# the classes: each drawer puts the object's strokes on the pen in a typical order (with variations)

def _sun(pen: _Pen, rng) -> None:
    c = np.array([_u(rng, 0.42, 0.58), _u(rng, 0.42, 0.58)])
    r = _u(rng, 0.14, 0.26)
    n = int(rng.integers(6, 15))
    a0, direction = _u(rng, 0, TAU), rng.choice([-1.0, 1.0])
    angles = a0 + direction * TAU * (np.arange(n) + rng.uniform(-0.15, 0.15, n)) / n
    inner, outer = r * _u(rng, 1.1, 1.35), r * _u(rng, 1.5, 2.0)
    rays_first = rng.random() < 0.1
    if not rays_first:
        pen.loop(c, r)
    if rng.random() < 0.2:  # rays as one zig-zag stroke around the disc
        half = direction * np.pi / n
        a = np.stack([angles, angles + half], axis=1).ravel()
        rad = np.tile([inner, outer], n)
        zig = c + rad[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1)
        pen.poly(np.concatenate([zig, zig[:1]]))
    else:
        for a in angles:
            d = np.array([np.cos(a), np.sin(a)])
            pen.line(c + inner * d, c + outer * d * rng.uniform(0.9, 1.1))
    if rays_first:
        pen.loop(c, r)
    if rng.random() < 0.25:  # a face
        e = r * 0.35
        pen.dot(c + [-e, -e * 0.6])
        pen.dot(c + [e, -e * 0.6])
        pen.ellipse(c + [0, e * 0.2], e * 1.2, e * 0.9, 0.3, np.pi - 0.6)


def _flower(pen: _Pen, rng) -> None:
    c = np.array([_u(rng, 0.4, 0.6), _u(rng, 0.25, 0.4)])
    r = _u(rng, 0.05, 0.09)
    n = int(rng.integers(5, 9))
    a0 = _u(rng, 0, TAU)
    petal_len = r * _u(rng, 1.3, 2.2)
    centre_first = rng.random() < 0.7
    if centre_first:
        pen.loop(c, r)
    if rng.random() < 0.3:  # petals as one scalloped stroke
        t = a0 + np.linspace(0.0, TAU, 40 * n)
        rad = r * 1.05 + petal_len * np.abs(np.sin(t * n / 2.0))
        pen.add(c + rad[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1))
    else:
        for k in range(n):
            a = a0 + TAU * k / n
            d = np.array([np.cos(a), np.sin(a)])
            pen.ellipse(c + d * (r + petal_len / 2), petal_len / 2, petal_len * _u(rng, 0.25, 0.4),
                        np.pi, TAU, a)
    if not centre_first:
        pen.loop(c, r)
    top = c + [0, r + petal_len]
    bottom = np.array([c[0] + _u(rng, -0.08, 0.08), _u(rng, 0.85, 0.95)])
    pen.add(_ellipse((top + bottom) / 2, 0.02 * rng.choice([-1, 1]), (bottom[1] - top[1]) / 2, -np.pi / 2, np.pi, 0))
    for k in range(int(rng.integers(0, 3))):  # leaves on the stem
        p = top + (bottom - top) * _u(rng, 0.35, 0.75)
        side = 1 if k % 2 == 0 else -1
        tip = p + [side * _u(rng, 0.1, 0.18), -_u(rng, 0.02, 0.08)]
        mid, half = (p + tip) / 2, np.hypot(*(tip - p)) / 2
        ang = np.arctan2(*(tip - p)[::-1])
        pen.ellipse(mid, half, half * 0.4, np.pi, TAU, ang)
    if rng.random() < 0.2:  # ground or pot line
        pen.line([bottom[0] - 0.2, bottom[1]], [bottom[0] + 0.2, bottom[1]])


def _house(pen: _Pen, rng) -> None:
    w, h = _u(rng, 0.45, 0.75), _u(rng, 0.3, 0.5)
    x0, y0 = 0.5 - w / 2, _u(rng, 0.85, 0.92) - h
    bl, br, tr, tl = [x0, y0 + h], [x0 + w, y0 + h], [x0 + w, y0], [x0, y0]
    apex = [0.5 + _u(rng, -0.08, 0.08), y0 - _u(rng, 0.2, 0.35)]
    over = _u(rng, 0.0, 0.06)
    if rng.random() < 0.25:  # roof first
        pen.poly([[x0 - over, y0], apex, [x0 + w + over, y0]])
        pen.poly([tl, bl, br, tr], closed=rng.random() < 0.5)
    elif rng.random() < 0.3:  # outline as one stroke: walls up into the roof
        pen.poly([bl, tl, apex, tr, br, bl])
    else:
        pen.poly([tl, bl, br, tr, tl] if rng.random() < 0.6 else [tl, bl, br, tr])
        pen.poly([[x0 - over, y0], apex, [x0 + w + over, y0]])
    if rng.random() < 0.85:  # door
        dw, dh = w * _u(rng, 0.15, 0.25), h * _u(rng, 0.4, 0.6)
        dx = x0 + w * _u(rng, 0.2, 0.8) - dw / 2
        pen.poly([[dx, y0 + h], [dx, y0 + h - dh], [dx + dw, y0 + h - dh], [dx + dw, y0 + h]])
    for _ in range(int(rng.integers(0, 3))):  # windows
        s = w * _u(rng, 0.1, 0.18)
        wx, wy = x0 + w * _u(rng, 0.1, 0.75), y0 + h * _u(rng, 0.15, 0.35)
        pen.poly([[wx, wy], [wx + s, wy], [wx + s, wy + s], [wx, wy + s]], closed=True)
        if rng.random() < 0.5:
            pen.line([wx + s / 2, wy], [wx + s / 2, wy + s])
            pen.line([wx, wy + s / 2], [wx + s, wy + s / 2])
    if rng.random() < 0.3:  # chimney on the roof's right slope
        t = _u(rng, 0.4, 0.7)
        base = np.array(apex) + (np.array([x0 + w + over, y0]) - apex) * t
        cw = w * 0.08
        pen.poly([base, base + [0, -0.12], base + [cw, -0.12], base + [cw, 0.02]])


def _envelope(pen: _Pen, rng) -> None:
    w = _u(rng, 0.6, 0.85)
    h = w / _u(rng, 1.3, 1.9)
    x0, y0 = 0.5 - w / 2, 0.5 - h / 2
    tl, tr, br, bl = [x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]
    tip = [0.5 + _u(rng, -0.05, 0.05), y0 + h * _u(rng, 0.4, 0.65)]
    if rng.random() < 0.15:  # flap first
        pen.poly([tl, tip, tr])
        pen.poly([tl, bl, br, tr, tl])
    else:
        pen.poly([tl, tr, br, bl], closed=True)
        pen.poly([tl, tip, tr])
    if rng.random() < 0.3:  # bottom folds
        pen.line(bl, [tip[0] - w * 0.1, tip[1] + h * 0.1])
        pen.line(br, [tip[0] + w * 0.1, tip[1] + h * 0.1])
    if rng.random() < 0.25:  # stamp
        s = w * 0.12
        pen.poly([[x0 + w - 1.6 * s, y0 + 0.3 * s], [x0 + w - 0.4 * s, y0 + 0.3 * s],
                  [x0 + w - 0.4 * s, y0 + 1.3 * s], [x0 + w - 1.6 * s, y0 + 1.3 * s]], closed=True)
    if rng.random() < 0.2:  # address lines
        for k in range(int(rng.integers(1, 4))):
            y = y0 + h * (0.7 + 0.09 * k)
            pen.line([x0 + w * 0.35, y], [x0 + w * 0.7, y])


def _tree(pen: _Pen, rng) -> None:
    tw = _u(rng, 0.06, 0.14)
    ground = _u(rng, 0.88, 0.95)
    crown_y = _u(rng, 0.45, 0.6)
    cx = 0.5 + _u(rng, -0.05, 0.05)
    pine = rng.random() < 0.3
    trunk_first = rng.random() < 0.5

    def trunk():
        if rng.random() < 0.6:
            pen.line([cx - tw / 2, crown_y], [cx - tw / 2, ground])
            pen.line([cx + tw / 2, crown_y], [cx + tw / 2, ground])
        else:
            pen.poly([[cx - tw / 2, crown_y], [cx - tw / 2, ground], [cx + tw / 2, ground], [cx + tw / 2, crown_y]])

    def crown():
        if pine:
            levels = int(rng.integers(1, 4))
            top = _u(rng, 0.05, 0.15)
            for k in range(levels):
                y_top = top + (crown_y - top) * k / levels * 0.8
                y_bot = top + (crown_y - top) * (k + 1) / levels
                half = _u(rng, 0.2, 0.32) * (k + 1) / levels + 0.08
                pen.poly([[cx - half, y_bot], [cx, y_top], [cx + half, y_bot], [cx - half, y_bot]])
        else:
            r = _u(rng, 0.22, 0.32)
            c = np.array([cx, crown_y - r * 0.8])
            bumps = int(rng.integers(0, 9))
            t = np.linspace(0, TAU + 0.2, 200) + _u(rng, 0, TAU)
            rad = r * (1.0 + (0.12 * np.abs(np.sin(t * bumps / 2)) if bumps > 4 else np.zeros_like(t)))
            pen.add(c + rad[:, None] * np.stack([np.cos(t), np.sin(t) * _u(rng, 0.8, 1.0)], axis=1))
            for _ in range(int(rng.integers(0, 5)) if rng.random() < 0.25 else 0):  # fruit
                a, d = _u(rng, 0, TAU), r * _u(rng, 0.2, 0.7)
                pen.loop(c + d * np.array([np.cos(a), np.sin(a)]), 0.02)

    if trunk_first:
        trunk()
        crown()
    else:
        crown()
        trunk()
    if rng.random() < 0.3:
        pen.line([cx - _u(rng, 0.2, 0.4), ground], [cx + _u(rng, 0.2, 0.4), ground])


def _car(pen: _Pen, rng) -> None:
    L, H = _u(rng, 0.7, 0.9), _u(rng, 0.12, 0.2)
    x0, base = 0.5 - L / 2, _u(rng, 0.6, 0.7)
    roof_h = _u(rng, 0.1, 0.2)
    r0, r1 = x0 + L * _u(rng, 0.2, 0.3), x0 + L * _u(rng, 0.62, 0.75)
    s0, s1 = r0 - _u(rng, 0.03, 0.1), r1 + _u(rng, 0.03, 0.12)
    wr = _u(rng, 0.06, 0.09)
    w0, w1 = x0 + L * _u(rng, 0.18, 0.25), x0 + L * _u(rng, 0.75, 0.82)
    body = [[x0, base], [x0, base - H], [s0, base - H], [r0, base - H - roof_h], [r1, base - H - roof_h],
            [s1, base - H], [x0 + L, base - H * _u(rng, 0.7, 1.0)], [x0 + L, base], [x0, base]]
    if rng.random() < 0.5:
        body = body[::-1]
    wheels_first = rng.random() < 0.2
    if not wheels_first:
        pen.poly(body)
    for w in ([w0, w1] if rng.random() < 0.8 else [w1, w0]):
        pen.loop([w, base], wr)
        if rng.random() < 0.2:
            pen.dot([w, base])
    if wheels_first:
        pen.poly(body)
    if rng.random() < 0.7:  # windows
        m = (r0 + r1) / 2
        top, bot = base - H - roof_h * 0.8, base - H - 0.01
        pen.poly([[s0 + 0.04, bot], [r0 + 0.015, top], [m - 0.01, top], [m - 0.01, bot]], closed=True)
        if rng.random() < 0.7:
            pen.poly([[m + 0.01, bot], [m + 0.01, top], [r1 - 0.015, top], [s1 - 0.04, bot]], closed=True)
    if rng.random() < 0.3:  # headlight
        pen.loop([x0 + L - 0.03, base - H * 0.6], 0.015)


def _fish(pen: _Pen, rng) -> None:
    L, H = _u(rng, 0.45, 0.65), _u(rng, 0.22, 0.38)
    c = np.array([0.45, 0.5])
    tail = c - [L / 2, 0]
    face_left = rng.random() < 0.35  # mirrored fish
    sgn = -1.0 if face_left else 1.0
    tl = _u(rng, 0.12, 0.22)
    if rng.random() < 0.35:  # "alpha" fish: two arcs crossing at the tail, one stroke
        t = np.linspace(-np.pi * 0.8, np.pi * 0.8, 120)
        x = np.concatenate([[tail[0] - tl], c[0] + L / 2 * np.cos(t), [tail[0] - tl]])
        y = np.concatenate([[c[1] + H * 0.45], c[1] + H / 2 * np.sin(t), [c[1] - H * 0.45]])
        pen.add(np.stack([c[0] + sgn * (x - c[0]), y], axis=1))
    else:
        pen.ellipse(c, L / 2, H / 2, _u(rng, -0.3, 0.3), rng.choice([-1, 1]) * (TAU + _u(rng, -0.2, 0.3)), 0)
        pts = [tail, [tail[0] - tl, c[1] - H * 0.4], [tail[0] - tl, c[1] + H * 0.4], tail]
        pen.poly([[c[0] + sgn * (p[0] - c[0]), p[1]] for p in pts])
    eye = [c[0] + sgn * L * 0.3, c[1] - H * 0.12]
    if rng.random() < 0.5:
        pen.dot(eye)
    else:
        pen.loop(eye, 0.025)
    if rng.random() < 0.4:  # gill arc
        pen.ellipse([c[0] + sgn * L * 0.15, c[1]], 0.03, H * 0.3, -np.pi / 2, np.pi, 0 if sgn > 0 else np.pi)
    if rng.random() < 0.3:  # dorsal fin
        pen.poly([[c[0] - 0.08, c[1] - H / 2 + 0.01], [c[0] - sgn * 0.02, c[1] - H / 2 - 0.1],
                  [c[0] + 0.08, c[1] - H / 2 + 0.01]])
    for _ in range(int(rng.integers(1, 4)) if rng.random() < 0.3 else 0):  # bubbles
        pen.loop([c[0] + sgn * (L / 2 + _u(rng, 0.04, 0.12)), c[1] - _u(rng, 0.1, 0.3)], _u(rng, 0.015, 0.035))


def _star(pen: _Pen, rng) -> None:
    c = np.array([0.5, 0.52])
    R = _u(rng, 0.3, 0.42)
    a0 = -np.pi / 2 + _u(rng, -0.2, 0.2)
    outer = c + R * np.stack([np.cos(a0 + TAU * np.arange(5) / 5), np.sin(a0 + TAU * np.arange(5) / 5)], axis=1)
    outer[:, 1] += rng.normal(0, 0.02, 5)
    start = int(rng.integers(0, 5))
    if rng.random() < 0.55:  # pentagram: every second vertex, one stroke
        order = [(start + 2 * k) % 5 for k in range(6)]
        pts = outer[order]
        if rng.random() < 0.3:  # two strokes
            pen.poly(pts[:3])
            pen.poly(pts[2:])
        else:
            pen.poly(pts)
    else:  # outline star
        ri = R * _u(rng, 0.35, 0.5)
        inner = c + ri * np.stack([np.cos(a0 + TAU * (np.arange(5) + 0.5) / 5),
                                   np.sin(a0 + TAU * (np.arange(5) + 0.5) / 5)], axis=1)
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner
        pts = np.roll(pts, -2 * start, axis=0)
        if rng.random() < 0.5:
            pts = pts[::-1]
        pen.poly(pts, closed=True)
    if rng.random() < 0.15:  # a small face or sparkle
        pen.line(c + [-0.02, 0], c + [0.02, 0])


def _cup(pen: _Pen, rng) -> None:
    w_top, h = _u(rng, 0.35, 0.55), _u(rng, 0.4, 0.6)
    w_bot = w_top * _u(rng, 0.65, 1.0)
    cx, y0 = 0.45, _u(rng, 0.25, 0.35)
    tl, tr = [cx - w_top / 2, y0], [cx + w_top / 2, y0]
    bl, br = [cx - w_bot / 2, y0 + h], [cx + w_bot / 2, y0 + h]
    rim_first = rng.random() < 0.5
    if rim_first:
        if rng.random() < 0.6:
            pen.ellipse([cx, y0], w_top / 2, _u(rng, 0.02, 0.06), 0, TAU + 0.2, 0)
        else:
            pen.line(tl, tr)
    pen.poly([tl, bl, br, tr] if rng.random() < 0.7 else [tr, br, bl, tl])
    if not rim_first and rng.random() < 0.6:
        pen.line(tl, tr)
    side = 1 if rng.random() < 0.8 else -1
    hx = cx + side * (w_top + w_bot) / 4
    hh = h * _u(rng, 0.35, 0.6)
    hy = y0 + h * _u(rng, 0.2, 0.35) + hh / 2
    pen.ellipse([hx, hy], _u(rng, 0.08, 0.14), hh / 2, -np.pi / 2 if side > 0 else np.pi / 2, np.pi, 0)
    if rng.random() < 0.3:  # steam
        for k in range(int(rng.integers(1, 4))):
            x = cx + (k - 1) * w_top * 0.25
            t = np.linspace(0, 1, 30)
            pen.add(np.stack([x + 0.025 * np.sin(t * TAU * 1.5), y0 - 0.04 - 0.15 * t], axis=1))
    if rng.random() < 0.3:  # saucer
        pen.ellipse([cx, y0 + h + 0.01], w_bot * 0.9, 0.04, 0, TAU + 0.2, 0)


def _umbrella(pen: _Pen, rng) -> None:
    c = np.array([0.5, _u(rng, 0.38, 0.48)])
    R = _u(rng, 0.3, 0.42)
    ry = R * _u(rng, 0.55, 0.95)
    if rng.random() < 0.6:  # canopy from the left, over the top
        pen.ellipse(c, R, ry, np.pi, np.pi, 0)
    else:
        pen.ellipse(c, R, ry, 0, -np.pi, 0)
    k = int(rng.integers(2, 6))
    if rng.random() < 0.75:  # scalloped lower edge, one stroke
        t = np.linspace(0, 1, 30 * k)
        x = c[0] - R + 2 * R * t
        y = c[1] - 0.05 * R * np.abs(np.sin(t * k * np.pi)) * 1.5
        pen.add(np.stack([x, y], axis=1))
    else:
        pen.line(c - [R, 0], c + [R, 0])
    if rng.random() < 0.4:  # ribs
        for j in range(1, k):
            x = c[0] - R + 2 * R * j / k
            pen.line([c[0], c[1] - ry], [x, c[1]])
    shaft_bot = c[1] + _u(rng, 0.3, 0.45)
    pen.line([c[0], c[1] - ry * (1.0 if rng.random() < 0.5 else 0.0)], [c[0], shaft_bot])
    hook = _u(rng, 0.04, 0.07) * rng.choice([-1, 1])
    pen.ellipse([c[0] + hook, shaft_bot], abs(hook), abs(hook), 0 if hook > 0 else np.pi,
                np.pi if hook > 0 else -np.pi, 0)
    if rng.random() < 0.2:  # rain
        for _ in range(int(rng.integers(2, 6))):
            p = np.array([_u(rng, 0.1, 0.9), _u(rng, 0.02, 0.2)])
            pen.line(p, p + [0.0, 0.05])


def _ladder(pen: _Pen, rng) -> None:
    w, top = _u(rng, 0.22, 0.4), _u(rng, 0.04, 0.12)
    bot = _u(rng, 0.88, 0.96)
    lean = _u(rng, -0.08, 0.08)
    spread = _u(rng, 0.0, 0.06)
    left = np.array([[0.5 - w / 2 + lean, top], [0.5 - w / 2 - spread, bot]])
    right = np.array([[0.5 + w / 2 + lean, top], [0.5 + w / 2 + spread, bot]])
    right_rail_second = rng.random() < 0.8
    pen.line(*left)
    if right_rail_second:
        pen.line(*right)
    n = int(rng.integers(3, 9))
    ts = (np.arange(n) + 0.5) / n + rng.normal(0, 0.01, n)
    if rng.random() < 0.25:
        ts = ts[::-1]
    for t in ts:
        a, b = left[0] + (left[1] - left[0]) * t, right[0] + (right[1] - right[0]) * t
        if rng.random() < 0.85:
            pen.line(a, b)
        else:
            pen.line(b, a)
    if not right_rail_second:
        pen.line(*right)


def _spiral(pen: _Pen, rng) -> None:
    turns = _u(rng, 2.0, 4.0)
    R = _u(rng, 0.3, 0.45)
    t = np.linspace(0, turns * TAU, int(turns * 90))
    r = R * (t / t[-1]) ** _u(rng, 0.8, 1.2)
    sgn = rng.choice([-1.0, 1.0])
    a = _u(rng, 0, TAU) + sgn * t
    pts = np.array([0.5, 0.5]) + r[:, None] * np.stack([np.cos(a), np.sin(a) * _u(rng, 0.8, 1.1)], axis=1)
    if rng.random() < 0.2:
        pts = pts[::-1]
    if rng.random() < 0.15:  # drawn in two pieces
        k = len(pts) // 2
        pen.add(pts[:k + 1])
        pen.add(pts[k:])
    else:
        pen.add(pts)


_DRAWERS = {
    "sun": _sun, "flower": _flower, "house": _house, "envelope": _envelope, "tree": _tree, "car": _car,
    "fish": _fish, "star": _star, "cup": _cup, "umbrella": _umbrella, "ladder": _ladder, "spiral": _spiral,
}
CLASSES: list[str] = list(_DRAWERS)


def _distractors(pen: _Pen, rng) -> None:
    """Strokes that are not part of the object: a short line, a dot, a scribble, a small circle."""
    for _ in range(int(rng.integers(1, 3))):
        p = rng.uniform(0.05, 0.95, 2)
        kind = rng.integers(0, 4)
        if kind == 0:
            pen.line(p, p + rng.normal(0, 0.08, 2))
        elif kind == 1:
            pen.dot(p)
        elif kind == 2:
            pen.add(p + np.cumsum(rng.normal(0, 0.03, (int(rng.integers(3, 8)), 2)), axis=0))
        else:
            pen.loop(p, _u(rng, 0.02, 0.05))


def draw(class_name: str, rng: np.random.Generator) -> Sketch:
    """One sketch of ``class_name`` (a name in :data:`CLASSES`), 0..255 int coordinates like Quick, Draw!
    simplified data; ``label`` is the class name, ``meta`` is empty (see :func:`generate`)."""
    from r2cnn.data.transforms import raw_to_simplified  # numba compiles on first use; keep import light

    try:
        drawer = _DRAWERS[class_name]
    except KeyError:
        raise R2CNNError(f"unknown built-in class {class_name!r}; classes: {', '.join(CLASSES)}") from None
    pen = _Pen(rng)
    distract_first = rng.random() < 0.05
    distract = rng.random() < 0.25
    if distract and distract_first:
        _distractors(pen, rng)
    drawer(pen, rng)
    if distract and not distract_first:
        _distractors(pen, rng)
    # the whole drawing: small rotation and anisotropic scaling (people draw at different angles and aspect)
    a = rng.normal(0.0, 0.08)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag(np.exp(rng.normal(0, 0.1, 2)))
    # paths are already sampled about every 3 output pixels, so Google's 1-pixel resampling would change nothing
    return raw_to_simplified(Sketch(pen.points(m), class_name), spacing=None)


_KEY_BASE = 1 << 40


def key_id(seed: int, class_index: int, index: int) -> int:
    """The ``meta["key_id"]`` of built-in sketch ``index`` of class ``class_index`` generated with ``seed``:
    ``seed * 2**40 + class_index * 2**32 + index`` (unique for seeds < 2**23, < 256 classes, < 2**32 per class)."""
    return int(seed) * _KEY_BASE + class_index * (1 << 32) + index


def iterate(n_per_class: int, seed: int = 0, classes: list[str] | None = None) -> Iterator[Sketch]:
    """The sketches of :func:`generate`, one at a time (memory stays flat for millions of sketches)."""
    if n_per_class < 0:
        raise R2CNNError(f"n_per_class must be >= 0, not {n_per_class}")
    if not 0 <= seed < (1 << 23):
        raise R2CNNError(f"built-in data seed must be in [0, 2**23), not {seed}")
    names = CLASSES if classes is None else list(classes)
    for name in names:
        if name not in _DRAWERS:
            raise R2CNNError(f"unknown built-in class {name!r}; classes: {', '.join(CLASSES)}")
    for name in names:
        c = CLASSES.index(name)
        for i in range(n_per_class):
            sketch = draw(name, np.random.default_rng((seed, c, i)))
            sketch.meta.update(key_id=key_id(seed, c, i), source="builtin", seed=seed)
            yield sketch


def generate(n_per_class: int, seed: int = 0, classes: list[str] | None = None) -> list[Sketch]:
    """``n_per_class`` sketches of every class in :data:`CLASSES` (or ``classes``), class after class.

    Deterministic: sketch ``i`` of class ``c`` is drawn from its own generator seeded with ``(seed, c, i)``,
    so it does not depend on ``n_per_class`` or on the other classes. ``meta``: ``key_id`` (see :func:`key_id`),
    ``source`` = ``"builtin"``, ``seed``. :func:`iterate` yields the same sketches lazily.
    """
    return list(iterate(n_per_class, seed, classes))


def split_sizes(n_per_class: int) -> tuple[int, int, int]:
    """Per-class (train, valid, test) sizes of a store of ``n_per_class`` built-in sketches a class: valid and test
    each get a tenth of the class, or, when more, a quarter of it up to 5 sketches (so that a small store still
    measures something), ``max(round(n / 10), min(5, n // 4))``; the rest is train. E.g. 10 -> 6/2/2,
    30 -> 20/5/5, 60 -> 48/6/6, 700 -> 560/70/70. ``r2cnn prepare --builtin N`` (without ``--split-sizes``) and
    ``r2cnn demo`` split by it."""
    n = int(n_per_class)
    held = max(round(n / 10), min(5, n // 4))
    return n - 2 * held, held, held
