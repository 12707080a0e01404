"""Full QuickDraw scale, rehearsed small: the mirror (``r2cnn bench mirror``) served on 127.0.0.1, downloaded with
``r2cnn download``'s code (a dropped connection detected and resumed, finished files not fetched again), prepared,
trained on by two gloo ranks and evaluated. The full-size run (345 x 75,000) and its figures are in
docs/architecture.md, "Scale"; here one class file of the full size runs by default, and the 345-class path in the
slow tests."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import orjson
import pytest

from r2cnn.bench.mirror import MirrorServer, generate
from r2cnn.data import download
from r2cnn.data.download import QUICKDRAW_CLASSES, download_quickdraw
from r2cnn.errors import R2CNNError

ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1000000000", MALLOC_TRIM_THRESHOLD_="1000000000",
           R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")
FIELDS = ["word", "countrycode", "timestamp", "recognized", "key_id", "drawing"]


def _check_simplified_lines(path, word, n):
    lines = path.read_bytes().splitlines()
    assert len(lines) == n
    keys = set()
    for line in lines[:: max(1, n // 2000)]:
        rec = orjson.loads(line)
        assert list(rec) == FIELDS and rec["word"] == word and isinstance(rec["recognized"], bool)
        assert rec["timestamp"].startswith("2017-0") and rec["timestamp"].endswith(" UTC")
        assert len(rec["key_id"]) == 16 and rec["key_id"].isdigit()
        xs = [v for s in rec["drawing"] for v in s[0]]
        ys = [v for s in rec["drawing"] for v in s[1]]
        assert all(len(s) == 2 and len(s[0]) == len(s[1]) >= 1 for s in rec["drawing"])
        assert all(isinstance(v, int) for v in xs + ys)
        # Google's normalisation: top-left aligned, the larger extent exactly 255
        assert min(xs) == 0 and min(ys) == 0 and max(max(xs), max(ys)) == 255
        keys.add(rec["key_id"])
    return keys


def test_one_full_size_class_file_through_the_local_bucket(tmp_path):
    """A class file of the full mirror's size (75,000 drawings): generated, served, downloaded through a dropped
    connection (detected, resumed with a Range request, checked by the server's MD5), not fetched again on a rerun,
    and prepared into the paper's 70K/2.5K/2.5K split."""
    from r2cnn.data.store import prepare

    mirror, dl = tmp_path / "mirror", tmp_path / "dl"
    done = generate(mirror, classes=["cat"], per_class=75000, raw_classes=[], workers=1, log=lambda *a: None)
    f = mirror / "simplified" / "cat.ndjson"
    assert done["drawings"] == 75000 and done["bytes"] == f.stat().st_size
    assert (mirror / "simplified" / "cat.ndjson.md5").read_text().strip() == hashlib.md5(f.read_bytes()).hexdigest()
    keys = _check_simplified_lines(f, "cat", 75000)
    assert len(keys) > 1000  # sampled lines: all distinct

    with MirrorServer(mirror, drop_after=1 << 20) as srv:
        with pytest.raises(R2CNNError, match="size mismatch: got 1048576 bytes"):
            download_quickdraw(["cat"], "simplified", dl, base_url=srv.base_url, progress=False, log=lambda *a: None)
        assert (dl / "cat.ndjson.part").stat().st_size == 1 << 20 and not (dl / "cat.ndjson").exists()
        download_quickdraw(["cat"], "simplified", dl, base_url=srv.base_url, progress=False, log=lambda *a: None)
        assert (dl / "cat.ndjson").read_bytes() == f.read_bytes()
        hashed = []
        real_md5 = download._file_md5
        download._file_md5 = lambda path: hashed.append(path) or real_md5(path)
        try:  # a rerun: no GET, and the file is not hashed again (its size and mtime are those recorded)
            download_quickdraw(["cat"], "simplified", dl, base_url=srv.base_url, progress=False, log=lambda *a: None)
            assert srv.gets == [("simplified/cat.ndjson", 0), ("simplified/cat.ndjson", 1 << 20)] and not hashed
            os.truncate(dl / "cat.ndjson", 1000)  # a truncated copy is fetched again
            download_quickdraw(["cat"], "simplified", dl, base_url=srv.base_url, progress=False, log=lambda *a: None)
            assert srv.gets[-1] == ("simplified/cat.ndjson", 0) and (dl / "cat.ndjson").read_bytes() == f.read_bytes()
        finally:
            download._file_md5 = real_md5

    store = prepare([dl], tmp_path / "store", progress=False, log=lambda *a: None)
    counts = store.manifest["counts"]
    assert (counts["train"]["cat"], counts["valid"]["cat"], counts["test"]["cat"]) == (70000, 2500, 2500)
    assert store.points.dtype == np.uint8 and len(np.unique(np.asarray(store.key_ids))) == 75000


def test_mirror_is_deterministic_and_raw_files_simplify(tmp_path):
    """The same seed gives the same bytes whatever the worker count; a raw file (floats, timestamps) prepares with
    ``simplify_raw`` into the simplified files' integer 0..255 coordinates."""
    from r2cnn.data.store import prepare

    a = generate(tmp_path / "a", classes=["cat", "sun"], per_class=300, raw_classes=["cat"], raw_per_class=40,
                 workers=1, log=lambda *a: None)
    generate(tmp_path / "b", classes=["sun", "cat"], per_class=300, raw_classes=["cat"], raw_per_class=40,
             workers=2, log=lambda *a: None)
    for rel in ("simplified/cat.ndjson", "simplified/sun.ndjson", "raw/cat.ndjson"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert a["files"] == 3 and a["drawings"] == 640
    # a rerun finds the files and writes nothing
    assert generate(tmp_path / "a", classes=["cat"], per_class=300, raw_classes=[], log=lambda *a: None)["drawings"] == 0
    raw = [orjson.loads(x) for x in (tmp_path / "a" / "raw" / "cat.ndjson").read_bytes().splitlines()]
    assert len(raw) == 40 and all(len(s) == 3 for r in raw for s in r["drawing"])
    keys = {r["key_id"] for r in raw} | _check_simplified_lines(tmp_path / "a" / "simplified" / "cat.ndjson", "cat", 300)
    assert len(keys) == 340  # raw and simplified drawings have distinct key_ids
    store = prepare([tmp_path / "a" / "raw"], tmp_path / "store", simplify_raw=True, split_sizes=(30, 5, 5),
                    progress=False, log=lambda *a: None)
    assert len(store) == 40 and store.points.dtype == np.uint8


@pytest.mark.slow
def test_all_345_classes_download_prepare_ddp_evaluate(tmp_path):
    """The full path at 345 classes x 100 drawings: `r2cnn download quickdraw --classes all` from the local bucket,
    `prepare`, two gloo ranks under torchrun, `evaluate` with per-class figures for every class."""
    from r2cnn.cli import main

    mirror, dl, store, run = tmp_path / "mirror", tmp_path / "dl", tmp_path / "store", tmp_path / "run"
    generate(mirror, per_class=100, raw_classes=[], workers=2, log=lambda *a: None)
    with MirrorServer(mirror) as srv:
        assert main(["download", "quickdraw", "--classes", "all", "--out", str(dl), "--base-url", srv.base_url]) == 0
    assert len(list(dl.glob("*.ndjson"))) == 345 and not list(dl.glob("*.part"))
    assert main(["prepare", str(dl), "--out", str(store)]) == 0
    tiny = '{"canvas": 32, "width": 8, "stem": "small", "dropout": 0.0}'
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "r2cnn", "train", "--preset", "cpu-cnn", "--data", str(store), "--out", str(run),
                          "--steps", "4", "--batch-size", "16", "--workers", "0", "--set", f"model_options={tiny}"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(store), "--json", str(report),
                 "--batch-size", "256", "--partial", "1"]) == 0
    result = json.loads(report.read_text())
    assert result["count"] == 345 * 3 and len(result["per_class"]) == 345 and list(result["partial"]) == ["1"]
    assert sorted(result["per_class"]) == sorted(QUICKDRAW_CLASSES)


