"""SVG: reading TU-Berlin sketches (Eitz et al. 2012) and any SVG drawn with paths; exporting any sketch.

Reading: every ``<path>``, ``<polyline>``, ``<polygon>`` and ``<line>`` in document order (= drawing order in
TU-Berlin), with the ``transform`` attributes of it and its ancestors applied (matrix, translate, scale,
rotate, skewX, skewY). Each subpath (``M``/``m``) is one stroke. Lines keep their vertices; quadratic and cubic
Beziers (``C c S s Q q T t``) and elliptical arcs (``A a``, as cubics) are sampled to polylines after the
transform, with Wang's bound on the number of pieces so the polyline stays within ``tolerance`` (root user
units) of the curve. Coordinates stay in the root's user space (TU-Berlin: the 800 x 800 viewBox,
y down). A subpath that is only a moveto is read as a one-point stroke (a dot), which is how we export dots.
A number beyond float32's range is refused (every coordinate ends up float32), an arc radius below float32's
smallest number is zero (a line, as SVG says), and sampling stops at MAX_POINTS points, before allocating more.

Writing: one ``<path d="M x y L x y ...">`` per stroke, numbers with 9 significant digits, which float32 reads
back exactly.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from r2cnn.data.formats.common import (FLOAT32_MAX, MAX_POINTS, AtomicWriter, check_writable, class_label,
                                       class_name, origin, points_from_strokes, unreadable)
from r2cnn.errors import ErrorPolicy, SketchFormatError
from r2cnn.sketch import Sketch

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(rf"\s*,?\s*([MmLlHhVvCcSsQqTtAaZz]|{_NUMBER})")
_TRANSFORM = re.compile(r"\s*,?\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}
_DRAWN = {"path", "polyline", "polygon", "line"}
_NOT_DRAWN = {"defs", "clipPath", "mask", "symbol", "marker", "pattern", "metadata", "title", "desc"}
_MAX_PIECES = 1024  # per curve; a bound on memory for absurd control points
# A radius below float32's smallest positive number is 0 at the points' precision; squaring it would underflow.
_TINY = float(np.finfo(np.float32).smallest_subnormal)


class _PathError(ValueError):
    """Unparsable path data or transform; turned into a SketchFormatError naming the element, counted under
    ``reason``."""

    def __init__(self, message: str, reason: str = "unparsable path data"):
        super().__init__(message)
        self.reason = reason


def _number(token: str) -> float:
    """A number of path data, a transform or points; beyond float32 (where every coordinate ends up) it is
    refused as absurd, which also keeps the curve arithmetic below finite."""
    value = float(token)
    if not abs(value) <= FLOAT32_MAX:
        raise _PathError(f"number out of range: {token[:20]}", "non-finite coordinate")
    return value


def _numbers(text: str) -> list[float]:
    values = re.findall(_NUMBER, text)
    if re.sub(_NUMBER, "", text).strip(" \t\r\n,"):
        raise _PathError(f"not numbers: {text[:40]!r}")
    return [_number(v) for v in values]


def parse_transform(text: str) -> np.ndarray:
    """An SVG ``transform`` attribute -> 3x3 affine matrix (functions compose left to right, as SVG says)."""
    m = np.eye(3)
    pos = 0
    for match in _TRANSFORM.finditer(text):
        if match.start() != pos:
            break
        pos = match.end()
        name, a = match.group(1), _numbers(match.group(2))
        counts = {"matrix": (6,), "translate": (1, 2), "scale": (1, 2), "rotate": (1, 3), "skewX": (1,), "skewY": (1,)}
        if len(a) not in counts[name]:
            raise _PathError(f"{name} takes {counts[name]} numbers, got {len(a)}")
        if name == "matrix":
            t = np.array([[a[0], a[2], a[4]], [a[1], a[3], a[5]], [0, 0, 1]])
        elif name == "translate":
            t = np.array([[1, 0, a[0]], [0, 1, a[1] if len(a) > 1 else 0.0], [0, 0, 1]])
        elif name == "scale":
            t = np.diag([a[0], a[1] if len(a) > 1 else a[0], 1.0])
        elif name == "rotate":
            c, s = math.cos(math.radians(a[0])), math.sin(math.radians(a[0]))
            cx, cy = (a[1], a[2]) if len(a) == 3 else (0.0, 0.0)
            t = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]])
        elif name == "skewX":
            t = np.array([[1, math.tan(math.radians(a[0])), 0], [0, 1, 0], [0, 0, 1]])
        else:
            t = np.array([[1, 0, 0], [math.tan(math.radians(a[0])), 1, 0], [0, 0, 1]])
        m = m @ t
    if text[pos:].strip(" \t\r\n,"):
        raise _PathError(f"unparsable transform {text[pos:pos + 40]!r}")
    if not np.isfinite(m).all():
        raise _PathError("non-finite transform")
    return m


def _tokens(d: str) -> list:
    tokens, pos = [], 0
    for match in _PATH_TOKEN.finditer(d):
        if match.start() != pos:
            break
        pos = match.end()
        tok = match.group(1)
        tokens.append(tok if tok.isalpha() else _number(tok))
    if d[pos:].strip(" \t\r\n,"):
        raise _PathError(f"unparsable path data at {d[pos:pos + 20]!r}")
    return tokens


def parse_path(d: str) -> list[list[tuple]]:
    """Path data -> subpaths, each a list of pieces in user coordinates: ``("M", p)`` to start, then ``("L", p)``
    or ``("C", c1, c2, p)`` (quadratics are raised to cubics exactly, arcs approximated by cubics).
    Raises ``_PathError``."""
    tokens = _tokens(d)
    subpaths: list[list[tuple]] = []
    cur = start = (0.0, 0.0)
    last_ctrl, last_cmd = None, None  # for the reflected control point of S/s and T/t
    i, cmd = 0, None
    while i < len(tokens):
        if isinstance(tokens[i], str):
            cmd = tokens[i]
            i += 1
        elif cmd is None:
            raise _PathError(f"number {tokens[i]:g} without a command")
        upper = cmd.upper()
        n = _ARGS[upper]
        args = tokens[i:i + n]
        if len(args) < n or any(isinstance(a, str) for a in args):
            raise _PathError(f"{cmd} needs {n} numbers")
        i += n
        rel = cmd.islower() and upper != "Z"
        ox, oy = cur if rel else (0.0, 0.0)
        pts = [(ox + args[k], oy + args[k + 1]) for k in range(0, n - 1, 2)]
        if upper == "M":
            start = cur = pts[0]
            subpaths.append([("M", cur)])
            cmd = "l" if cmd == "m" else "L"  # further pairs are implicit linetos
            last_cmd = "M"
            continue
        if not subpaths:
            raise _PathError("path data does not start with a moveto")
        piece = subpaths[-1]
        ctrl = None
        if upper == "Z":
            if cur != start:
                piece.append(("L", start))
            cur = start
            cmd = None  # Z takes no numbers: a number right after it is an error, not an endless loop
        elif upper in ("L", "H", "V"):
            if upper == "H":
                cur = (ox + args[0], cur[1])
            elif upper == "V":
                cur = (cur[0], oy + args[0])
            else:
                cur = pts[0]
            piece.append(("L", cur))
        elif upper in ("C", "S"):
            if upper == "S":
                c1 = _reflect(cur, last_ctrl) if last_cmd in ("C", "S") else cur
                c2, end = pts
            else:
                c1, c2, end = pts
            piece.append(("C", c1, c2, end))
            ctrl, cur = c2, end
        elif upper == "A":
            rx, ry, angle, large, sweep = args[:5]
            if large not in (0, 1) or sweep not in (0, 1):
                raise _PathError("arc flags must be 0 or 1")
            end = (ox + args[5], oy + args[6])
            piece += _arc_to_cubics(cur, rx, ry, angle, bool(large), bool(sweep), end)
            cur = end
        else:  # Q, T
            if upper == "T":
                q = _reflect(cur, last_ctrl) if last_cmd in ("Q", "T") else cur
                end = pts[0]
            else:
                q, end = pts
            piece.append(("C", _lerp(cur, q, 2 / 3), _lerp(end, q, 2 / 3), end))
            ctrl, cur = q, end
        last_ctrl, last_cmd = ctrl, upper
    return subpaths


def _arc_to_cubics(p0, rx, ry, angle, large, sweep, p1) -> list[tuple]:
    """An elliptical arc as cubic pieces of at most 90 degrees (SVG 1.1 F.6.5: endpoint to centre
    parameterisation; radii too small to reach ``p1`` are scaled up; a zero radius makes a line, F.6.6).

    Numbers are bounded by float32 (:func:`_number`); the arithmetic is arranged so that no step overflows,
    underflows to a division by zero, or takes the root of a negative number for any of them."""
    if p0 == p1:
        return []
    rx, ry = abs(rx), abs(ry)
    if rx < _TINY or ry < _TINY:
        return [("L", p1)]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    hx, hy = (p0[0] - p1[0]) / 2, (p0[1] - p1[1]) / 2
    x1, y1 = c * hx + s * hy, -s * hx + c * hy
    # lam: how far p0 lies outside the ellipse of these radii centred between the endpoints (1: on it).
    lam = (x1 / rx) ** 2 + (y1 / ry) ** 2
    if lam == 0:  # endpoints apart by less than the arithmetic resolves at these radii
        return [("L", p1)]
    if lam >= 1:  # radii too small: scaled up until they just reach, with the centre between the endpoints
        rx, ry = rx * math.sqrt(lam), ry * math.sqrt(lam)
        cxp = cyp = 0.0
    else:  # F.6.5.2 with numerator and denominator divided by (rx ry)^2
        root = math.sqrt((1 - lam) / lam)
        root = -root if large == sweep else root
        cxp, cyp = root * (y1 / ry) * rx, -root * (x1 / rx) * ry
    cx, cy = c * cxp - s * cyp + (p0[0] + p1[0]) / 2, s * cxp + c * cyp + (p0[1] + p1[1]) / 2
    theta = math.atan2((y1 - cyp) / ry, (x1 - cxp) / rx)
    delta = (math.atan2((-y1 - cyp) / ry, (-x1 - cxp) / rx) - theta) % (2 * math.pi)
    if not sweep and delta > 0:
        delta -= 2 * math.pi
    n = max(1, math.ceil(abs(delta) / (math.pi / 2) - 1e-9))
    step = delta / n
    k = 4 / 3 * math.tan(step / 4)  # control-point distance of a cubic through a circular arc of `step`

    def on_ellipse(x, y):
        return (cx + rx * c * x - ry * s * y, cy + rx * s * x + ry * c * y)

    pieces = []
    for i in range(n):
        a0, a1 = theta + i * step, theta + (i + 1) * step
        e0, e1 = (math.cos(a0), math.sin(a0)), (math.cos(a1), math.sin(a1))
        end = p1 if i == n - 1 else on_ellipse(*e1)
        pieces.append(("C", on_ellipse(e0[0] - k * e0[1], e0[1] + k * e0[0]),
                       on_ellipse(e1[0] + k * e1[1], e1[1] - k * e1[0]), end))
    return pieces


def _reflect(p, c):
    return (2 * p[0] - c[0], 2 * p[1] - c[1])


def _lerp(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def sample_subpath(pieces: list[tuple], matrix: np.ndarray, tolerance: float,
                   max_points: int = MAX_POINTS) -> np.ndarray:
    """Transform a subpath's pieces with the affine ``matrix`` (exact for Beziers: it moves their control
    points) and flatten it: ``(n, 2)`` float64 polyline vertices, ``n <= max_points``.

    A cubic with control points P0..P3 is cut into ``ceil(sqrt(0.75 * max|P_i - 2 P_i+1 + P_i+2| / tolerance))``
    equal-parameter pieces (at most ``_MAX_PIECES``), which keeps the polyline within ``tolerance`` of the curve
    (Wang's formula). Raises ``_PathError`` as soon as the count would pass ``max_points``, before sampling
    further (so memory stays bounded whatever the path declares), and for vertices beyond float32."""
    linear, shift = matrix[:2, :2].T, matrix[:2, 2]
    out = [np.array([pieces[0][1]]) @ linear + shift]
    n_points = 1
    for kind, *pts in pieces[1:]:
        p = np.array(pts) @ linear + shift
        n = 1
        if kind == "C":
            c = np.concatenate([out[-1][-1:], p])
            second = max(np.hypot(*(c[0] - 2 * c[1] + c[2])), np.hypot(*(c[1] - 2 * c[2] + c[3])))
            if math.isfinite(second):  # else the vertices are not finite either, and refused below
                n = max(1, math.ceil(math.sqrt(min(0.75 * second / tolerance, _MAX_PIECES**2))))
        n_points += n
        if n_points > max_points:
            raise _PathError(f"more than {MAX_POINTS} points", "too many points")
        if kind == "L":
            out.append(p)
            continue
        t = (np.arange(1, n + 1, dtype=np.float64) / n)[:, None]
        u = 1 - t
        out.append(u**3 * c[0] + 3 * u * u * t * c[1] + 3 * u * t * t * c[2] + t**3 * c[3])
    xy = np.concatenate(out)
    if not (np.abs(xy) <= FLOAT32_MAX).all():  # False for NaN too
        raise _PathError("coordinate beyond float32 once transformed", "non-finite coordinate")
    return xy


def _element_subpaths(tag: str, el: ET.Element) -> list[list[tuple]]:
    if tag == "path":
        return parse_path(el.get("d", ""))
    if tag == "line":
        a = [_numbers(el.get(k, "0")) for k in ("x1", "y1", "x2", "y2")]
        if any(len(v) != 1 for v in a):
            raise _PathError("x1, y1, x2, y2 take one number each")
        (x1,), (y1,), (x2,), (y2,) = a
        return [[("M", (x1, y1)), ("L", (x2, y2))]]
    values = _numbers(el.get("points", ""))
    if len(values) < 2 or len(values) % 2:
        raise _PathError("points needs pairs of numbers")
    xy = list(zip(values[0::2], values[1::2]))
    if tag == "polygon":
        xy.append(xy[0])
    return [[("M", xy[0])] + [("L", p) for p in xy[1:]]]


def svg_strokes(root: ET.Element, tolerance: float) -> list[np.ndarray]:
    """Polylines ``(n_i, 2)`` of all drawn elements under ``root``, in document order, transforms applied.
    Raises ``_PathError`` (with the element's id or index) for unparsable data."""
    strokes: list[np.ndarray] = []
    n_points = 0

    def visit(el: ET.Element, matrix: np.ndarray, index: int):
        nonlocal n_points
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in _NOT_DRAWN:
            return
        ident = el.get("id")
        name = f"{tag}#{index if ident is None else ident[:40] if ident.isprintable() else ascii(ident[:40])}"
        try:
            if "transform" in el.attrib:
                matrix = matrix @ parse_transform(el.get("transform"))
            if tag in _DRAWN:
                for pieces in _element_subpaths(tag, el):
                    stroke = sample_subpath(pieces, matrix, tolerance, MAX_POINTS - n_points)
                    n_points += len(stroke)
                    strokes.append(stroke)
        except _PathError as e:
            raise _PathError(f"{name}: {e}", e.reason) from None
        except ValueError as e:
            raise _PathError(f"{name}: {e}") from None
        for k, child in enumerate(el):
            visit(child, matrix, k)

    with np.errstate(over="ignore", invalid="ignore"):  # overflow gives inf/NaN points, reported by the caller
        visit(root, np.eye(3), 0)
    return strokes


def read_svg(path: Path, *, policy: ErrorPolicy, label=None, tolerance: float = 0.5) -> Iterator[Sketch]:
    """One sketch from one SVG file; ``label`` defaults to the parent folder's name (TU-Berlin's layout
    ``<class>/<id>.svg``). ``meta``: source, id (the file stem)."""
    source = str(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        policy.handle(SketchFormatError(source, "malformed XML", detail=str(e)[:80]))
        return
    except (LookupError, ValueError) as e:  # an encoding Python does not know, or expat cannot read (UTF-7, UTF-32)
        policy.handle(SketchFormatError(source, "unsupported XML encoding", detail=" ".join(str(e).split())[:80]))
        return
    except OSError as e:
        policy.handle(unreadable(source, e))
        return
    try:
        strokes = svg_strokes(root, tolerance)
        if not strokes:
            raise SketchFormatError(source, "no paths in SVG", field="path")
        xy = np.concatenate(strokes)
        points = points_from_strokes(xy, np.array([len(s) for s in strokes], np.int64), source, record=0)
    except RecursionError:
        policy.handle(SketchFormatError(source, "SVG nested too deeply"))
        return
    except _PathError as e:
        policy.handle(SketchFormatError(source, e.reason, field="d", detail=str(e)[:100]))
        return
    except SketchFormatError as e:
        policy.handle(e)
        return
    yield Sketch(points, class_label(path.parent.name) if label is None else label, {"source": source, "id": path.stem})


def _fmt(values: np.ndarray) -> list[str]:
    """9 significant digits, which read back as the same float32; but float32's largest magnitude would round up
    past it (3.40282347e+38), which readers refuse as not finite in float32, so it is written exactly."""
    return [f"{v:.9g}" if abs(v) < FLOAT32_MAX else repr(v) for v in values.tolist()]


def svg_document(sketch: Sketch, stroke_width: float | None = None) -> bytes:
    """The sketch as an SVG document: one path per stroke in drawing order, viewBox = bounding box + 5 %."""
    xy = sketch.points[:, :2].astype(np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = max(float((hi - lo).max()) * 0.05, 1e-3)
    size = hi - lo + 2 * pad
    width = stroke_width if stroke_width is not None else float(size.max()) / 150
    paths = []
    for k, stroke in enumerate(sketch.strokes()):
        coords = _fmt(stroke.reshape(-1).astype(np.float64))
        d = "M" + " ".join(coords[:2]) + ("".join(" L" + " ".join(coords[2:])) if len(coords) > 2 else "")
        paths.append(f'<path id="{k}" d="{d}"/>')
    box = " ".join(_fmt(np.array([lo[0] - pad, lo[1] - pad, size[0], size[1]])))
    return ("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="{box}">\n'
            f'<g fill="none" stroke="black" stroke-linecap="round" stroke-linejoin="round" stroke-width="{width:.4g}">\n'
            + "\n".join(paths) + "\n</g>\n</svg>\n").encode()


def write_svg(path: Path, sketches: Iterable[Sketch], *, policy: ErrorPolicy, per_class: bool) -> tuple[int, list[Path]]:
    """Write ``<label>/<id>.svg`` files under folder ``path`` (``per_class``; id = meta ``id`` or ``key_id``,
    else the running index), or one ``.svg`` file (exactly one sketch: written only once the input is known to
    hold no second one, so a refused conversion leaves no file behind)."""
    files, used = [], set()
    single: tuple[Path, bytes] | None = None
    for i, sketch in enumerate(sketches):
        if per_class:
            stem = str(sketch.meta.get("id", sketch.meta.get("key_id", i)))
            target = path / class_name(sketch.label) / f"{class_name(stem, '.svg')}.svg"
            while target in used:  # two sketches with one id: the later one also gets its index
                stem = f"{stem}_{i}"
                target = target.with_name(f"{class_name(stem, '.svg')}.svg")
        else:
            if single is not None:
                raise SketchFormatError(**origin(sketch, i, str(path)), reason="one SVG file holds one sketch",
                                        detail="write to a folder instead")
            target = path
        try:
            check_writable(sketch, i, str(target))
        except SketchFormatError as e:
            policy.handle(e)
            continue
        used.add(target)
        if per_class:
            _write_file(target, svg_document(sketch))
            files.append(target)
        else:
            single = (target, svg_document(sketch))
    if single is not None:
        _write_file(*single)
        files.append(single[0])
    return len(files), files


def _write_file(path: Path, data: bytes) -> None:
    writer = AtomicWriter(path)
    writer.write(data)
    writer.commit()
