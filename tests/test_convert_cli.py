"""``r2cnn convert``: formats from extensions or --to, folders, counts, one-line errors, --on-error skip."""

import json
import subprocess
import sys

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.data.formats import read_sketches


def convert(*args):
    return main(["convert", *map(str, args)])


def write_ndjson(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


GOOD = {"word": "cat", "key_id": "7", "drawing": [[[1, 2, 3], [4, 5, 6]]]}


def test_file_to_file_and_folders(tmp_path, capsys):
    src = write_ndjson(tmp_path / "in.ndjson", [GOOD, dict(GOOD, word="dog", key_id="8")])
    assert convert(src, tmp_path / "by_class", "--to", "bin") == 0
    assert "read 2 sketches of 2 classes" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "by_class").iterdir()) == ["cat.bin", "dog.bin"]
    assert convert(tmp_path / "by_class", tmp_path / "svg", "--to", "svg") == 0
    assert sorted(str(p.relative_to(tmp_path / "svg")) for p in (tmp_path / "svg").rglob("*.svg")) == ["cat/7.svg", "dog/8.svg"]
    assert convert(tmp_path / "svg", tmp_path / "back.ndjson") == 0
    back = list(read_sketches(tmp_path / "back.ndjson"))
    assert [s.label for s in back] == ["cat", "dog"]
    np.testing.assert_array_equal(back[0].points[:, :2], [[1, 4], [2, 5], [3, 6]])


def test_bad_input_one_line_error_and_skip(tmp_path, capsys):
    src = tmp_path / "in.ndjson"
    src.write_text(json.dumps(GOOD) + "\n{broken\n" + json.dumps({"word": "cat", "drawing": [[[1, 2], [3]]]}) + "\n")
    assert convert(src, tmp_path / "out.ndjson") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"r2cnn: error: {src}:2: malformed JSON" + err.split("malformed JSON")[1] and "\n" not in err
    assert not (tmp_path / "out.ndjson").exists()
    assert convert(src, tmp_path / "out.ndjson", "--on-error", "skip") == 0
    out = capsys.readouterr().out
    assert "wrote 1 sketches" in out and "skipped 2 records" in out
    assert "1 x malformed JSON" in out and "1 x x/y length mismatch" in out
    assert len(list(read_sketches(tmp_path / "out.ndjson"))) == 1


def test_no_traceback_from_the_console_script(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x01\x02\x03")
    r = subprocess.run([sys.executable, "-m", "r2cnn", "convert", str(tmp_path / "a.bin"), str(tmp_path / "b.ndjson")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"r2cnn: error: {tmp_path / 'a.bin'}: record 0: field 'header': truncated record (3 of 17 bytes)"]


def test_unknown_output_format(tmp_path, capsys):
    write_ndjson(tmp_path / "in.ndjson", [GOOD])
    assert convert(tmp_path / "in.ndjson", tmp_path / "out") == 2
    assert "name the output format" in capsys.readouterr().err


@pytest.mark.shared_data
def test_real_qd5_round_trip(shared_data, tmp_path, capsys):
    """qd5 valid -> npz -> bin -> ndjson gives back the same points per class, in order."""
    src = shared_data / "quickdraw" / "qd5" / "valid"
    assert convert(src, tmp_path / "npz", "--to", "npz") == 0
    assert convert(tmp_path / "npz", tmp_path / "bin", "--to", "bin") == 0
    assert convert(tmp_path / "bin", tmp_path / "nd", "--to", "ndjson") == 0
    assert "read 2500 sketches of 5 classes" in capsys.readouterr().out
    original = {}
    for s in read_sketches(src):
        original.setdefault(s.label, []).append(s.points)
    back = {}
    for s in read_sketches(tmp_path / "nd"):
        back.setdefault(s.label, []).append(s.points)
    assert original.keys() == back.keys()
    for label in original:
        assert len(original[label]) == len(back[label]) == 500
        assert all(np.array_equal(a, b) for a, b in zip(original[label], back[label]))


@pytest.mark.shared_data
def test_real_tuberlin_folder(shared_data, tmp_path, capsys):
    src = shared_data / "tuberlin" / "svg"
    assert convert(src, tmp_path / "tu.ndjson") == 0
    assert "read 15 sketches of 3 classes" in capsys.readouterr().out
    assert convert(tmp_path / "tu.ndjson", tmp_path / "svg", "--to", "svg") == 0
    assert sorted(p.name for p in (tmp_path / "svg").iterdir()) == sorted(p.name for p in src.iterdir())
    for a, b in zip(read_sketches(src), read_sketches(tmp_path / "svg")):
        assert a.label == b.label
        np.testing.assert_allclose(a.points, b.points, atol=1e-3)


@pytest.mark.shared_data
@pytest.mark.parametrize("flag", [["--round"], []])
def test_tuberlin_to_npz_needs_round(shared_data, tmp_path, capsys, flag):
    rc = convert(shared_data / "tuberlin" / "svg" / "angel", tmp_path / "angel.npz", *flag)
    assert rc == (0 if flag else 2)
