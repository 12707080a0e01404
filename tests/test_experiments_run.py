"""Running experiments: dependency order, resume after an interrupted row, the real engine's resume, and a tiny
``table2-cpu`` end to end on built-in data (results recomputable from the kept predictions)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.data.builtin import CLASSES, generate
from r2cnn.data.store import build_store
from r2cnn.errors import R2CNNError
from r2cnn.experiments import execute
from r2cnn.experiments.runners import NeuralRunner
from r2cnn.experiments.spec import SpecError, load_spec, parse_spec

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
    # --report-only with that other budget labels each row with the budget it ran with (row.json)
    from r2cnn.experiments import report

    shown = report.compute(spec, changed, execute.collect(tmp_path, changed), resamples=50,
                           budgets=execute.recorded_budgets(tmp_path, changed))
    assert {r["budget"]["steps"] for r in shown["rows"]} == {5}
    assert '"steps": 5' in report.markdown(shown) and '"steps": 6' not in report.markdown(shown)
    # a row's note is shown; rows of different budgets are named beside their budget
    noted = parse_spec({"reference": "fine", "rows": [
        {"id": "fine", "preset": "cpu-r2cnn", "init_from": "pre", "seeds": [0, 1]},
        {"id": "other", "preset": "cpu-cnn", "note": "a probe"},
        {"id": "pre", "preset": "cpu-cnn", "report": False}]}, source="t.toml")
    noted_plan = execute.plan(noted, {"default": store.path}, execute.Budget(steps=5))
    text = report.markdown(report.compute(noted, noted_plan, execute.collect(tmp_path, noted_plan), resamples=50,
                                          budgets={"other": {"steps": 7}}))
    assert "Notes: other: a probe." in text
    assert 'Budget: other: {"steps": 7}; fine: {"epochs": null, "minutes": null, "steps": 5, "train_subset": null}' \
        in text

    # more seeds for a finished row: only the new one trains, the finished ones are kept
    more = parse_spec({"reference": "fine", "rows": [
        {"id": "fine", "preset": "cpu-r2cnn", "init_from": "pre", "seeds": [0, 1, 2]},
        {"id": "other", "preset": "cpu-cnn"},
        {"id": "pre", "preset": "cpu-cnn", "report": False}]}, source="t.toml")
    planned_more = execute.plan(more, {"default": store.path}, execute.Budget(steps=5))
    # reported before the new seed ran: the finished seeds, marked as part of the row
    early = report.compute(more, planned_more, execute.collect(tmp_path, planned_more), resamples=50)
    assert {r["id"]: (r["subruns"], r["planned_subruns"]) for r in early["rows"]}["fine"] == (2, 3)
    assert "(`cpu-r2cnn`, 2 of 3 sub-runs)" in report.markdown(early)
    extra = FakeRunner()
    execute.run_experiment(more, tmp_path, planned_more, runner_for=lambda c: extra, log=lambda *a: None)
    assert [(c["row"], c["seed"]) for c in extra.calls] == [("cpu-r2cnn", 2)]
    assert sorted(p["seed"] for p in execute.collect(tmp_path, planned_more)["fine"]) == [0, 1, 2]

    # a reworded preset description is not a changed setting: nothing reruns; a changed model option still refuses
    for p in planned_more:
        p.config = {**p.config, "description": "reworded"}
    execute.run_experiment(more, tmp_path, planned_more, runner_for=lambda c: FakeRunner(interrupt_at=("cpu-cnn", 0)),
                           log=lambda *a: None)
    fine = next(p for p in planned_more if p.row.id == "fine")
    fine.config = {**fine.config, "model_options": {**fine.config["model_options"], "hidden": 7}}
    with pytest.raises(R2CNNError, match="row fine was run with another 'config'"):
        execute.run_experiment(more, tmp_path, planned_more, runner_for=lambda c: FakeRunner(), log=lambda *a: None)


def test_a_row_that_failed_before_its_first_sub_run_takes_new_settings(store, tmp_path):
    class Failing(FakeRunner):
        def train(self, preset, data, out, **kw):
            raise R2CNNError("the runner refused the budget")

    spec = parse_spec({"rows": [{"id": "other", "preset": "cpu-cnn"}]}, source="t.toml")
    with pytest.raises(R2CNNError, match="refused the budget"):
        execute.run_experiment(spec, tmp_path, execute.plan(spec, {"default": store.path}, execute.Budget(steps=5)),
                               runner_for=lambda c: Failing(), log=lambda *a: None)
    fixed = execute.plan(spec, {"default": store.path}, execute.Budget(steps=6))
    fake = FakeRunner()
    execute.run_experiment(spec, tmp_path, fixed, runner_for=lambda c: fake, log=lambda *a: None)
    assert [c["steps"] for c in fake.calls] == [6]
    assert json.loads((tmp_path / "rows" / "other" / "row.json").read_text())["steps"] == 6


def test_an_interrupted_neural_row_resumes_from_last_checkpoint(store, tmp_path, monkeypatch):
    from r2cnn.engine import clock as engine

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
    # the chart has the paired-difference panel beside the accuracies when there is a reference row
    from PIL import Image

    from r2cnn.experiments import report

    alone = {**results, "rows": [{k: v for k, v in r.items() if k != "vs_reference"} for r in results["rows"]]}
    report.bar_chart(alone, tmp_path / "alone.png")
    assert Image.open(out / "results.png").size[0] > Image.open(tmp_path / "alone.png").size[0]
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


DOC_SPECS = sorted((Path(__file__).parents[1] / "docs" / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", DOC_SPECS, ids=[p.stem for p in DOC_SPECS])
def test_the_specs_in_docs_plan_on_a_quickdraw_store(path, store, capsys):
    """The studies in docs/experiments run as written: every row resolves (presets, overrides, budgets)."""
    assert main(["experiment", str(path), "--data", str(store.path), "--dry-run", "--measure-steps", "0"]) == 0
    listed = capsys.readouterr().out
    assert all(f"| {row.id} " in listed for row in load_spec(path).rows)


@pytest.mark.parametrize("name", ["table1", "table1-cpu-qd"])
def test_dry_run_lists_every_row_of_every_table(name, capsys):
    assert main(["experiment", name, "--dry-run", "--measure-steps", "0"]) == 0
    text = capsys.readouterr().out
    for row in load_spec(name).rows:
        assert f"| {row.id} " in text
    if name.startswith("table1"):
        assert "| hog-svm " in text and "one fit" in text  # classic rows: no optimiser steps


@pytest.mark.parametrize("args, message", [
    (["experiment", "no-such-table", "--data", "x", "--out", "y"], "neither a built-in spec"),
    (["experiment", "table2-cpu", "--out", "{tmp}/o"], "--data STORE is required"),
    (["experiment", "table2-cpu", "--data", "{tmp}/nope", "--out", "{tmp}/o"], "nope: does not exist"),
    (["experiment", "table2-cpu", "--data", "{tmp}", "--out", "{tmp}/o"], "not a sketch store"),
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


def test_tiny_table1_cpu_end_to_end(tmp_path, monkeypatch):
    """Table 1's CPU twin through `r2cnn experiment`: QuickDraw pre-training rows, the classic rows and the early
    networks on 3 TU-Berlin folds of built-in data. Without ImageNet weights AlexNet-SVM is skipped with its
    reason and every other row still runs; `--set` reaches the rows whose presets have the entry."""
    import torch

    from r2cnn.data.store import prepare

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "no-hub"))
    quiet = dict(log=lambda *a: None, progress=False)
    qd = prepare([], tmp_path / "qd", builtin=6, split_sizes=(4, 1, 1), **quiet)
    kfold = prepare([], tmp_path / "kfold", builtin=6, folds=3, fold_valid_fraction=0.25, **quiet)
    out = tmp_path / "exp"
    args = ["experiment", "table1-cpu", "--data", f"quickdraw={qd.path}", "--data", f"tuberlin={kfold.path}",
            "--out", str(out), "--steps", "1", "--set", "fit_images=24", "--set", "max_descriptors=2000",
            "--set", "batch_size=8", "--set", "model_options.hidden=8", "--workers", "0", "--bootstrap", "200"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["id"] for r in results["rows"]] == ["hog-svm", "ensemble", "mkl-svm", "fisher-vectors", "lenet",
                                                 "alexnet-sketch", "sketchanet-v1", "cnn", "r2cnn"]
    assert list(results["not_run"]) == ["alexnet-svm"] and results["missing"] == []
    assert "alexnet-owt" in results["not_run"]["alexnet-svm"]
    n_test = sum(len(kfold.indices("test", fold=k)) for k in range(3))
    for r in results["rows"]:
        assert len(r["runs"]) == 3 and r["test_sketches"] == n_test  # 3 folds, every sketch tested once
    assert "Not run: alexnet-svm" in (out / "results.md").read_text()
    classic = json.loads((out / "rows" / "hog-svm" / "row.json").read_text())["config"]
    assert classic["fit_images"] == 24 and "batch_size" not in classic
    cnn = json.loads((out / "rows" / "cnn" / "row.json").read_text())["config"]
    assert cnn["batch_size"] == 8 and cnn["model_options"]["hidden"] == 8
    assert "hidden" not in json.loads((out / "rows" / "lenet" / "row.json").read_text())["config"]["model_options"]
    # a rerun finishes nothing new and tries the skipped row again
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["not_run"] == results["not_run"]


def test_the_tables_epochs_budget_the_networks_and_not_the_classic_fits(store):
    """`--epochs 3` on table1-cpu-qd: every network trains 3 epochs; a classic row is one fit with its preset's
    SVM passes (the RBF SVM has none: passing the table's epochs to it stopped the whole table)."""
    planned = execute.plan(load_spec("table1-cpu-qd"), {"default": store.path}, execute.Budget(epochs=3))
    budget = {p.row.id: (p.config.get("runner", "neural"), p.epochs, p.steps) for p in planned}
    assert budget["hog-svm"] == budget["fisher-vectors"] == ("classic", None, None)
    assert budget["lenet"] == budget["r2cnn"] == ("neural", 3, None)


def test_set_of_an_entry_no_row_has_is_an_error(store, tmp_path, capsys):
    for key in ("nope", "model_options.nope"):
        assert main(["experiment", "table2-cpu", "--data", str(store.path), "--out", str(tmp_path / "o"), "--set",
                     f"{key}=1", "--dry-run", "--measure-steps", "0"]) == 2
        assert f"--set: '{key}' is not an entry of any row's preset" in capsys.readouterr().err


def test_encoder_lr_scale_is_an_override_for_network_rows_only(store):
    """An entry a preset may leave out (engine default 1.0; cpu-r2cnn's family sets it, LeNet's preset does not):
    a row's override sets it, `--set` reaches the network rows and not a classic row, and a misspelt entry is still
    an error."""
    spec = parse_spec({"rows": [{"id": "r2", "preset": "cpu-r2cnn", "overrides": {"encoder_lr_scale": 3}},
                                {"id": "lenet", "preset": "cpu-lenet"},
                                {"id": "hog", "preset": "cpu-hog-svm"}]}, source="t.toml")
    planned = {p.row.id: p.config for p in execute.plan(spec, {"default": store.path}, execute.Budget())}
    assert planned["r2"]["encoder_lr_scale"] == 3 and "encoder_lr_scale" not in planned["lenet"]
    planned = {p.row.id: p.config for p in execute.plan(spec, {"default": store.path},
                                                        execute.Budget(overrides={"encoder_lr_scale": 2}))}
    assert planned["r2"]["encoder_lr_scale"] == planned["lenet"]["encoder_lr_scale"] == 2
    assert "encoder_lr_scale" not in planned["hog"]
    typo = parse_spec({"rows": [{"id": "r2", "preset": "cpu-r2cnn", "overrides": {"encoder_lr_scal": 10}}]},
                      source="t.toml")
    with pytest.raises(SpecError, match="'encoder_lr_scal' is not an entry"):
        execute.plan(typo, {"default": store.path}, execute.Budget())
    # a classic row has no optimiser: the entry in its overrides is an error, not silently ignored
    classic = parse_spec({"rows": [{"id": "hog", "preset": "cpu-hog-svm", "overrides": {"encoder_lr_scale": 10}}]},
                         source="t.toml")
    with pytest.raises(SpecError, match="'encoder_lr_scale' is not an entry"):
        execute.plan(classic, {"default": store.path}, execute.Budget())
