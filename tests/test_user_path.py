"""A newcomer's small stumbles: each message points at an option that exists, a failed command leaves
nothing behind that blocks the next one, and the help lists what the registries hold."""

import json
import shutil
import sys

import numpy as np
import pytest

from r2cnn.cli import main

TINY_MODEL = {"canvas": 16, "width": 8, "stem": "small", "hidden": 8, "layers": 1}


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().out


def test_a_failed_tensorboard_start_leaves_no_run(tiny_store, tmp_path, monkeypatch):
    from r2cnn.engine.train import TrainOptions, check_run_dir, train
    from r2cnn.errors import R2CNNError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as when tensorboard is not installed
    out = tmp_path / "run"
    with pytest.raises(R2CNNError, match="pip install tensorboard"):
        train(TrainOptions(preset="cpu-r2cnn", data=str(tiny_store), out=str(out), steps=1, batch_size=8, workers=0,
                           tensorboard=True, progress=False, config_overrides={"model_options": TINY_MODEL}))
    assert not (out / "log.jsonl").exists()
    assert check_run_dir(out, resume=False, overwrite=False) == []  # the next run starts without --overwrite


def test_predict_on_an_unknown_extension_names_its_format_option(tiny_r2cnn_checkpoint, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("{}\n")
    assert main(["predict", "--checkpoint", str(tiny_r2cnn_checkpoint), str(tmp_path / "mine.txt")]) == 2
    err = capsys.readouterr().err
    assert "--format FMT for `r2cnn predict`" in err and "\n" not in err.strip()
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"word": "sun", "drawing": [[[0, 50, 90], [0, 40, 90]]]}) + "\n")
    shutil.copy(good, tmp_path / "mine.data")
    assert main(["predict", "--checkpoint", str(tiny_r2cnn_checkpoint), str(tmp_path / "mine.data"),
                 "--format", "ndjson"]) == 0


def test_convert_to_one_svg_refused_leaves_no_file(tmp_path, capsys):
    src = tmp_path / "two.ndjson"
    src.write_text("".join(json.dumps({"word": "cat", "key_id": str(k), "drawing": [[[1, 2, 3], [4, 5, k]]]}) + "\n"
                           for k in (6, 7)))
    assert main(["convert", str(src), str(tmp_path / "mine.svg")]) == 2
    assert "one SVG file holds one sketch" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.ndjson"]  # no mine.svg, no partial file
    src.write_text(src.read_text().splitlines()[0] + "\n")
    assert main(["convert", str(src), str(tmp_path / "mine.svg")]) == 0 and (tmp_path / "mine.svg").is_file()


def test_report_finds_the_evaluation_written_by_evaluate_out(tiny_runs, tmp_path, capsys):
    """The README's `r2cnn evaluate ... --out runs/r2cnn/eval`, then `r2cnn report runs/r2cnn`."""
    from r2cnn.engine.checkpoint import load_checkpoint
    from r2cnn.viz.report import load_evaluation

    run = tmp_path / "run"
    shutil.copytree(tiny_runs.r2cnn, run)
    for name in ("report.json", "test_report.json"):
        (run / name).unlink(missing_ok=True)
    step = load_checkpoint(run / "best.pt")["step"]
    assert load_evaluation(run, run / "best.pt", step, "test") is None
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(tiny_runs.store), "--split", "test",
                 "--out", str(run / "eval")]) == 0
    found = load_evaluation(run, run / "best.pt", step, "test")
    assert found is not None and found == json.loads((run / "eval" / "report.json").read_text())
    # an evaluation in a folder below the run counts only for that very file, not for any best.pt
    other = tmp_path / "other"
    shutil.copytree(run, other)
    shutil.rmtree(other / "eval")
    shutil.copytree(run / "eval", other / "eval")
    assert load_evaluation(other, other / "best.pt", step, "test") is None


