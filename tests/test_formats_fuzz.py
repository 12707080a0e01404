"""Fuzzing the readers: any input either becomes valid Sketches or raises SketchFormatError, never anything else."""

import json
import struct
from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from r2cnn.data.formats import MAX_POINTS, parse_ndjson_line, read_sketches
from r2cnn.data.formats.common import points_from_strokes
from r2cnn.data.formats.ndjson import _checked_drawing, _fast_drawing
from r2cnn.errors import ErrorPolicy, SketchFormatError

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 150)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(st.integers(-300, 300), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=4))
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                         max_leaves=30)
coords = st.lists(st.one_of(st.integers(0, 255), numbers, scalars), min_size=0, max_size=6)
strokes = st.one_of(st.tuples(coords, coords).map(list), st.tuples(coords, coords, coords).map(list), json_like)
drawings = st.one_of(st.lists(strokes, max_size=4), json_like)
records = st.fixed_dictionaries({"drawing": drawings}, optional={
    "word": st.one_of(st.text(max_size=5), scalars), "key_id": scalars, "recognized": scalars,
    "countrycode": scalars, "timestamp": scalars})


def valid(sketch):
    p = sketch.points
    assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 3 and 0 < len(p) <= MAX_POINTS
    assert np.isfinite(p).all() and set(np.unique(p[:, 2])) <= {0.0, 1.0} and p[-1, 2] == 1
    if "t" in sketch.meta:
        assert sketch.meta["t"].shape == (len(p),) and np.isfinite(sketch.meta["t"]).all()


def parse_or_format_error(text):
    try:
        sketch = parse_ndjson_line(text, "f.ndjson", 1)
    except SketchFormatError as e:
        assert "\n" not in str(e)
        return None
    valid(sketch)
    return sketch


@FUZZ
@given(st.binary(max_size=200))
def test_ndjson_arbitrary_bytes(data):
    parse_or_format_error(data)


@FUZZ
@given(records)
def test_ndjson_json_like_records(record):
    text = json.dumps(record, allow_nan=True).encode()
    sketch = parse_or_format_error(text)
    if sketch is None:
        return
    assert sketch.num_points == sum(len(s[0]) for s in record["drawing"])
    # an accepted record: the fast path (when it took it) and the careful one read the same numbers
    fast = _fast_drawing(record["drawing"])
    if fast is not None:
        xy, lengths, t = _checked_drawing(record["drawing"], "f", 1)
        np.testing.assert_array_equal(fast[0], points_from_strokes(xy, lengths, "f", line=1))
        np.testing.assert_array_equal(fast[1], t)


@FUZZ
@given(st.binary(max_size=300))
def test_bin_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bin") / "c.bin"
    path.write_bytes(data)
    policy = ErrorPolicy("skip")
    for sketch in read_sketches(path, policy=policy):
        valid(sketch)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3),
                          st.lists(st.lists(st.integers(0, 255), max_size=5), max_size=4)), max_size=4),
       st.integers(0, 40))
def test_bin_structured_records_truncated(tmp_path_factory, recs, cut):
    data = b"".join(struct.pack("<Q2sBIH", k, b"US", r, 0, len(ss)) +
                    b"".join(struct.pack("<H", len(s)) + bytes(s) + bytes(s) for s in ss) for k, r, ss in recs)
    path = tmp_path_factory.mktemp("bin") / "c.bin"
    path.write_bytes(data[:max(0, len(data) - cut)])
    try:
        for sketch in read_sketches(path):
            valid(sketch)
    except SketchFormatError:
        pass


stroke3 = st.one_of(
    st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5), st.integers(-1, 2)), max_size=6).map(lambda r: np.array(r, np.int16).reshape(-1, 3)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=9).map(lambda v: np.array(v)),
    json_like)


