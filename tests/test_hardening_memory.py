"""Small hostile files must not take large memory: every reader checks its limits while streaming, before it
allocates, so a crafted file costs at most ``max(20 x its size, 256 MiB)`` of peak memory over the reader's
start, and gives one line naming the file and the record.

Each crafted file is built in ``tmp_path`` and read by a fresh interpreter whose peak resident memory (Linux's
``VmHWM``, the high-water mark of the process's own memory; ``ru_maxrss`` would include the parent's, inherited
across fork and exec) is compared before and after reading; before the fixes these files took 0.5 to 6 GB."""

import gzip
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from r2cnn.data.formats import ndjson as ndjson_format
from r2cnn.data.formats import binary as bin_format
from r2cnn.data.formats import read_sketches, write_sketches
from r2cnn.errors import ErrorPolicy, SketchFormatError
from r2cnn.sketch import Sketch

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures memory through Linux's /proc")

SRC = Path(__file__).resolve().parents[1] / "src"
MiB = 1 << 20

# Reads a file in a fresh interpreter; prints the peak-memory growth (bytes), the sketches read, the skip counts
# and the error's message.
READ = """
import json, re, sys
from pathlib import Path
from r2cnn.data.formats import read_sketches, write_sketches
from r2cnn.errors import ErrorPolicy, SketchFormatError
from r2cnn.sketch import Sketch

def peak_kib():
    return int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

start = peak_kib()
policy = ErrorPolicy(sys.argv[2])
n, error = 0, None
try:
    for sketch in read_sketches(sys.argv[1], policy=policy):
        n += 1
except SketchFormatError as e:
    error = str(e)
growth = (peak_kib() - start) * 1024
print(json.dumps({"growth": growth, "read": n, "counts": dict(policy.counts), "error": error}))
"""