def test_dry_run_says_not_measured_and_warns_about_an_empty_validation_split(tmp_path, capsys):
    from r2cnn.data.store import prepare

    store = prepare([], tmp_path / "store", builtin=6, split_sizes=(4, 0, 2), progress=False, log=lambda *a: None)
    assert main(["experiment", "table2-cpu", "--data", str(store.path), "--dry-run", "--measure-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "here not measured, at paper scale not measured" in out and "here 0 s" not in out
    assert "warning: the validation split is empty for" in out and "r2cnn prepare train=A test=B" in out


def test_help_lists_come_from_the_registries(capsys):
    from r2cnn.commands.bench import TARGETS
    from r2cnn.experiments.spec import BUILTIN

    top = " ".join(_help(["--help"], capsys).split())
    assert all(name in top for name in TARGETS) and all(name in top for name in BUILTIN)
    experiment = " ".join(_help(["experiment", "--help"], capsys).split())
    assert all(name in experiment for name in BUILTIN)
    train = " ".join(_help(["train", "--help"], capsys).split())
    assert "not in presets" not in train and "cpu-r2cnn's 10" in train


def test_from_quickdraw_reads_xs_ys_strokes_and_from_strokes_refuses_them():
    from r2cnn.data import builtin
    from r2cnn.errors import R2CNNError, SketchFormatError
    from r2cnn.sketch import Sketch

    sketch = builtin.generate(1, seed=3)[0]
    drawing = [[s[:, 0].tolist(), s[:, 1].tolist()] for s in sketch.strokes()]  # as in ndjson and the JSON API
    assert any(len(xs) != 2 for xs, _ in drawing)
    read = Sketch.from_quickdraw(drawing, label="sun")
    np.testing.assert_array_equal(read.points, sketch.points)
    assert read.label == "sun" and read.num_strokes == sketch.num_strokes
    # arrays and raw [xs, ys, ts] strokes too; the times go to meta
    raw = [[np.asarray(xs), np.asarray(ys), list(range(len(xs)))] for xs, ys in drawing]
    timed = Sketch.from_quickdraw(raw)
    np.testing.assert_array_equal(timed.points, sketch.points)
    assert len(timed.meta["t"]) == sketch.num_points
    with pytest.raises(R2CNNError, match=r"Sketch.from_quickdraw\(drawing\)") as e:
        Sketch.from_strokes(drawing)
    assert "\n" not in str(e.value)
    # (n, 2) rows, the documented layout, still work, also for a two-point stroke
    rows = Sketch.from_strokes([np.column_stack(s) for s in drawing] + [np.array([[1, 2], [3, 4]])])
    assert rows.num_points == sketch.num_points + 2
    with pytest.raises(SketchFormatError, match=r"drawing\[1\].*x/y length mismatch"):
        Sketch.from_quickdraw([[[1, 2], [3, 4]], [[1, 2, 3], [4, 5]]])


def test_training_off_a_terminal_prints_progress_lines(tiny_store, tmp_path, capsys):
    import re

    from r2cnn.engine.train import TrainOptions, train

    def lines(**kwargs):
        train(TrainOptions(preset="cpu-r2cnn", data=str(tiny_store), out=str(tmp_path / str(kwargs)), steps=4,
                           batch_size=16, workers=0, config_overrides={"model_options": TINY_MODEL}, **kwargs))
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]

    every = lines(print_every=1)  # stdout is not a terminal under pytest
    assert [line.split(" (")[0] for line in every] == ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]
    pattern = r"step \d/4 \(epoch \d+\): loss \d+\.\d{4}, accuracy [01]\.\d{4}, \d+ sketches/s, \d+m\d\ds left"
    assert all(re.fullmatch(pattern, line) for line in every), every
    assert every[-1].endswith("0m00s left")
    assert [line.split(" (")[0] for line in lines()] == ["step 4/4"]  # default: every 50 steps or 30 s, and the end
    assert lines(print_every=0) == []
    assert lines(progress=False) == []  # the API's quiet mode stays quiet unless print_every asks
