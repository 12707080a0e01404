"""Hostile and careless input on the data side: no code runs from a sketch file, no number changes on writing,
no path escapes the output folder, no two `prepare` runs write one store at once, no truncated download is taken
for complete, and every bad path or corrupt store is a one-line error."""

import base64
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.data.download import class_url, download_file
from r2cnn.data.formats import read_sketches, write_sketches
from r2cnn.data.formats.common import FLOAT32_MAX
from r2cnn.data.store import SketchStore, build_store
from r2cnn.errors import ErrorPolicy, R2CNNError, SketchFormatError
from r2cnn.sketch import Sketch, SketchBatch


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("r2cnn: error: ")
    return err


def stroke3(*rows):
    return np.array(rows, np.int16).reshape(-1, 3)


def object_array(items):
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


# ------------------------------------------------------------------------------------ npz never unpickles code
class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appears if the pickle is run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_npz_payload_in_object_array_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "evil.npz", train=object_array([stroke3([1, 2, 0], [3, 4, 1]), _CreatesFile(marker)]))
    with pytest.raises(SketchFormatError, match=r"evil\.npz\[train\]: field 'train': refused pickle \(.*open"):
        list(read_sketches(tmp_path / "evil.npz"))
    assert not marker.exists()
    assert main(["convert", str(tmp_path / "evil.npz"), str(tmp_path / "out.ndjson")]) == 2
    assert "evil.npz[train]" in one_line_error(capsys)
    assert not marker.exists() and not (tmp_path / "out.ndjson").exists()


def test_plain_pickle_renamed_npz_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(_CreatesFile(marker)))
    with pytest.raises(SketchFormatError, match=r"evil\.npz: unreadable npz \(not a zip archive"):
        list(read_sketches(tmp_path / "evil.npz"))
    assert main(["prepare", str(tmp_path / "evil.npz"), "--out", str(tmp_path / "store")]) == 2
    assert "evil.npz" in one_line_error(capsys)
    assert not marker.exists()


def test_npz_refuses_numpy_callables_and_odd_dtypes(tmp_path):
    """Only ndarray reconstruction and plain numeric/object dtypes: a numpy global that is not one of them
    (here ``numpy.save``, which would write a file) and a structured dtype are refused too."""
    marker = tmp_path / "saved.npy"

    class _Saves:
        def __reduce__(self):
            return np.save, (str(marker), np.zeros(1))

    np.savez(tmp_path / "a.npz", train=object_array([_Saves()]))
    with pytest.raises(SketchFormatError, match=r"a\.npz\[train\]: field 'train': refused pickle"):
        list(read_sketches(tmp_path / "a.npz"))
    assert not marker.exists()
    np.savez(tmp_path / "b.npz", train=object_array([np.zeros(2, dtype=[("x", "i2"), ("y", "O")])]))
    policy = ErrorPolicy("skip")
    assert list(read_sketches(tmp_path / "b.npz", policy=policy)) == []
    assert policy.counts == {"refused pickle": 1}


