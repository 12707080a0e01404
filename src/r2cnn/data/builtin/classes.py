"""The twelve built-in classes: each drawer puts an object's strokes on the pen in a typical order (with variations),
as ``docs/builtin-data.md`` describes; and the distractor strokes that are not part of any object."""

from __future__ import annotations

import numpy as np

from r2cnn.data.builtin.pen import TAU, Pen, ellipse_path


def _u(rng, lo, hi):
    return rng.uniform(lo, hi)


def _sun(pen: Pen, rng) -> None:
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


def _flower(pen: Pen, rng) -> None:
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
    pen.add(ellipse_path((top + bottom) / 2, 0.02 * rng.choice([-1, 1]), (bottom[1] - top[1]) / 2, -np.pi / 2, np.pi, 0))
    for k in range(int(rng.integers(0, 3))):  # leaves on the stem
        p = top + (bottom - top) * _u(rng, 0.35, 0.75)
        side = 1 if k % 2 == 0 else -1
        tip = p + [side * _u(rng, 0.1, 0.18), -_u(rng, 0.02, 0.08)]
        mid, half = (p + tip) / 2, np.hypot(*(tip - p)) / 2
        ang = np.arctan2(*(tip - p)[::-1])
        pen.ellipse(mid, half, half * 0.4, np.pi, TAU, ang)
    if rng.random() < 0.2:  # ground or pot line
        pen.line([bottom[0] - 0.2, bottom[1]], [bottom[0] + 0.2, bottom[1]])


def _house(pen: Pen, rng) -> None:
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


def _envelope(pen: Pen, rng) -> None:
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


def _tree(pen: Pen, rng) -> None:
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


def _car(pen: Pen, rng) -> None:
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


def _fish(pen: Pen, rng) -> None:
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


def _star(pen: Pen, rng) -> None:
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


def _cup(pen: Pen, rng) -> None:
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


def _umbrella(pen: Pen, rng) -> None:
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


def _ladder(pen: Pen, rng) -> None:
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


def _spiral(pen: Pen, rng) -> None:
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


DRAWERS = {
    "sun": _sun, "flower": _flower, "house": _house, "envelope": _envelope, "tree": _tree, "car": _car,
    "fish": _fish, "star": _star, "cup": _cup, "umbrella": _umbrella, "ladder": _ladder, "spiral": _spiral,
}
CLASSES: list[str] = list(DRAWERS)


def distractors(pen: Pen, rng) -> None:
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