@FUZZ
@given(st.dictionaries(st.sampled_from(["train", "valid", "test", "other"]), st.lists(stroke3, max_size=3), max_size=3))
def test_npz_arbitrary_arrays(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("npz") / "c.npz"
    packed = {}
    for k, items in arrays.items():
        a = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            a[i] = item
        packed[k] = a
    np.savez(path, **packed)
    try:
        for sketch in read_sketches(path, policy=ErrorPolicy("skip")):
            valid(sketch)
    except SketchFormatError:
        pass


path_data = st.lists(st.one_of(st.sampled_from(list("MmLlHhVvCcSsQqTtZzAa01,  ")),
                               st.floats(-1e3, 1e3).map(lambda v: f"{v:g}"), st.sampled_from(["1e999", "-.5.5", "nan", "1e"])),
                     max_size=20).map(" ".join)
transform = st.one_of(st.just(""), st.sampled_from(["scale(2)", "translate(1 2)", "matrix(1 0 0 1 0 0)", "rotate(30 1 1)",
                                                    "skewX(10)", "scale(1e308) scale(1e308)", "scale(", "foo(1)"]))


@FUZZ
@given(st.lists(st.tuples(path_data, transform), min_size=0, max_size=3), st.binary(max_size=20))
def test_svg_arbitrary_path_data(tmp_path_factory, paths, junk):
    body = "".join(f'<g transform="{t}"><path d="{d}"/></g>' for d, t in paths)
    path = tmp_path_factory.mktemp("svg") / "c.svg"
    path.write_bytes(f'<svg xmlns="http://www.w3.org/2000/svg">{body}</svg>'.encode() + (junk if junk[:1] == b"<" else b""))
    try:
        for sketch in read_sketches(path):
            valid(sketch)
    except SketchFormatError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_svg_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("svg") / "c.svg"
    path.write_bytes(data)
    try:
        list(read_sketches(path))
    except SketchFormatError:
        pass


# ------------------------------------------------------------------------------------ SVG: hostile numbers and XML
# Each example is milliseconds of work (at most MAX_POINTS points of at most 1024 pieces a curve); the deadline
# only catches a hang, never measures speed.
SVG_FUZZ = settings(FUZZ, deadline=timedelta(seconds=20))
SVG_PATH_EXAMPLES = ["M 0 0 A 1e-300 1e-300 0 1 1 1e300 1e300",  # rx*rx underflowed: ZeroDivisionError
                     "M 0 0 C 0 0 0 0 0 0 S 1 1 1e308 1e308",  # Wang's piece count overflowed: OverflowError
                     "M 0 0 A 1e-300 1e-300 0 1 1 10 10", "M 0 0 A 1e-40 1e38 0 0 1 3e38 -3e38",
                     "M 3e38 3e38 C -3e38 -3e38 3e38 -3e38 -3e38 3e38"]

svg_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),  # 1e+308, 5e-324, -0.0, ...
    st.integers(-10**45, 10**45).map(str),
    st.sampled_from(["0", "1", "-.5", "1e-300", "-1e-320", "1e-45", "1.4e-45", "3.4028235e38", "3.5e38", "1e39",
                     "1e308", "-1e308", "1e999", "nan", "inf", "-inf", "1e", "--1", "1.2.3"]))
svg_command = st.tuples(st.sampled_from(list("MmLlHhVvCcSsQqTtAaZz")),
                        st.lists(st.one_of(svg_number, st.sampled_from(["0", "1"])), max_size=8))
svg_path = st.tuples(st.booleans(), st.lists(svg_command, max_size=8)).map(
    lambda p: ("M 0 0 " if p[0] else "") + " ".join(c + " " + " ".join(args) for c, args in p[1]))


def read_svg_or_format_error(path):
    """The SVG reader's contract: valid sketches or one SketchFormatError of one line naming the file; in skip
    mode the same error is counted instead."""
    try:
        for sketch in read_sketches(path):
            valid(sketch)
    except SketchFormatError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path)), str(e)
        policy = ErrorPolicy("skip")
        assert list(read_sketches(path, policy=policy)) == [] and policy.counts == {e.reason: 1}