def _npy_with_pickle(array, protocol):
    """An ``.npy`` member as numpy writes it, with the object array pickled at ``protocol`` (2: as Python 2 and
    old numpy wrote sketch-rnn's files; it spells bytes through ``_codecs.encode``)."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": array.shape})
    pickle.dump(array, f, protocol=protocol)
    return f.getvalue()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_npz_stroke_arrays_still_read(tmp_path, protocol):
    a = stroke3([5, 6, 0], [1, -2, 1], [3, 3, 1])
    b = np.array([[1.0, 2.0, 1.0]], np.float32)
    c = stroke3([-7, 8, 1]).byteswap().view(np.dtype(">i2"))
    with zipfile.ZipFile(tmp_path / "k.npz", "w") as z:
        z.writestr("train.npy", _npy_with_pickle(object_array([a, b, c]), protocol))
        z.writestr("valid.npy", _npy_with_pickle(object_array([a]), protocol))
    got = list(read_sketches(tmp_path / "k.npz"))
    assert [s.meta["split"] for s in got] == ["train", "train", "train", "valid"]
    np.testing.assert_array_equal(got[0].points, [[5, 6, 0], [6, 4, 1], [9, 7, 1]])
    np.testing.assert_array_equal(got[1].points, [[1, 2, 1]])
    np.testing.assert_array_equal(got[2].points, [[-7, 8, 1]])


def test_npz_python2_pickle_reads(shared_data):
    """sketch-rnn's own files were written by Python 2 (strings decoded as latin-1)."""
    sketches = list(read_sketches(shared_data / "sketch-rnn" / "short_kanji.npz"))
    with np.load(shared_data / "sketch-rnn" / "short_kanji.npz", allow_pickle=True, encoding="latin1") as ref:
        expected = sum(len(ref[s]) for s in ("train", "valid", "test"))
        first = ref["train"][0]
    assert len(sketches) == expected
    np.testing.assert_array_equal(np.diff(sketches[0].points[:, :2], axis=0, prepend=0), first[:, :2])


# ------------------------------------------------------------------------------------ writers never change a number
EXTREME = [[0.0, 3e38, 5.0], [0.0, 2.0, -3e38], [2.0**63, 2.0**64 + 2.0**41, -(2.0**63)],
           [FLOAT32_MAX, -FLOAT32_MAX, 1e-45], [0.1, 123456.78, 16777217.0]]


def test_ndjson_writes_large_coordinates_exactly(tmp_path, capsys):
    src = tmp_path / "h.ndjson"
    src.write_text('{"word":"car","drawing":[[[0,3e38,5],[0,2,-3e38]]]}\n')
    assert main(["convert", str(src), str(tmp_path / "o.ndjson")]) == 0
    text = (tmp_path / "o.ndjson").read_text()
    assert "9223372036854775808" not in text
    (orig,), (back,) = read_sketches(src), read_sketches(tmp_path / "o.ndjson")
    np.testing.assert_array_equal(back.points, orig.points)


@pytest.mark.parametrize("fmt", ["ndjson", "svg", "npz", "bin"])
def test_writers_write_exactly_or_refuse(tmp_path, fmt):
    """Each extreme sketch is either written so that it reads back bit for bit, or refused with a
    SketchFormatError; never written as another number."""
    for k, xs in enumerate(EXTREME):
        pts = np.zeros((3, 3), np.float32)
        pts[:, 0] = xs
        pts[:, 1] = xs[::-1]
        pts[-1, 2] = 1
        sketch = Sketch(pts, "c", {"key_id": str(k)})
        path = tmp_path / f"{k}" / f"c.{fmt}"
        try:
            write_sketches(path, [sketch])
        except SketchFormatError:
            assert not path.exists()
            continue
        (back,) = read_sketches(path)
        np.testing.assert_array_equal(back.points, sketch.points, err_msg=f"{fmt}: {xs}")


def test_bin_refuses_what_its_counters_cannot_hold(tmp_path):
    long_stroke = Sketch(np.zeros((70000, 3), np.float32), "c")
    long_stroke.points[-1, 2] = 1
    many_strokes = Sketch(np.ones((70000, 3), np.float32), "c")
    for sketch, what in ((long_stroke, "points"), (many_strokes, "strokes")):
        with pytest.raises(SketchFormatError, match=f"too many {what}"):
            write_sketches(tmp_path / "c.bin", [sketch])
        assert not (tmp_path / "c.bin").exists()


# ------------------------------------------------------------------------------------ class names as file names
LABELS = ["..", ".", "a/b", "a_b", "a%2Fb", "..\\x", ".hidden", "ok", "x" * 300, "y" * 300, "z" * 200 + "/" + "é" * 40]