def read_in_subprocess(path: Path, mode: str = "raise") -> dict:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run([sys.executable, "-c", READ, str(path), mode], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bound(path: Path) -> int:
    return max(20 * path.stat().st_size, 256 * MiB)


def assert_bounded_one_line_error(path: Path, where: str, reason: str) -> None:
    """Both policies: within the bound; raise gives one line naming the file, where in it, and why; skip counts
    the record under that reason and goes on."""
    raised = read_in_subprocess(path, "raise")
    assert raised["growth"] <= bound(path), f"{raised['growth'] / MiB:.0f} MiB for a {path.stat().st_size} B file"
    message = raised["error"]
    assert message is not None and "\n" not in message
    assert message.startswith(f"{path}{where}") and reason in message, message
    skipped = read_in_subprocess(path, "skip")
    assert skipped["growth"] <= bound(path), f"{skipped['growth'] / MiB:.0f} MiB for a {path.stat().st_size} B file"
    assert skipped["error"] is None and skipped["counts"] == {reason: 1}


def test_svg_with_many_long_curves(tmp_path):
    """510 KB of curves whose control points ask for 1024 pieces each (31M points; 1 GB before)."""
    path = tmp_path / "c" / "curves.svg"
    path.parent.mkdir()
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 ' + "C0 0 1e6 1e6 0 0 " * 30000 + '"/></svg>')
    assert_bounded_one_line_error(path, ": field 'd'", "too many points")
    assert "path#0" in read_in_subprocess(path)["error"]


def _gzip_repeated(path: Path, head: bytes, chunk: bytes, times: int, tail: bytes) -> None:
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(head)
        for _ in range(times):
            f.write(chunk)
        f.write(tail)


def test_ndjson_gz_with_one_huge_line(tmp_path):
    """A 60 KB .ndjson.gz whose first line is 64 MB of numbers (0.6 GB before; 5.9 GB for 400 MB)."""
    path = tmp_path / "huge.ndjson.gz"
    _gzip_repeated(path, b'{"word":"a","drawing":[[[', b"0," * MiB, 32, b'0],[0]]]}\n{"drawing":[[[1],[2]]]}\n')
    assert_bounded_one_line_error(path, ":1:", "line too long")
    assert read_in_subprocess(path, "skip")["read"] == 1  # the next line is read


def test_ndjson_long_line_is_skipped_in_pieces_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(ndjson_format, "MAX_LINE_BYTES", 64)
    path = tmp_path / "c.ndjson"
    path.write_text('{"drawing":[[[1],[2]]]}\n{"drawing":[[[' + "0," * 200 + '0],[0]]]}\n{"drawing":[[[3],[4]]]}\n')
    policy = ErrorPolicy("skip")
    assert [s.meta["line"] for s in read_sketches(path, policy=policy)] == [1, 3]
    assert policy.counts == {"line too long": 1}
    with pytest.raises(SketchFormatError, match=r"c\.ndjson:2: line too long \(over 64 bytes"):
        list(read_sketches(path))


def test_bin_gz_declaring_long_strokes(tmp_path):
    """A 190 KB .bin.gz: one record of 1500 strokes of 65535 points (0.6 GB before; 1.6 GB for 4000 strokes)."""
    path = tmp_path / "c.bin.gz"
    stroke = struct.pack("<H", 65535) + bytes(2 * 65535)
    _gzip_repeated(path, struct.pack("<Q2sBIH", 1, b"US", 0, 0, 1500), stroke, 1500, b"")
    assert_bounded_one_line_error(path, ": record 0: field 'drawing'", "too many points")


def test_bin_record_over_the_limit_is_read_past_and_counted(tmp_path, monkeypatch):
    """The strokes of a record over the limit are read on but not kept, so the next record is found."""
    monkeypatch.setattr(bin_format, "MAX_POINTS", 10)
    record = struct.pack("<Q2sBIH", 1, b"US", 0, 0, 2) + (struct.pack("<H", 8) + bytes(16)) * 2
    ok = struct.pack("<Q2sBIH", 2, b"US", 0, 0, 1) + struct.pack("<H", 3) + bytes([1, 2, 3, 4, 5, 6])
    (tmp_path / "c.bin").write_bytes(record + ok)
    policy = ErrorPolicy("skip")
    (sketch,) = read_sketches(tmp_path / "c.bin", policy=policy)
    assert sketch.meta["record"] == 1 and sketch.points[:, 0].tolist() == [1, 2, 3]
    assert policy.counts == {"too many points": 1}
    with pytest.raises(SketchFormatError, match=r"c\.bin: record 0: field 'drawing': too many points \(16 > 10\)"):
        list(read_sketches(tmp_path / "c.bin"))


def _npz_with_train(path: Path, write_member) -> None:
    """An .npz whose ``train`` member is written by ``write_member(stream)`` and whose ``valid`` holds one sketch."""
    valid = np.empty(1, object)
    valid[0] = np.array([[1, 2, 0], [3, 4, 1]], np.int16)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("train.npy", "w", force_zip64=True) as member:
            write_member(member)
        with z.open("valid.npy", "w") as member:
            np.lib.format.write_array(member, valid, allow_pickle=True)


def test_npz_numeric_member_is_refused_from_its_header(tmp_path):
    """A 260 KB .npz whose train member is 2^28 int8 zeros (0.5 GB before; 1 GB and 120 s skipping for 2^29)."""
    path = tmp_path / "c.npz"

    def numeric(member):
        np.lib.format.write_array_header_1_0(member, {"descr": "|i1", "fortran_order": False, "shape": (2**28,)})
        zeros = bytes(16 * MiB)
        for _ in range(16):
            member.write(zeros)

    _npz_with_train(path, numeric)
    assert_bounded_one_line_error(path, "[train]: field 'train'", "not an array of sketches")
    assert read_in_subprocess(path, "skip")["read"] == 1  # the valid split is read


def test_npz_object_member_with_a_huge_element(tmp_path):
    """A 260 KB .npz whose train member is an object array holding one 2^28-byte array: refused when the pickle
    asks to read the element's bytes, before they are decompressed."""
    path = tmp_path / "c.npz"
    big = np.empty(1, object)
    big[0] = np.zeros(2**28, np.int8)
    _npz_with_train(path, lambda member: np.lib.format.write_array(member, big, allow_pickle=True))
    del big
    assert_bounded_one_line_error(path, "[train]: field 'train'", "too many points")


def test_npz_empty_numeric_split_is_no_sketches(tmp_path):
    np.savez(tmp_path / "c.npz", train=np.zeros(0), valid=np.zeros((0, 3)))
    policy = ErrorPolicy("skip")
    assert list(read_sketches(tmp_path / "c.npz", policy=policy)) == []
    assert policy.counts == {"not an array of sketches": 1}  # (0, 3) is not 1-D


def test_ndjson_writer_refuses_a_line_the_reader_would(tmp_path, monkeypatch):
    monkeypatch.setattr(ndjson_format, "MAX_LINE_BYTES", 64)
    short = Sketch(np.array([[1, 2, 1]], np.float32), "a")
    long = Sketch(np.array([[1, 2, 0]] * 20 + [[1, 2, 1]], np.float32), "a")
    with pytest.raises(SketchFormatError, match=r"record 1: line too long \(\d+ bytes as ndjson, over 64\)"):
        write_sketches(tmp_path / "c.ndjson", [short, long])
    policy = ErrorPolicy("skip")
    assert write_sketches(tmp_path / "c.ndjson", [short, long], policy=policy)[0] == 1
    assert policy.counts == {"line too long": 1}
    assert len(list(read_sketches(tmp_path / "c.ndjson"))) == 1
