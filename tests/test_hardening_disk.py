"""A full or read-only disk is one line naming the file and what was kept, in every command that writes, with no
temporary file left; temporary files of killed writers go with the next write into their folder; and the small
items of the same audit (a damaged row.json under --report-only, --measure-steps' bound, prepare's counts when
every record is skipped).

The disk is simulated (a file object that runs out of room, an open that says read-only): tests run as root in
CI, where a chmod'ed folder stays writable, and cannot count on mounting a small tmpfs."""

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from r2cnn.cli import main
from r2cnn.data.formats import common
from r2cnn.data.formats.common import AtomicWriter, remove_stale_parts
from r2cnn.engine.checkpoint import save_atomic
from r2cnn.errors import R2CNNError, write_failure

TINY = '{"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1}'
SKETCH = {"word": "cat", "key_id": "7", "drawing": [[[1, 2, 3], [4, 5, 6]]]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from r2cnn.data.store import prepare

    out = tmp_path_factory.mktemp("disk") / "store"
    prepare([], out, builtin=6, split_sizes=(4, 1, 1), log=lambda *a: None, progress=False)
    return out


class _Disk:
    """What :class:`AtomicWriter` opens for writing from now on: a file on a disk with ``room`` bytes left (writes
    past it raise ENOSPC, as a full disk does), or, with ``read_only``, a refusal to create any file (EROFS)."""

    def __init__(self):
        self.room, self.read_only = 0, False

    def open(self, path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return open(path, mode, *args, **kwargs)
        if self.read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        disk = self

        class Full(io.FileIO):
            def write(self, data):
                n = len(memoryview(data).cast("B"))
                if n > disk.room:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.room -= n
                return super().write(data)

        return io.BufferedWriter(Full(path, "wb"))


@pytest.fixture
def disk(monkeypatch):
    d = _Disk()
    monkeypatch.setattr(common, "open", d.open, raising=False)  # the module's name, found before the builtin
    return d


def one_line_error(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("r2cnn: error: "), err
    assert "Traceback" not in err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files (``.NAME.partPID``, any dot file) anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def train_args(store, out, *extra):
    return ["train", "--preset", "cpu-r2cnn", "--data", store, "--out", out, "--set", f"model_options={TINY}",
            "--batch-size", "8", "--steps", "2", "--workers", "0", *extra]


# --- One line naming the file and what was kept ----------------------------------------------------------------

@pytest.mark.parametrize("target, extra", [("out.ndjson", []), ("out.ndjson.gz", []), ("folder", ["--to", "npz"]),
                                           ("folder", ["--to", "bin"]), ("folder", ["--to", "svg"])])
def test_convert_on_a_full_disk(tmp_path, capsys, disk, target, extra):
    src = tmp_path / "in" / "a.ndjson"
    src.parent.mkdir()
    src.write_text("".join(json.dumps(dict(SKETCH, key_id=str(i))) + "\n" for i in range(50)))
    out = tmp_path / "out"
    line = one_line_error(capsys, ["convert", src, out / target, *extra, "--round"])
    assert "No space left on device" in line and "no file was written" in line and str(out / target) in line, line
    assert [p for p in out.rglob("*") if p.is_file()] == []  # nothing partial, no temporary file


def test_a_file_there_before_is_kept_and_said_so(tmp_path, capsys, disk):
    src = tmp_path / "a.ndjson"
    src.write_text(json.dumps(SKETCH) + "\n")
    old = tmp_path / "out" / "old.ndjson"
    old.parent.mkdir()
    old.write_bytes(b"before\n")
    line = one_line_error(capsys, ["convert", src, old])
    assert line.endswith(f"{old}: cannot write (No space left on device); the previous old.ndjson is kept"), line
    assert old.read_bytes() == b"before\n" and leftovers(old.parent) == []


def test_a_read_only_folder_is_one_line(tmp_path, capsys, disk):
    src = tmp_path / "a.ndjson"
    src.write_text(json.dumps(SKETCH) + "\n")
    disk.read_only = True
    line = one_line_error(capsys, ["convert", src, tmp_path / "ro" / "b.ndjson"])
    assert "ro/b.ndjson: cannot write (Read-only file system); no file was written" in line, line


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, disk):
    path = tmp_path / "last.pt"
    disk.room = 10**9
    save_atomic({"w": torch.zeros(4)}, path)
    before = path.read_bytes()
    for room in (0, 100, 5000):  # room for none, a little or a few KB of the archive
        disk.room = room
        with pytest.raises(R2CNNError) as info:
            save_atomic({"w": torch.zeros(10_000)}, path)
        assert str(info.value) == f"{path}: cannot write (No space left on device); the previous last.pt is kept"
        assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_torch_reports_a_full_disk_as_a_runtime_error_with_the_os_error_behind_it(tmp_path, disk):
    """What AtomicWriter and the command line look for (if torch changes this, the test says so)."""
    f = disk.open(tmp_path / "x.pt", "wb")
    with pytest.raises(RuntimeError) as info:
        torch.save({"w": torch.zeros(10_000)}, f)
    with pytest.raises(OSError):  # what it buffered cannot go either
        f.close()
    assert write_failure(info.value) is not None and write_failure(info.value).errno == errno.ENOSPC
    assert write_failure(RuntimeError("unrelated")) is None and write_failure(OSError(errno.ENOENT, "x")) is None


def test_train_on_a_full_disk(store, tmp_path, capsys, disk):
    out = tmp_path / "run"
    line = one_line_error(capsys, train_args(store, out))
    assert f"{out}/" in line and ".pt: cannot write (No space left on device); no file was written" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl"] and leftovers(tmp_path) == []


def test_the_run_log_on_a_full_disk_keeps_whole_records(tmp_path, monkeypatch):
    from r2cnn.engine.log import RunLog, _read_records

    log = RunLog(tmp_path)
    log.write("train", step=1, loss=1.0)
    real_write = os.write

    def half_then_full(fd, data):  # a disk that takes half a record, then nothing
        monkeypatch.setattr(os, "write", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
        return real_write(fd, bytes(data)[:len(data) // 2])

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(R2CNNError, match="log.jsonl: cannot write .*; the records before this one are kept"):
        log.write("train", step=2, loss=0.5)
    monkeypatch.setattr(os, "write", real_write)
    assert [r["step"] for _, r in _read_records(tmp_path / "log.jsonl")] == [1]
    assert (tmp_path / "log.jsonl").read_text().endswith("}\n")  # no torn line


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_on_a_full_disk(tiny_cnn_checkpoint, tmp_path, capsys, disk, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="ONNX export needs the export extra")
    out = tmp_path / "out" / f"model.{fmt}"
    line = one_line_error(capsys, ["export", "--checkpoint", tiny_cnn_checkpoint, "--format", fmt, "--out", out])
    assert line == f"r2cnn: error: {out}: cannot write (No space left on device); no file was written"
    assert list(out.parent.iterdir()) == []
    disk.room = 10**9
    assert main(["export", "--checkpoint", str(tiny_cnn_checkpoint), "--format", fmt, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, f"{out.name}.json"]


def _commands(runs, out):
    """(argv, the file named) of the commands that write beside those above, on the tiny runs."""
    ckpt, data = runs.r2cnn / "best.pt", runs.store
    return {
        "evaluate --json": (["evaluate", "--checkpoint", ckpt, "--data", data, "--json", out / "e.json"], "e.json"),
        "evaluate --out": (["evaluate", "--checkpoint", ckpt, "--data", data, "--out", out / "ev"],
                           "ev/confusion.png"),
        "report": (["report", runs.r2cnn, "--data", data, "--out", out / "r.html"], runs.r2cnn / "report.json"),
        "visualize": (["visualize", "--checkpoint", ckpt, "--data", data, "--sample", "1", "--out", out / "vis"],
                      "vis/sketch-"),
        "visualize --stats": (["visualize", "--checkpoint", ckpt, "--data", data, "--stats", "--out", out / "st"],
                              "st/attention-stats.json"),
    }


@pytest.mark.parametrize("command", ["evaluate --json",
                                     *(pytest.param(c, marks=pytest.mark.slow)  # the same writers, more work first
                                       for c in ("evaluate --out", "report", "visualize", "visualize --stats"))])
def test_evaluate_visualize_and_report_on_a_full_disk(tiny_runs, tmp_path, capsys, disk, command):
    out = tmp_path / "out"
    argv, name = _commands(tiny_runs, out)[command]
    line = one_line_error(capsys, argv)
    assert f"{out / name}" in line and "No space left on device" in line, line  # report: its evaluation first
    assert [p for p in out.rglob("*") if p.is_file()] == [] and leftovers(tiny_runs.r2cnn) == []


def test_experiment_on_a_full_disk(store, tmp_path, capsys, disk):
    spec = tmp_path / "one.toml"
    spec.write_text('[[rows]]\nid = "only"\npreset = "cpu-cnn"\n')
    out = tmp_path / "exp"
    line = one_line_error(capsys, ["experiment", spec, "--data", store, "--out", out, "--steps", "1", "--workers",
                                   "0", "--bootstrap", "50", "--set", "batch_size=4"])
    assert line == f"r2cnn: error: {out}/experiment.json: cannot write (No space left on device); no file was written"
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_prepare_on_a_full_disk_keeps_the_store_there_before(tmp_path, capsys, monkeypatch):
    from r2cnn.data.store import SketchStore
    from r2cnn.data.store import npy

    out = tmp_path / "store"
    full = _Disk()
    argv = ["prepare", "--builtin", "4", "--split-sizes", "2,1,1", "--out", out]
    with monkeypatch.context() as m:
        m.setattr(npy, "open", full.open, raising=False)
        line = one_line_error(capsys, argv)
        assert line.startswith(f"r2cnn: error: {out}: cannot write the store (No space left on device")
        assert line.endswith("; no store was written") and sorted(p.name for p in tmp_path.iterdir()) == []
    assert main([str(a) for a in argv]) == 0
    before = SketchStore(out).manifest["created"]
    with monkeypatch.context() as m:
        m.setattr(npy, "open", full.open, raising=False)
        line = one_line_error(capsys, [*argv, "--force"])
        assert line.endswith("; the store there before is kept"), line
    assert SketchStore(out).manifest["created"] == before and sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_the_command_line_turns_any_full_disk_into_one_line(monkeypatch, capsys):
    """A writer outside the project's helpers (a library writing a file of its own) still gives one line; an
    error that is not the disk's keeps its traceback."""
    import r2cnn.commands.presets as presets

    def full(args):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from e

    monkeypatch.setattr(presets, "run", full)
    assert one_line_error(capsys, ["presets"]) == "r2cnn: error: cannot write (No space left on device)"
    monkeypatch.setattr(presets, "run", lambda args: (_ for _ in ()).throw(
        OSError(errno.EDQUOT, "Disk quota exceeded", "/elsewhere/file")))
    assert one_line_error(capsys, ["presets"]) == "r2cnn: error: /elsewhere/file: cannot write (Disk quota exceeded)"
    monkeypatch.setattr(presets, "run", lambda args: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["presets"])


# --- Temporary files of killed writers ---------------------------------------------------------------------------

def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_of_dead_writers_go_and_those_of_live_ones_stay(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        names = {"stale": f".last.pt.part{dead}", "mine": f".best.pt.part{os.getpid()}",
                 "other": f".x.ndjson.part{live.pid}", "user's": f"notes.part{dead}", "not a pid": ".a.partial"}
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        with AtomicWriter(tmp_path / "new.ndjson") as f:
            f.write(b"{}\n")
        kept = sorted(p.name for p in tmp_path.iterdir())
        assert kept == sorted([*(n for k, n in names.items() if k != "stale"), "new.ndjson"])
        assert remove_stale_parts(tmp_path) == []  # once per folder and process
    finally:
        live.kill()
        live.wait()


def test_the_next_command_writing_a_folder_removes_stale_temporary_files(tmp_path, capsys):
    from r2cnn.commands.train import one_run_per_folder

    dead = _dead_pid()
    src = tmp_path / "a.ndjson"
    src.write_text(json.dumps(SKETCH) + "\n")
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / f".big.ndjson.part{dead}").write_bytes(b"x" * 1000)
    assert main(["convert", str(src), str(converted / "b.ndjson")]) == 0
    assert sorted(p.name for p in converted.iterdir()) == ["b.ndjson"]
    run = tmp_path / "run"  # train removes them when it takes its folder, before it writes anything
    run.mkdir()
    (run / f".last.pt.part{dead}").write_bytes(b"x" * 1000)
    with one_run_per_folder(str(run)):
        assert leftovers(run) == []


# --- Small items -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_experiment(store, tmp_path_factory):
    """A one-row experiment that ran (one step of a tiny CNN), and the arguments that ran it."""
    folder = tmp_path_factory.mktemp("experiment")
    spec = folder / "one.toml"
    spec.write_text('[[rows]]\nid = "only"\npreset = "cpu-cnn"\n')
    argv = ["experiment", str(spec), "--data", str(store), "--out", str(folder / "exp"), "--steps", "1", "--workers",
            "0", "--bootstrap", "50", "--set", "batch_size=4", "--set", "model_options.canvas=16", "--set",
            "model_options.width=8"]
    assert main(argv) == 0
    return folder / "exp", argv


@pytest.mark.parametrize("damage", ["", "[]", "{"])
def test_report_only_on_a_damaged_row_json_is_one_line(finished_experiment, tmp_path, capsys, damage):
    import shutil

    done, argv = finished_experiment
    out = shutil.copytree(done, tmp_path / "exp")
    row = out / "rows" / "only" / "row.json"
    row.write_text(damage)
    capsys.readouterr()
    line = one_line_error(capsys, [*argv[:argv.index("--out") + 1], out, *argv[argv.index("--out") + 2:],
                                   "--report-only"])
    assert f"{row}: damaged" in line, line


@pytest.mark.parametrize("steps", ["1000000000", "101", "-1"])
def test_measure_steps_is_bounded(capsys, steps):
    line = one_line_error(capsys, ["experiment", "table2-cpu", "--dry-run", "--measure-steps", steps])
    assert line == f"r2cnn: error: --measure-steps must be 0 to 100, not {steps}"


def test_prepare_that_skips_every_record_prints_the_counts(tmp_path, capsys):
    src = tmp_path / "bad.ndjson"
    src.write_text("".join(json.dumps({"word": "cat", "drawing": []}) + "\n" for _ in range(3)))
    assert main(["prepare", str(src), "--out", str(tmp_path / "store"), "--on-error", "skip"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"r2cnn: error: {tmp_path / 'store'}: no sketches to store (every source was "
                                        f"empty or every record was skipped)"]
    assert "skipped 3 records:" in out and "3 x empty drawing" in out, out