@SVG_FUZZ
@given(svg_path, transform)
@example(SVG_PATH_EXAMPLES[0], "")
@example(SVG_PATH_EXAMPLES[1], "")
@example(SVG_PATH_EXAMPLES[2], "")
@example(SVG_PATH_EXAMPLES[3], "rotate(30 1 1)")
@example(SVG_PATH_EXAMPLES[4], "scale(1e308) scale(1e308)")
def test_svg_path_numbers_are_sketches_or_format_errors(tmp_path_factory, d, t):
    path = tmp_path_factory.mktemp("svg") / "c.svg"
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg"><g transform="{t}"><path d="{d}"/></g></svg>')
    read_svg_or_format_error(path)


xml_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
xml_value = st.one_of(svg_path, transform, st.lists(svg_number, max_size=6).map(" ".join), xml_text)
xml_attrs = st.dictionaries(st.sampled_from(["d", "points", "transform", "x1", "y1", "x2", "y2", "id", "fill"]),
                            xml_value, max_size=4)
xml_tags = st.sampled_from(["svg", "g", "path", "polyline", "polygon", "line", "defs", "rect", "a:path", "1bad"])


def _element(tag, attrs, children, text):
    quoted = "".join(f' {k}="{v}"' for k, v in attrs.items())  # not escaped: <, & and " make it XML-ish
    return f"<{tag}{quoted}>{text}{''.join(children)}</{tag}>" if children or text else f"<{tag}{quoted}/>"


xml_elements = st.recursive(st.builds(_element, xml_tags, xml_attrs, st.just([]), st.just("")),
                            lambda inner: st.builds(_element, xml_tags, xml_attrs, st.lists(inner, max_size=3),
                                                    st.one_of(st.just(""), xml_text)), max_leaves=8)
xml_prolog = st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>',
                              '<?xml version="1.0" encoding="UTF-7"?>', '<?xml version="1.0" encoding="utf-16"?>',
                              '<?xml version="1.0" encoding="UTF-32"?>', '<?xml version="1.0" encoding="latin-1"?>',
                              '<?xml version="1.0" encoding="bogus"?>', '<?xml version="1.0" encoding="rot13"?>',
                              '<?xml version="1.0" encoding="idna"?>', '<?xml version="1.0" encoding="punycode"?>',
                              '<!DOCTYPE svg [<!ENTITY a "M 0 0 L 1 1">]>',
                              '<!DOCTYPE svg [<!ENTITY a "&#38;a;">]>', '<!DOCTYPE svg SYSTEM "file:///etc/passwd">'])
xml_documents = st.builds(
    lambda prolog, root, cut, entity: (prolog + root.replace('d="', 'd="&a; ' if entity else 'd="', 1))[:cut],
    xml_prolog, st.builds(_element, st.just("svg"), xml_attrs, st.lists(xml_elements, max_size=3), st.just("")),
    st.one_of(st.none(), st.integers(0, 400)), st.booleans())


@SVG_FUZZ
@given(xml_documents, st.sampled_from(["utf-8", "utf-16", "latin-1"]))
@example('<?xml version="1.0" encoding="UTF-7"?><svg/>', "utf-8")  # expat ValueError, was a traceback
@example('<svg><path d="M 0 0 A 1e-300 1e-300 0 1 1 1e300 1e300"/></svg>', "utf-8")
@example('<svg><path d="M 0 0 C 0 0 0 0 0 0 S 1 1 1e308 1e308"/></svg>', "utf-8")
@example('<svg><line x1="nan" y1="1e999" x2="1_0" y2=" 2"/><path id="a&#10;b" d="M 0 0 L"/></svg>', "utf-8")
def test_svg_xml_documents_are_sketches_or_format_errors(tmp_path_factory, doc, encoding):
    path = tmp_path_factory.mktemp("svg") / "c.svg"
    path.write_bytes(doc.encode(encoding, "replace"))
    read_svg_or_format_error(path)