_KILL_ON_THIRD_FILE = """
import os, signal, sys
import r2cnn.data.formats as formats
from r2cnn.data.store import prepare
real, opened = formats.read_sketches, []
def read_sketches(path, **kw):
    opened.append(path)
    if len(opened) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the build, after two checkpoints
    return real(path, **kw)
formats.read_sketches = read_sketches
prepare([sys.argv[1]], sys.argv[2], progress=False)
"""


def test_prepare_resumes_after_kill_9_without_rereading_finished_files(tmp_path):
    """`prepare` killed with SIGKILL while reading its third class file leaves ``DIR.partial`` with a checkpoint
    after each finished file; the next `prepare` reads only the files not yet done and builds the same store as
    an uninterrupted run."""
    import r2cnn.data.formats as formats
    from r2cnn.data.store import prepare

    generate(tmp_path / "mirror", classes=["cat", "sun", "car", "shoe"], per_class=400, raw_classes=[],
             log=lambda *a: None)
    src, out = tmp_path / "mirror" / "simplified", tmp_path / "store"
    killed = subprocess.run([sys.executable, "-c", _KILL_ON_THIRD_FILE, str(src), str(out)], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = tmp_path / "store.partial"
    assert not out.exists() and json.loads((partial / "progress.json").read_text())["feed"]["files_done"] == 2

    opened, real = [], formats.read_sketches
    logs = []

    def counting(path, **kw):
        opened.append(path.name)
        return real(path, **kw)

    formats.read_sketches = counting
    try:
        store = prepare([src], out, progress=False, log=logs.append)
    finally:
        formats.read_sketches = real
    assert opened == ["shoe.ndjson", "sun.ndjson"] and not partial.exists()  # car, cat: done before the kill
    assert any("resuming" in line for line in logs)
    whole = prepare([src], tmp_path / "whole", progress=False, log=lambda *a: None)
    assert store.manifest["counts"] == whole.manifest["counts"] and store.manifest["inputs"] == whole.manifest["inputs"]
    for name in ("points", "offsets", "labels", "key_ids", "splits"):
        assert np.array_equal(getattr(store, name) if name != "splits" else store._array("splits"),
                              getattr(whole, name) if name != "splits" else whole._array("splits")), name


def test_prepare_starts_afresh_when_the_sources_changed_since_the_interruption(tmp_path):
    """A ``DIR.partial`` left by a build of other sources (or options) is not resumed: it is removed."""
    from r2cnn.data.store import prepare

    generate(tmp_path / "m", classes=["cat", "sun"], per_class=50, raw_classes=[], log=lambda *a: None)
    partial = tmp_path / "store.partial"
    partial.mkdir()
    (partial / "progress.json").write_text(json.dumps({"key": "another build", "feed": {"files_done": 1}}))
    logs = []
    store = prepare([tmp_path / "m" / "simplified"], tmp_path / "store", split_sizes=(40, 5, 5), progress=False,
                    log=logs.append)
    assert len(store) == 100 and not partial.exists() and not any("resuming" in line for line in logs)


def test_parallel_prepare_builds_the_same_store(tmp_path):
    """``prepare(workers=2)`` reads files in two processes and gives the store one reader gives, byte for byte;
    a bad record still stops it with the file and line."""
    from r2cnn.data.store import prepare

    generate(tmp_path / "m", classes=["cat", "sun", "car"], per_class=300, raw_classes=["cat"], raw_per_class=20,
             log=lambda *a: None)
    src = [tmp_path / "m" / "simplified", tmp_path / "m" / "raw"]
    one = prepare(src, tmp_path / "one", split_sizes=(250, 25, 25), simplify_raw=True, progress=False,
                  log=lambda *a: None)
    two = prepare(src, tmp_path / "two", split_sizes=(250, 25, 25), simplify_raw=True, workers=2, progress=False,
                  log=lambda *a: None)
    for name in ("points.npy", "offsets.npy", "labels.npy", "key_ids.npy", "splits.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert one.manifest["counts"] == two.manifest["counts"] and two.manifest["raw_simplified"] == 20
    with open(tmp_path / "m" / "simplified" / "sun.ndjson", "ab") as f:
        f.write(b'{"word": "sun", "drawing": [[[1, 2], [3]]]}\n')
    with pytest.raises(R2CNNError, match=r"sun.ndjson:301"):
        prepare(src, tmp_path / "three", workers=2, progress=False, log=lambda *a: None)


_KILL_WITH_READERS = """
import json, os, signal, sys
import psutil
from r2cnn.data.store import prepare, writer
real, calls = writer.Builder.add_many, []
def add_many(self, *a):
    calls.append(1)
    if len(calls) == 2:
        kids = [p.pid for p in psutil.Process().children(recursive=True)]
        open(sys.argv[3], "w").write(json.dumps(kids))
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *a)
writer.Builder.add_many = add_many
prepare([sys.argv[1]], sys.argv[2], workers=2, progress=False)
"""


def test_parallel_prepare_killed_leaves_no_reader_behind_and_resumes(tmp_path):
    """``prepare --workers 2`` killed with SIGKILL: its reader processes exit by themselves (they watch their
    parent), and the next run resumes after the one file checkpointed."""
    import time

    import psutil

    from r2cnn.data.store import prepare

    generate(tmp_path / "m", classes=["cat", "sun", "car"], per_class=200, raw_classes=[], log=lambda *a: None)
    src, out, kids = tmp_path / "m" / "simplified", tmp_path / "store", tmp_path / "kids.json"
    killed = subprocess.run([sys.executable, "-c", _KILL_WITH_READERS, str(src), str(out), str(kids)], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    pids = json.loads(kids.read_text())
    assert pids
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                              for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert json.loads((tmp_path / "store.partial" / "progress.json").read_text())["feed"]["files_done"] == 1
    logs = []
    store = prepare([src], out, workers=2, progress=False, log=logs.append)
    assert len(store) == 600 and any("resuming" in line for line in logs)


def test_evaluate_partial_option_parses_fractions():
    """`evaluate --partial 1` (one pass over an 862,500-sketch split instead of four) and its one-line error."""
    import argparse

    from r2cnn.commands.evaluate import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--checkpoint", "c.pt", "--data", "s", "--partial", "0.5,1"])
    assert args.partial == (0.5, 1.0)
    assert p.parse_args(["--checkpoint", "c.pt", "--data", "s"]).partial is None
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "c.pt", "--data", "s", "--partial", "0,1"])
