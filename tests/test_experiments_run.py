"""Running experiments: dependency order, resume after an interrupted row, the real engine's resume, and a tiny
``table2-cpu`` end to end on built-in data (results recomputable from the kept predictions)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.data.builtin import CLASSES, generate
from r2cnn.data.store import build_store
from r2cnn.errors import R2CNNError
from r2cnn.experiments import execute
from r2cnn.experiments.runners import NeuralRunner
from r2cnn.experiments.spec import parse_spec

TINY = ["--set", "batch_size=8", "--set", "model_options.canvas=16", "--set", "model_options.width=8",
        "--set", "model_options.hidden=8", "--workers", "0", "--bootstrap", "200"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three built-in classes, 8 sketches each: 4 train, 2 valid, 2 test per class (one batch of each)."""
    sketches = generate(8, seed=0, classes=list(CLASSES[:3]))
    return build_store(sketches, tmp_path_factory.mktemp("data") / "store", split_sizes=(4, 2, 2))


class FakeRunner:
    """Records calls; "trains" by writing a model file; predicts the label (or label+1 for odd seeds)."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = [], interrupt_at

    def train(self, preset, data, out, *, seed, fold, epochs, steps, max_minutes, init_from, resume, train_subset):
        out.mkdir(parents=True, exist_ok=True)
        self.calls.append(dict(row=preset["preset"], seed=seed, resume=resume, init_from=init_from, steps=steps))
        if self.interrupt_at == (preset["preset"], seed):
            self.interrupt_at = None
            raise KeyboardInterrupt
        (out / "model.bin").write_text(f"{preset['preset']} {seed}")
        return out / "model.bin"

    def predict(self, model_path, data, split, fold):
        from r2cnn.data.store import SketchStore

        s = SketchStore(data)
        index = s.indices(split, fold=fold)
        label = np.asarray(s.labels)[index].astype(np.int64)
        shift = int(model_path.read_text().split()[1]) % 2
        return {"index": index, "label": label, "top5": ((label + shift) % len(s.classes))[:, None]}


def _spec():
    return parse_spec({"reference": "fine", "rows": [
        {"id": "fine", "preset": "cpu-r2cnn", "init_from": "pre", "seeds": [0, 1]},
        {"id": "other", "preset": "cpu-cnn"},
        {"id": "pre", "preset": "cpu-cnn", "report": False}]}, source="t.toml")


def test_rows_run_in_dependency_order_and_resume_after_an_interrupt(store, tmp_path):
    spec = _spec()
    planned = execute.plan(spec, {"default": store.path}, execute.Budget(steps=5))
    assert [p.row.id for p in planned] == ["other", "pre", "fine"]
    fake = FakeRunner(interrupt_at=("cpu-r2cnn", 1))
    with pytest.raises(KeyboardInterrupt):
        execute.run_experiment(spec, tmp_path, planned, runner_for=lambda c: fake, log=lambda *a: None)
    assert [(c["row"], c["seed"], c["resume"]) for c in fake.calls] == [
        ("cpu-cnn", 0, False), ("cpu-cnn", 0, False), ("cpu-r2cnn", 0, False), ("cpu-r2cnn", 1, False)]
    pre_model = tmp_path / "rows" / "pre" / "seed0" / "model.bin"
    assert fake.calls[2]["init_from"] == pre_model and fake.calls[2]["steps"] == 5
    assert (tmp_path / "rows" / "other" / "done.json").exists() and not (tmp_path / "rows/fine/done.json").exists()
    assert (tmp_path / "rows" / "fine" / "seed0" / "predictions.npz").exists()

    again = FakeRunner()
    execute.run_experiment(spec, tmp_path, planned, runner_for=lambda c: again, log=lambda *a: None)
    assert [(c["row"], c["seed"], c["resume"]) for c in again.calls] == [("cpu-r2cnn", 1, True)]
    assert again.calls[0]["init_from"] == pre_model  # seed 1 of "fine" starts from pre's only seed
    assert (tmp_path / "rows" / "fine" / "done.json").exists()
    results = execute.collect(tmp_path, planned)
    assert set(results) == {"other", "pre", "fine"}
    fine = {p["seed"]: p for p in results["fine"]}
    assert fine[0]["correct"].all() and not fine[1]["correct"].any()

    # a finished row is not rerun; a changed plan for it is refused
    execute.run_experiment(spec, tmp_path, planned, runner_for=lambda c: FakeRunner(interrupt_at=("cpu-cnn", 0)),
                           log=lambda *a: None)
    changed = execute.plan(spec, {"default": store.path}, execute.Budget(steps=6))
    with pytest.raises(R2CNNError, match="another 'steps'"):
        execute.run_experiment(spec, tmp_path, changed, runner_for=lambda c: FakeRunner(), log=lambda *a: None)


def test_an_interrupted_neural_row_resumes_from_last_checkpoint(store, tmp_path, monkeypatch):
    from r2cnn.engine import train as engine

    spec = parse_spec({"rows": [{"id": "cnn", "preset": "cpu-cnn"}]}, source="t.toml")
    budget = execute.Budget(steps=3, overrides={"batch_size": 4, "model_options.canvas": 16,
                                                "model_options.width": 8})
    planned = execute.plan(spec, {"default": store.path}, budget)
    calls = {"n": 0}
    fraction = engine.Clock.fraction

    def interrupt_at_step_two(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return fraction(self)

    monkeypatch.setattr(engine.Clock, "fraction", interrupt_at_step_two)
    runner = NeuralRunner(workers=0, checkpoint_every=1, progress=False, log_every=1)
    with pytest.raises(KeyboardInterrupt):
        execute.run_experiment(spec, tmp_path, planned, neural=runner, log=lambda *a: None)
    sub = tmp_path / "rows" / "cnn" / "seed0"
    assert (sub / "last.pt").exists() and not (sub / "trained.json").exists()
    monkeypatch.setattr(engine.Clock, "fraction", fraction)
    execute.run_experiment(spec, tmp_path, planned, neural=runner, log=lambda *a: None)
    events = [json.loads(line) for line in (sub / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["kind"] == "event"] == ["start", "resume", "done"]
    assert max(e["step"] for e in events) == 3
    pred = execute.load_predictions(sub / "predictions.npz")
    assert np.array_equal(np.sort(pred["index"]), store.indices("test"))
    assert pred["sketches_per_second"] > 0 and pred["step_seconds"] > 0


def test_tiny_table2_cpu_end_to_end(store, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["experiment", "table2-cpu", "--data", str(store.path), "--out", str(out), "--steps", "1",
                 *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    ids = [r["id"] for r in results["rows"]]
    assert ids == ["cnn", "attentive", "random-stroke-order", "sketching-order", "late-fusion", "early-fusion",
                   "time-encoded", "attention-time-encoded", "r2cnn"] and results["missing"] == []
    n_test = len(store.indices("test"))
    for r in results["rows"]:
        assert len(r["runs"]) == (3 if r["id"] in ("cnn", "time-encoded", "r2cnn") else 1)
        assert r["test_sketches"] == n_test and r["ci95"][0] <= r["per_sketch_top1"] <= r["ci95"][1]
        assert ("vs_reference" in r) == (r["id"] != "r2cnn")
    for name in ("results.md", "results.csv", "results.png"):
        assert (out / name).stat().st_size > 0
    assert "Sketch-R2CNN" in (out / "results.md").read_text()
    assert len((out / "results.csv").read_text().splitlines()) == 10
    # the statistics are recomputed from the kept predictions alone
    before = (out / "results.json").read_text()
    (out / "results.json").unlink()
    assert main(["experiment", "table2-cpu", "--data", str(store.path), "--out", str(out), "--steps", "1",
                 "--report-only", *TINY]) == 0
    assert (out / "results.json").read_text() == before


def test_dry_run_lists_every_row(store, capsys):
    assert main(["experiment", "table3-cpu", "--data", str(store.path), "--dry-run", "--steps", "4",
                 "--measure-steps", "1", *TINY]) == 0
    text = capsys.readouterr().out
    for row in ("cnn", "late-fusion", "r2cnn"):
        assert f"| {row} " in text
    assert "1 x 4" in text and "est. paper scale" in text


def test_dry_run_of_a_paper_table_without_data(capsys):
    assert main(["experiment", "table3", "--dry-run", "--measure-steps", "0"]) == 0
    text = capsys.readouterr().out
    assert "paper's scale only" in text
    assert f"1 x {5 * (345 * 70000 // 48)}" in text  # 5 epochs of 24.15M sketches in batches of 48


@pytest.mark.parametrize("args, message", [
    (["experiment", "no-such-table", "--data", "x", "--out", "y"], "neither a built-in spec"),
    (["experiment", "table2-cpu", "--out", "{tmp}/o"], "--data STORE is required"),
    (["experiment", "table2-cpu", "--data", "{tmp}/nope", "--out", "{tmp}/o"], "not a sketch store"),
    (["experiment", "table2-cpu", "--data", "{store}", "--out", "{tmp}/o", "--set", "nope=1"], "nope"),
    (["experiment", "table2-cpu", "--data", "{store}", "--out", "{tmp}/o", "--epochs", "0"], "--epochs must be"),
    (["experiment", "table1-cpu", "--data", "{store}", "--out", "{tmp}/o", "--rows", "cnn"], "k-fold store"),
])
def test_one_line_errors(store, tmp_path, args, message):
    env = dict(os.environ, R2CNN_NO_REEXEC="1")
    argv = [a.format(tmp=tmp_path, store=store.path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "r2cnn", *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r2cnn: error:") and message in lines[0], proc.stderr