@pytest.mark.parametrize("fmt", ["ndjson", "npz", "bin", "svg"])
def test_class_names_stay_inside_the_output_folder(tmp_path, capsys, fmt):
    src = tmp_path / "in.ndjson"
    src.write_text("".join(json.dumps({"word": w, "key_id": str(i), "drawing": [[[1, 2], [3, 4]]]}) + "\n"
                           for i, w in enumerate(LABELS)))
    out = tmp_path / "deep" / "out"
    assert main(["convert", str(src), str(out), "--to", fmt]) == 0, capsys.readouterr().err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != src]
    assert written and all(out.resolve() in p.resolve().parents for p in written)
    assert all(len(part.encode()) <= 255 for p in written for part in p.parts)
    assert len(written) == len(LABELS)  # distinct names never share a file
    labels = sorted(s.label for s in read_sketches(out, fmt=fmt))
    short = sorted(w for w in LABELS if len(w.encode()) < 100)
    assert [w for w in labels if len(w.encode()) < 100] == short  # read back as the names they were


# ------------------------------------------------------------------------------------ one prepare per store
HOLD_LOCK = """
import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "r2cnn", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_concurrent_prepare_waits_for_the_first(tmp_path):
    out = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".store.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = _cli("prepare", "--builtin", "2", "--out", out)
        line = second.stdout.readline()
        assert "waiting" in line and str(out) in line
        assert second.poll() is None and not out.exists()  # it waits; nothing written meanwhile
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert len(SketchStore(out)) > 0


def test_two_prepares_at_once_both_finish_with_one_store(tmp_path):
    out = tmp_path / "store"
    runs = [_cli("prepare", "--builtin", "3", "--out", out) for _ in range(2)]
    results = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], results
    assert len(SketchStore(out)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no lock file, temporary or old store left


# ------------------------------------------------------------------------------------ download without a size
class _NoLengthHandler(BaseHTTPRequestHandler):
    """HTTP/1.0 without Content-Length: the body ends when the connection closes. Serves ``server.body`` cut to
    ``server.send`` bytes, with ``server.headers``."""

    def _reply(self):
        self.send_response(200)
        for k, v in self.server.headers.items():
            self.send_header(k, v)
        self.end_headers()

    def do_HEAD(self):
        self._reply()

    def do_GET(self):
        self._reply()
        self.wfile.write(self.server.body[:self.server.send])

    def log_message(self, *args):
        pass


@pytest.fixture
def nolength(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _NoLengthHandler)
    srv.body = bytes(range(256)) * 300
    srv.send, srv.headers = len(srv.body), {}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = class_url("cat", "bin", f"http://127.0.0.1:{srv.server_address[1]}/full/")
    yield srv
    srv.shutdown()
    srv.server_close()


def _md5_headers(body):
    digest = hashlib.md5(body).digest()
    b64 = base64.b64encode(digest).decode()
    return [{"x-goog-hash": f"crc32c=AAAAAA==,md5={b64}"}, {"Content-MD5": b64}, {"ETag": f'"{digest.hex()}"'}]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_truncated_download_without_length_is_refused(nolength, tmp_path, which):
    nolength.headers = _md5_headers(nolength.body)[which]
    nolength.send = 1000
    with pytest.raises(R2CNNError, match=r"cat\.bin: checksum mismatch"):
        download_file(nolength.url, tmp_path / "cat.bin", progress=False, log=lambda m: None)
    assert not (tmp_path / "cat.bin").exists()
    nolength.send = len(nolength.body)
    assert download_file(nolength.url, tmp_path / "cat.bin", progress=False, log=lambda m: None) == "downloaded"
    assert (tmp_path / "cat.bin").read_bytes() == nolength.body


def test_download_says_when_it_cannot_verify(nolength, tmp_path):
    said = []
    nolength.send = 1000
    assert download_file(nolength.url, tmp_path / "cat.bin", progress=False, log=said.append) == "downloaded"
    assert len(said) == 1 and "not verified" in said[0] and "cat.bin" in said[0]


# ------------------------------------------------------------------------------------ no traceback
@pytest.mark.parametrize("command", [
    ["convert", "{src}", "{blocker}/out.ndjson"],
    ["convert", "{src}", "{blocker}/svg", "--to", "svg"],
    ["prepare", "{src}", "--out", "{blocker}/store"],
    ["prepare", "{src}", "--out", "{blocker}/deeper/store"],
])
def test_output_under_an_existing_file(tmp_path, capsys, command):
    src = tmp_path / "in.ndjson"
    src.write_text('{"word":"cat","key_id":"1","drawing":[[[1,2],[3,4]]]}\n')
    (tmp_path / "blocker").write_text("a file, not a folder")
    args = [a.format(src=src, blocker=tmp_path / "blocker") for a in command]
    assert main(args) == 2
    assert "blocker" in one_line_error(capsys)


def test_download_bad_base_url(tmp_path, capsys):
    assert main(["download", "quickdraw", "--classes", "cat", "--out", str(tmp_path), "--base-url", "notaurl"]) == 2
    assert "notaurl" in one_line_error(capsys)


def _store(tmp_path):
    sketches = [Sketch.from_strokes([np.array([[i, 2], [3, 4 + i]])], label=f"c{i % 2}", meta={"key_id": str(i)})
                for i in range(6)]
    return build_store(sketches, tmp_path / "s").path


def _use(path):
    store = SketchStore(path)
    store.indices("train")
    return [store[i].points for i in range(len(store))]


@pytest.mark.parametrize("name, damage", [
    ("points.npy", lambda b: b[:-7]),
    ("points.npy", lambda b: b[:40]),
    ("offsets.npy", lambda b: b[:-8]),
    ("labels.npy", lambda b: b[:-2]),
    ("labels.npy", lambda b: b[:128] + b"\x7f" * (len(b) - 128)),  # class indices out of range
    ("splits.npy", lambda b: b"garbage"),
    ("manifest.json", lambda b: json.dumps({k: v for k, v in json.loads(b).items() if k != "classes"}).encode()),
    ("manifest.json", lambda b: json.dumps(dict(json.loads(b), num_sketches="six")).encode()),
    ("manifest.json", lambda b: b"[1, 2]"),
])
def test_corrupt_store_is_one_line_error(tmp_path, name, damage):
    path = _store(tmp_path)
    _use(path)
    f = path / name
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(R2CNNError, match=name.replace(".", r"\.")) as e:
        _use(path)
    assert "\n" not in str(e.value)


def test_prepare_rebuilds_a_damaged_store(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["prepare", "--builtin", "1", "--out", str(out)]) == 0
    (out / "offsets.npy").write_bytes(b"")
    capsys.readouterr()
    assert main(["prepare", "--builtin", "1", "--out", str(out)]) == 0  # same options: would be "up to date"
    assert "offsets.npy" in capsys.readouterr().out
    assert len(_use(out)) > 0


# ------------------------------------------------------------------------------------ SketchBatch labels
def test_sketch_batch_maps_string_labels_or_refuses():
    sketches = [Sketch(np.zeros((1, 3)), "dog"), Sketch(np.zeros((2, 3)), "cat"), Sketch(np.zeros((1, 3)), None)]
    assert SketchBatch.from_sketches(sketches, classes=["cat", "dog"]).labels.tolist() == [1, 0, -1]
    with pytest.raises(R2CNNError, match="'dog'.*classes"):
        SketchBatch.from_sketches(sketches)
    with pytest.raises(R2CNNError, match="'dog' is not one of"):
        SketchBatch.from_sketches(sketches, classes=["cat"])
    assert SketchBatch.from_sketches([Sketch(np.zeros((1, 3)), 3)]).labels.tolist() == [3]


# ------------------------------------------------------------------------------------ download --list
def test_download_list_needs_no_dataset(capsys):
    assert main(["download", "--list"]) == 0
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 345 and "power outlet" in names
    assert main(["download"]) == 2
    assert "quickdraw" in one_line_error(capsys)


# --- Round 3 audit 5: a FIFO input, and degenerate extents never normalised to NaN ------------------------------

def test_a_fifo_input_says_it_is_not_a_regular_file(tmp_path, capsys):
    from r2cnn.data.formats import find_sketch_files

    fifo = tmp_path / "pipe.ndjson"
    os.mkfifo(fifo)
    with pytest.raises(R2CNNError, match="is not a regular file \\(a named pipe\\)"):
        find_sketch_files(fifo)
    with pytest.raises(R2CNNError, match="no such file or folder"):
        find_sketch_files(tmp_path / "absent.ndjson")
    assert main(["convert", str(fifo), str(tmp_path / "out.ndjson")]) == 2
    assert "is not a regular file" in one_line_error(capsys)


@pytest.mark.parametrize("extent", [1e-38, 1e-40, 1e-45, 0.0])
def test_a_tiny_or_zero_size_drawing_is_a_dot_not_nan(tmp_path, extent):
    from r2cnn.data.transforms import make_transform, normalize

    points = np.array([[0, 0, 0], [extent, extent / 2, 0], [extent / 3, extent, 1]], np.float32)
    with np.errstate(all="raise"):  # no overflow on the way either
        out = normalize(Sketch(points))
    assert np.isfinite(out.points).all() and (out.points[:, :2] == 0).all()
    # and through a store and the training transform, as `prepare` and the loader see it
    line = Sketch(np.array([[0, 0, 0], [5, 5, 1]], np.float32), "line")
    store = build_store([Sketch(points, "dot")] * 4 + [line] * 4, tmp_path / "store", split_sizes=(4, 2, 2))
    tf = make_transform(True, rdp_epsilon=1.0, deform=1.0)
    for i in range(len(store)):
        assert np.isfinite(tf(store[i], np.random.default_rng(i)).points).all()
# ------------------------------------------------------------------------------------ crafted SVG numbers
CRAFTED_SVGS = {  # each once gave a traceback (rc 1) and a 500 from /api/parse, and --on-error skip did not skip it
    "arc.svg": ('<svg><path d="M 0 0 A 1e-300 1e-300 0 1 1 1e300 1e300"/></svg>', "non-finite coordinate"),
    "smooth.svg": ('<svg><path d="M 0 0 C 0 0 0 0 0 0 S 1 1 1e308 1e308"/></svg>', "non-finite coordinate"),
    "utf7.svg": ('<?xml version="1.0" encoding="UTF-7"?><svg/>', "unsupported XML encoding"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED_SVGS))
def test_crafted_svg_is_a_one_line_error(tmp_path, capsys, name):
    text, reason = CRAFTED_SVGS[name]
    (tmp_path / name).write_text(text)
    assert main(["convert", str(tmp_path / name), str(tmp_path / "o.ndjson")]) == 2
    err = one_line_error(capsys)
    assert f"{tmp_path / name}: " in err and reason in err


@pytest.mark.parametrize("command", ["convert", "prepare"])
def test_crafted_svgs_are_skipped_and_counted(tmp_path, capsys, command):
    src = tmp_path / "src" / "cat"
    src.mkdir(parents=True)
    for name, (text, _) in CRAFTED_SVGS.items():
        (src / name).write_text(text)
    for k in range(4):
        (src / f"ok{k}.svg").write_text(f'<svg><path d="M 0 0 A 1e-300 1e-300 0 1 1 {k + 1} 5"/></svg>')  # a line
    out = tmp_path / ("o.ndjson" if command == "convert" else "store")
    args = [str(out)] if command == "convert" else ["--out", str(out)]
    assert main([command, str(src.parent), *args, "--on-error", "skip"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    assert "2 x non-finite coordinate" in printed.out + printed.err
    assert "1 x unsupported XML encoding" in printed.out + printed.err
    if command == "convert":
        assert [s.points[:, :2].tolist() for s in read_sketches(out)] == [[[0, 0], [k + 1, 5]] for k in range(4)]
