"""r2cnn.data.formats: every reader and writer, lossless round trips, bad inputs, and the real files in ../shared/data."""

import json
import struct

import numpy as np
import pytest

from r2cnn.data.formats import (MAX_POINTS, detect_format, find_sketch_files, ndjson_line, parse_ndjson_line,
                                read_sketches, svg_document, write_sketches)
from r2cnn.data.formats.common import points_from_strokes
from r2cnn.data.formats.ndjson import _checked_drawing, _fast_drawing
from r2cnn.data.formats.svg import parse_path, parse_transform
from r2cnn.errors import ErrorPolicy, R2CNNError, SketchFormatError
from r2cnn.sketch import Sketch

SIMPLE = {"word": "cat", "countrycode": "US", "timestamp": "2017-03-10 22:17:57.57466 UTC", "recognized": True,
          "key_id": "6420579601088512", "drawing": [[[0, 10, 255], [5, 6, 7]], [[3], [4]]]}
RAW = {"word": "cat", "countrycode": "DE", "timestamp": "2017-01-01 00:00:00.1 UTC", "recognized": False,
       "key_id": "1", "drawing": [[[10.5, 20.25], [1, 2], [0, 17]], [[163.9000015258789], [7], [30]]]}


def line(record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def simplified_sketches(n=12, seed=0, labels=("cat", "dog")):
    """Random QuickDraw-simplified-like sketches: ints 0..255, all bin metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        strokes = [rng.integers(0, 256, (int(rng.integers(1, 9)), 2)) for _ in range(int(rng.integers(1, 6)))]
        meta = {"countrycode": "US", "timestamp": f"2017-03-10 22:17:{i:02d} UTC", "recognized": bool(i % 2),
                "key_id": str(10**15 + i), "split": ("train", "valid", "test")[i % 3]}
        out.append(Sketch.from_strokes(strokes, labels[i % len(labels)], meta))
    return out


def same_sketches(a, b, keys=("countrycode", "timestamp", "recognized", "key_id")):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.label == y.label
        np.testing.assert_array_equal(x.points, y.points)
        for k in keys:
            assert x.meta.get(k) == y.meta.get(k), k


def write_lines(path, records):
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else line(r) for r in records) + b"\n")
    return path


# ---------------------------------------------------------------- ndjson

def test_simplified_record_all_fields(decoder):
    s = parse_ndjson_line(line(SIMPLE), "a.ndjson", 3)
    assert s.label == "cat" and s.points.dtype == np.float32
    np.testing.assert_array_equal(s.points, [[0, 5, 0], [10, 6, 0], [255, 7, 1], [3, 4, 1]])
    assert s.meta == {k: v for k, v in SIMPLE.items() if k != "drawing"} | {"source": "a.ndjson", "line": 3}
    assert ndjson_line(s) == line(SIMPLE) + b"\n"  # Google's layout, byte for byte


def test_raw_record_timestamps_round_trip(decoder):
    s = parse_ndjson_line(line(RAW).decode(), "r.ndjson", 1)
    assert s.meta["t"].dtype == np.float64 and s.meta["t"].tolist() == [0, 17, 30]
    np.testing.assert_array_equal(s.points[:, :2], np.float32([[10.5, 1], [20.25, 2], [163.9000015258789, 7]]))
    back = parse_ndjson_line(ndjson_line(s), "r2", 1)
    np.testing.assert_array_equal(back.points, s.points)
    np.testing.assert_array_equal(back.meta["t"], s.meta["t"])
    # exactly representable floats come back as the same text
    exact = dict(RAW, drawing=[[[10.5, 20.25], [1, 2], [0, 17]]])
    assert ndjson_line(parse_ndjson_line(line(exact), "r", 1)) == line(exact) + b"\n"


def test_label_override_and_default():
    assert parse_ndjson_line(line(SIMPLE), "a", 1, label="x").label == "x"
    no_word = {k: v for k, v in SIMPLE.items() if k != "word"}
    assert parse_ndjson_line(line(no_word), "a", 1, default_label="stem").label == "stem"


@pytest.fixture(params=["orjson", "json"])
def decoder(request, monkeypatch):
    """Run with orjson (the default when installed) and with the standard library's json (the fallback)."""
    from r2cnn.data.formats import ndjson
    if request.param == "json":
        monkeypatch.setattr(ndjson, "_loads", json.loads)
    return request.param


@pytest.mark.parametrize("text, reason, field", [
    (b'{"word": "cat", "drawing": [[[1,2],[3', "malformed JSON", None),
    (b'[1, 2]', "record is not a JSON object", None),
    (b'{"word": "cat"}', "missing field", "drawing"),
    (b'{"word": 3, "drawing": [[[1],[2]]]}', "wrong field type", "word"),
    (b'{"drawing": [[[1,2],[3]]]}', "x/y length mismatch", "drawing[0]"),
    (b'{"drawing": [[[1,2],[3,4],[5]]]}', "x/t length mismatch", "drawing[0]"),
    (b'{"drawing": [[[1],[2]],[[1],[2],[3]]]}', "raw and simplified strokes mixed", "drawing[1]"),
    (b'{"drawing": []}', "empty drawing", "drawing"),
    (b'{"drawing": [[[1],[2]],[[],[]]]}', "empty stroke", "drawing[1]"),
    (b'{"drawing": [[[1,NaN],[2,3]]]}', None, None),  # orjson: malformed JSON; json: non-finite
    (b'{"drawing": [[[1,1e39],[2,3]]]}', "non-finite coordinate", "drawing[0][0][1]"),
    (b'{"drawing": [[[1,"2"],[2,3]]]}', "not a number", "drawing[0][0][1]"),
    (b'{"drawing": [[[1,true],[2,3]]]}', "not a number", "drawing[0][0][1]"),
    (b'{"drawing": [[[1,2],[3,4]]], "recognized": 1}', "wrong field type", "recognized"),
    (b'{"drawing": [[[1,2],[3,4]]], "key_id": 1.5}', "wrong field type", "key_id"),
    (b'{"drawing": [[[1,2],[3,4]]], "word": "x", "z": true}', None, None),  # fine: bools elsewhere take the slow path
    (b'{"drawing": "abc"}', "drawing is not a list of strokes", "drawing"),
    (b'{"drawing": [[1, 2]]}', "not a list of numbers", "drawing[0][0]"),
    (b'{"drawing": [[[1]]]}', "stroke is not [xs, ys] or [xs, ys, ts]", "drawing[0]"),
])
def test_bad_ndjson_records(text, reason, field, decoder):
    if reason is None and b"NaN" not in text:
        parse_ndjson_line(text, "f.ndjson", 7)
        return
    with pytest.raises(SketchFormatError) as e:
        parse_ndjson_line(text, "f.ndjson", 7)
    msg = str(e.value)
    assert msg.startswith("f.ndjson:7: ") and "\n" not in msg
    if reason is not None:
        assert e.value.reason == reason and e.value.field == field


def test_absurd_sizes():
    many_points = line({"drawing": [[list(range(MAX_POINTS + 1)), [0] * (MAX_POINTS + 1)]]})
    with pytest.raises(SketchFormatError, match="too many points"):
        parse_ndjson_line(many_points, "f", 1)
    many_strokes = b'{"drawing": [' + b",".join([b"[[1],[2]]"] * (MAX_POINTS + 1)) + b"]}"
    with pytest.raises(SketchFormatError, match="too many strokes"):
        parse_ndjson_line(many_strokes, "f", 1)


@pytest.mark.shared_data
def test_fast_and_checked_paths_agree_on_real_records(shared_data):
    for path in sorted((shared_data / "quickdraw" / "raw-sample").glob("a*.ndjson"))[:5]:
        for text in path.read_bytes().splitlines()[:5]:
            drawing = json.loads(text)["drawing"]
            (points, t), (xy, lengths, t2) = _fast_drawing(drawing), _checked_drawing(drawing, "f", 1)
            np.testing.assert_array_equal(points, points_from_strokes(xy, lengths, "f", line=1))
            np.testing.assert_array_equal(t, t2)


def test_read_file_skip_policy_counts_and_goes_on(tmp_path):
    path = write_lines(tmp_path / "cat.ndjson", [SIMPLE, b"{oops", b"  ", SIMPLE, {"drawing": []}])
    with pytest.raises(SketchFormatError, match=r"cat.ndjson:2: malformed JSON"):
        list(read_sketches(path))
    policy = ErrorPolicy("skip")
    got = list(read_sketches(path, policy=policy))
    assert [s.meta["line"] for s in got] == [1, 4]  # line 3 is blank, not a record
    assert policy.counts == {"malformed JSON": 1, "empty drawing": 1}
    assert "cat.ndjson:5" in policy.summary()


@pytest.mark.parametrize("name", ["a.ndjson.gz", "a.bin.gz"])
def test_gzip_streams(tmp_path, name):
    sketches = simplified_sketches(5, labels=("a",))
    write_sketches(tmp_path / name, sketches)
    same_sketches(list(read_sketches(tmp_path / name)), sketches)
    data = (tmp_path / name).read_bytes()
    for broken in (data[:len(data) // 2], b"\x1f\x8b" + b"x" * 30):
        (tmp_path / name).write_bytes(broken)
        with pytest.raises(SketchFormatError, match=f"{name}: (unreadable file|record)"):
            list(read_sketches(tmp_path / name))


# ---------------------------------------------------------------- lossless round trips between formats

def test_simplified_round_trip_ndjson_bin_npz(tmp_path):
    sketches = simplified_sketches(30)
    n, files = write_sketches(tmp_path / "nd", sketches, fmt="ndjson")
    assert n == 30 and sorted(f.name for f in files) == ["cat.ndjson", "dog.ndjson"]
    from_nd = list(read_sketches(tmp_path / "nd"))
    write_sketches(tmp_path / "bin", from_nd, fmt="bin")
    from_bin = list(read_sketches(tmp_path / "bin"))
    write_sketches(tmp_path / "npz", from_nd, fmt="npz")  # .bin has no split, so npz is written from ndjson
    from_npz = list(read_sketches(tmp_path / "npz"))
    write_sketches(tmp_path / "back", from_npz, fmt="ndjson")
    back = list(read_sketches(tmp_path / "back"))
    expected = sorted(sketches, key=lambda s: s.label)  # per-class files, read in class order
    same_sketches(from_nd, expected)
    same_sketches(from_bin, expected)  # key_id, countrycode, recognized, whole-second timestamp survive .bin
    by_split = sorted(expected, key=lambda s: (s.label, ("train", "valid", "test").index(s.meta["split"])))
    same_sketches(from_npz, by_split, keys=("split",))
    same_sketches(back, by_split, keys=("split",))


def test_bin_layout_matches_google(tmp_path):
    s = Sketch.from_strokes([np.array([[1, 2], [3, 4]])], "cat",
                            {"key_id": "5", "countrycode": "US", "recognized": True, "timestamp": "1970-01-01 00:01:40 UTC"})
    write_sketches(tmp_path / "cat.bin", [s])
    data = (tmp_path / "cat.bin").read_bytes()
    assert data == struct.pack("<Q2sBIH", 5, b"US", 1, 100, 1) + struct.pack("<H", 2) + bytes([1, 3, 2, 4])
    (back,) = read_sketches(tmp_path / "cat.bin")
    assert back.label == "cat" and back.meta["timestamp"] == "1970-01-01 00:01:40 UTC" and back.meta["record"] == 0


def test_npz_stroke3_convention(tmp_path):
    s = Sketch.from_strokes([np.array([[5, 5], [6, 7]]), np.array([[0, 0]])], "k", {"split": "valid"})
    write_sketches(tmp_path / "k.npz", [s])
    data = np.load(tmp_path / "k.npz", allow_pickle=True, encoding="latin1")
    assert sorted(data.files) == ["test", "train", "valid"] and len(data["train"]) == 0
    np.testing.assert_array_equal(data["valid"][0], [[5, 5, 0], [1, 2, 1], [-6, -7, 1]])
    assert data["valid"][0].dtype == np.int16


def test_svg_export_import_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    strokes = [rng.normal(0, 100, (int(k), 2)).astype(np.float32) for k in (1, 2, 7, 30)]
    s = Sketch.from_strokes(strokes, "thing", {"key_id": "42"})
    n, files = write_sketches(tmp_path / "out", [s], fmt="svg")
    assert files == [tmp_path / "out" / "thing" / "42.svg"]
    (back,) = read_sketches(tmp_path / "out")
    assert back.label == "thing"
    np.testing.assert_allclose(back.points, s.points, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(back.points, s.points)  # 9 significant digits: exact in float32


def test_integer_formats_refuse_fractions_unless_rounded(tmp_path):
    s = Sketch.from_strokes([np.array([[1.5, 2.0]])], "a", {"source": "in.ndjson", "line": 4})
    with pytest.raises(SketchFormatError, match=r"in.ndjson:4: field 'points': coordinate not an integer"):
        write_sketches(tmp_path / "a.bin", [s])
    assert not (tmp_path / "a.bin").exists() and not list(tmp_path.iterdir())  # nothing half-written
    write_sketches(tmp_path / "a.npz", [s], round_coords=True)
    np.testing.assert_array_equal(next(read_sketches(tmp_path / "a.npz")).points[:, :2], [[2, 2]])
    big = Sketch.from_strokes([np.array([[300, 2]])], "a")
    with pytest.raises(SketchFormatError, match="coordinate out of range"):
        write_sketches(tmp_path / "a.bin", [big])
    policy = ErrorPolicy("skip")
    assert write_sketches(tmp_path / "a.bin", [big, Sketch.from_strokes([np.array([[3, 2]])], "a")], policy=policy)[0] == 1
    assert policy.counts == {"coordinate out of range": 1}


def test_single_file_of_a_label_free_format_holds_one_class(tmp_path):
    with pytest.raises(R2CNNError, match="write to a folder"):
        write_sketches(tmp_path / "x.npz", simplified_sketches(2))


# ---------------------------------------------------------------- bin / npz / svg bad input

def test_truncated_bin(tmp_path):
    write_sketches(tmp_path / "cat.bin", simplified_sketches(3, labels=("cat",)))
    data = (tmp_path / "cat.bin").read_bytes()
    for cut in (5, 19, len(data) - 1):
        (tmp_path / "t.bin").write_bytes(data[:cut] if cut != 5 else data[:len(data) - 3])
        with pytest.raises(SketchFormatError, match=r"t.bin: record \d+: field '[^']+': truncated record"):
            list(read_sketches(tmp_path / "t.bin"))
    policy = ErrorPolicy("skip")
    assert len(list(read_sketches(tmp_path / "t.bin", policy=policy))) == 2 and policy.counts == {"truncated record": 1}


def test_bad_bin_records_keep_the_stream_in_sync(tmp_path):
    empty = struct.pack("<Q2sBIH", 1, b"US", 0, 0, 0)
    empty_stroke = struct.pack("<Q2sBIH", 2, b"US", 0, 0, 1) + struct.pack("<H", 0)
    good = struct.pack("<Q2sBIH", 3, b"US", 0, 0, 1) + struct.pack("<H", 1) + bytes([7, 8])
    (tmp_path / "c.bin").write_bytes(empty + empty_stroke + good)
    policy = ErrorPolicy("skip")
    (s,) = read_sketches(tmp_path / "c.bin", policy=policy)
    assert s.meta["key_id"] == "3" and s.meta["record"] == 2
    assert policy.counts == {"empty drawing": 1, "empty stroke": 1}


def test_npz_bad_inputs(tmp_path):
    np.savez(tmp_path / "none.npz", foo=np.zeros(3))
    with pytest.raises(SketchFormatError, match=r"none.npz: field 'train': missing train/valid/test arrays"):
        list(read_sketches(tmp_path / "none.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SketchFormatError, match="unreadable npz"):
        list(read_sketches(tmp_path / "junk.npz"))
    arr = np.empty(4, dtype=object)
    arr[:] = [np.array([[1, 2, 0], [3, 4, 1]], np.int16), np.zeros((0, 3), np.int16), np.array([[1, 2, 5]]),
              np.array([[np.nan, 1, 1]])]
    np.savez(tmp_path / "bad.npz", train=arr)
    policy = ErrorPolicy("skip")
    assert len(list(read_sketches(tmp_path / "bad.npz", policy=policy))) == 1
    assert policy.counts == {"empty drawing": 1, "pen_lift not 0 or 1": 1, "non-finite coordinate": 1}
    with pytest.raises(SketchFormatError, match=r"bad.npz\[train\]: record 1: field 'drawing': empty drawing"):
        list(read_sketches(tmp_path / "bad.npz"))


@pytest.mark.parametrize("body, reason", [
    ("<g></g>", "no paths in SVG"),
    ('<path d="M 1 2 L"/>', "unparsable path data"),
    ('<path d="L 1 2"/>', "unparsable path data"),
    ('<path d="M 1 2 A 1 1 0 2 0 3 3"/>', "unparsable path data"),
    ('<path d="M 1 2 Z 3"/>', "unparsable path data"),
    ('<path d="M 1 2 L 3 x"/>', "unparsable path data"),
    ('<g transform="bogus(1)"><path d="M 1 2 L 3 4"/></g>', "unparsable path data"),
    ('<path d="M 1 2 L 3 4"', "malformed XML"),
])
def test_bad_svg(tmp_path, body, reason):
    path = tmp_path / "c" / "1.svg"
    path.parent.mkdir()
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg">{body}</svg>')
    with pytest.raises(SketchFormatError) as e:
        list(read_sketches(path))
    assert e.value.reason == reason and str(e.value).startswith(str(path))


def test_svg_path_commands_and_transforms():
    # relative and absolute lines, H/V, closepath, implicit lineto after m
    (sub,) = parse_path("m 1 1 2 0 v 3 H 1 z")
    assert [p[1] for p in sub] == [(1, 1), (3, 1), (3, 4), (1, 4), (1, 1)]
    # relative cubic: control points relative to the current point; S reflects the last control point
    (sub,) = parse_path("M10 10 c 1 1 2 2 3 3 s 4 4 5 5")
    assert sub[1] == ("C", (11, 11), (12, 12), (13, 13)) and sub[2] == ("C", (14, 14), (17, 17), (18, 18))
    assert len(parse_path("M0 0 L1 1 M5 5 L 6 6")) == 2  # two subpaths = two strokes
    m = parse_transform("translate(10,20) scale(2) translate(0,-5)")
    np.testing.assert_allclose(m @ [1, 5, 1], [12, 20, 1])
    np.testing.assert_allclose(parse_transform("matrix(1 2 3 4 5 6)") @ [1, 1, 1], [9, 12, 1])
    np.testing.assert_allclose(parse_transform("rotate(90)") @ [1, 0, 1], [0, 1, 1], atol=1e-12)


@pytest.mark.parametrize("d, sweep_y", [("M 0 0 A 1 1 0 0 1 2 0", -1), ("M 0 0 a 1 1 0 0 0 2 0", 1),
                                        ("M 0 0 A 0.5 0.5 0 1 1 2 0", -1)])  # radius too small: scaled up to 1
def test_svg_elliptical_arcs(d, sweep_y):
    from r2cnn.data.formats.svg import sample_subpath
    (sub,) = parse_path(d)
    pts = sample_subpath(sub, np.eye(3), 1e-4)
    np.testing.assert_allclose(np.hypot(pts[:, 0] - 1, pts[:, 1]), 1, atol=1e-3)  # on the circle around (1, 0)
    np.testing.assert_allclose(pts[[0, -1]], [[0, 0], [2, 0]], atol=1e-12)
    assert abs(pts[np.argmax(np.abs(pts[:, 1])), 1] - sweep_y) < 1e-3  # sweep-flag picks the half


def test_svg_bezier_sampling_and_nested_transforms(tmp_path):
    path = tmp_path / "c" / "1.svg"
    path.parent.mkdir()
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg"><g transform="translate(100,0)"><g transform="scale(2)">'
                    '<path d="M0 0 C 0 10 10 10 10 0"/><path transform="translate(1 1)" d="M0 0 L 1 0"/></g></g></svg>')
    s = next(read_sketches(path))
    assert s.label == "c" and s.num_strokes == 2
    curve = s.strokes()[0]
    np.testing.assert_allclose(curve[[0, -1]], [[100, 0], [120, 0]])
    t = np.linspace(0, 1, 1001)[:, None]  # the true (transformed) curve: its points lie within tolerance of the polyline
    true = 2 * ((1 - t) ** 3 * [0, 0] + 3 * (1 - t) ** 2 * t * [0, 10] + 3 * (1 - t) * t * t * [10, 10] + t**3 * [10, 0]) + [100, 0]
    a, b = curve[:-1, None].astype(np.float64), curve[1:, None].astype(np.float64)
    ab = b - a
    u = np.clip(((true[None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    dist = np.linalg.norm(a + u[..., None] * ab - true[None], axis=-1).min(axis=0)
    assert dist.max() <= 0.5 + 1e-6 and len(curve) > 5
    np.testing.assert_allclose(s.strokes()[1], [[102, 2], [104, 2]])


def test_svg_document_is_valid_and_dots_survive(tmp_path):
    s = Sketch.from_strokes([np.array([[3.25, 4]]), np.array([[0, 0], [1, 1]])], "d")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "1.svg").write_bytes(svg_document(s))
    np.testing.assert_array_equal(next(read_sketches(tmp_path / "d" / "1.svg")).points, s.points)


def test_detect_format_and_folders(tmp_path):
    assert detect_format("a.ndjson") == "ndjson" and detect_format("a.bin.gz") == "bin"
    assert detect_format("x/y.NPZ") == "npz" and detect_format("q.svg") == "svg"
    with pytest.raises(R2CNNError, match="cannot tell"):
        detect_format("a.txt")
    with pytest.raises(R2CNNError, match="no such file"):
        list(read_sketches(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(R2CNNError, match="no sketch files"):
        find_sketch_files(tmp_path)
    with pytest.raises(R2CNNError, match="name the output format"):
        write_sketches(tmp_path / "out", [])


# ---------------------------------------------------------------- the real files in ../shared/data

@pytest.mark.shared_data
def test_real_qd5_valid(shared_data):
    sketches = list(read_sketches(shared_data / "quickdraw" / "qd5" / "valid"))
    assert len(sketches) == 2500
    assert {s.label for s in sketches} == {"backpack", "car", "power outlet", "shoe", "sun"}
    pts = np.concatenate([s.points for s in sketches])
    assert pts[:, :2].min() >= 0 and pts[:, :2].max() <= 255 and np.array_equal(pts, np.rint(pts))


@pytest.mark.shared_data
def test_real_simplified_and_raw_samples_write_back_identically(shared_data):
    """Simplified lines come back byte for byte; raw lines too wherever coordinates are float32-exact (Google's
    raw floats such as 459.9000015258789 are not, and come back equal after float32)."""
    root = shared_data / "quickdraw"
    exact = total = 0
    for kind in ("simplified-sample", "raw-sample"):
        for path in sorted((root / kind).glob("*.ndjson")):
            lines = path.read_bytes().splitlines(keepends=True)
            sketches = list(read_sketches(path))
            assert len(sketches) == len(lines)
            for text, s in zip(lines, sketches):
                out = ndjson_line(s)
                total += 1
                if out == text:
                    exact += 1
                    continue
                assert kind == "raw-sample"
                back = parse_ndjson_line(out, "x", 1)
                np.testing.assert_array_equal(back.points, s.points)
                np.testing.assert_array_equal(back.meta["t"], s.meta["t"])
    assert exact / total > 0.9


@pytest.mark.shared_data
def test_real_short_kanji_npz(shared_data, tmp_path):
    path = shared_data / "sketch-rnn" / "short_kanji.npz"
    sketches = list(read_sketches(path))
    source = np.load(path, allow_pickle=True, encoding="latin1")
    assert len(sketches) == sum(len(source[k]) for k in ("train", "valid", "test"))
    assert {s.meta["split"] for s in sketches} == {"train", "valid", "test"} and sketches[0].label == "short_kanji"
    np.testing.assert_array_equal(sketches[0].points[:, :2], np.cumsum(source["train"][0][:, :2], axis=0))
    write_sketches(tmp_path / "short_kanji.npz", sketches)  # lossless: the same int16 arrays come back
    again = np.load(tmp_path / "short_kanji.npz", allow_pickle=True, encoding="latin1")
    for k in ("train", "valid", "test"):
        assert all(np.array_equal(a, b) and b.dtype == np.int16 for a, b in zip(source[k], again[k]))


@pytest.mark.shared_data
def test_real_tuberlin_svgs(shared_data):
    files = find_sketch_files(shared_data / "tuberlin" / "svg")
    sketches = list(read_sketches(shared_data / "tuberlin" / "svg"))
    assert len(sketches) == len(files) == 15
    for (path, _), s in zip(files, sketches):
        assert s.label == path.parent.name and s.meta["id"] == path.stem
        assert s.num_strokes == path.read_text().count("<path") and np.isfinite(s.points).all()
        lo, hi = s.points[:, :2].min(0), s.points[:, :2].max(0)
        assert (lo > -50).all() and (hi < 850).all() and (hi - lo).max() > 200  # on TU-Berlin's 800 x 800 canvas
