"""Training engine: learning, exact resume after SIGKILL, NaN handling, init-from, evaluate and predict."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r2cnn.engine.checkpoint import load_checkpoint

# A tiny R2CNN (same code path as the CPU preset, much smaller) so that a run takes seconds.
TINY = '{"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1, "dropout": 0.5}'
ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1000000000", MALLOC_TRIM_THRESHOLD_="1000000000",
           R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from r2cnn.data.store import prepare

    out = tmp_path_factory.mktemp("engine") / "store"
    prepare([], out, builtin=45, split_sizes=(35, 5, 5), log=lambda *a: None, progress=False)
    return out


def r2cnn(*args, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "r2cnn", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=300, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"r2cnn {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def train_args(store, out, *extra):
    return ["train", "--preset", "cpu-r2cnn", "--data", store, "--out", out, "--set", f"model_options={TINY}",
            "--batch-size", 8, "--seed", 3, "--log-every", 2, *extra]


def tiny_options(store, out, **kw):
    from r2cnn.engine.train import TrainOptions

    overrides = {"model_options": json.loads(TINY), "lr_schedule": {"name": "cosine", "warmup": 5}}
    kw.setdefault("steps", 100)
    return TrainOptions(preset="cpu-r2cnn", data=str(store), out=str(out), batch_size=16, lr=3e-3, seed=1,
                        workers=0, log_every=5, progress=False, config_overrides=overrides, **kw)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """A short real training run (tiny R2CNN, built-in data); later tests evaluate and predict with it."""
    from r2cnn.engine.train import train

    out = tmp_path_factory.mktemp("engine") / "run"
    return out, train(tiny_options(store, out))


def test_short_run_learns_well_above_chance(trained):
    out, result = trained
    chance = 1 / len(result["classes"])
    assert result["step"] == 100
    assert result["best"]["value"] >= max(0.5, 4 * chance), result
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert {"step", "epoch", "loss", "acc", "lr", "sketches_per_s"} <= set(train_records[0])
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert valid and {"top1", "top5", "count"} <= set(valid[0])
    # best.pt is the checkpoint of the best validation top-1 (the test split is never used in training)
    best = load_checkpoint(out / "best.pt")
    assert best["best"]["value"] == max(r["top1"] for r in valid)
    assert best["config"]["preset"] == "cpu-r2cnn" and best["classes"] == result["classes"]
    assert best["version"] and "rng" not in best and "optimizer" not in best  # the model only; last.pt resumes
    assert load_checkpoint(out / "last.pt", training_state=True)["rng"]["torch"].dtype == torch.uint8


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch):
    from r2cnn.engine import train as train_mod
    from r2cnn.engine.train import NonFiniteLoss

    calls = {"n": 0}
    real = train_mod.F.cross_entropy

    def poisoned(*args, **kw):
        calls["n"] += 1
        loss = real(*args, **kw)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(train_mod.F, "cross_entropy", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss \(nan\) at step 5.*last good checkpoint") as e:
        train_mod.train(tiny_options(store, tmp_path, steps=20, checkpoint_every=2))
    assert "\n" not in str(e.value)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["step"] == 4
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["event"] == "non-finite loss"


def test_init_from_copies_all_but_the_classifier(trained):
    from r2cnn.engine.factory import build_model, classifier_parameter_names
    from r2cnn.engine.train import init_from_checkpoint

    out, _ = trained
    source = load_checkpoint(out / "best.pt")
    config = dict(source["config"])
    model = build_model(config, num_classes=5)  # e.g. fine-tuning on another dataset's classes
    fresh = init_from_checkpoint(model, str(out / "best.pt"))
    head = classifier_parameter_names(model)
    assert head and set(fresh) == head
    state = model.state_dict()
    for name, tensor in source["model"].items():
        if name not in head:
            assert torch.equal(state[name], tensor), name


def test_resume_after_sigkill_continues_the_run(store, tmp_path):
    steps = ["--steps", 24, "--checkpoint-every", 3]
    r2cnn(*train_args(store, tmp_path / "straight", *steps, "--workers", 0))
    reference = load_checkpoint(tmp_path / "straight" / "last.pt")

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "r2cnn", *map(str, train_args(store, killed, *steps, "--workers", 1))],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    stopped_at = load_checkpoint(killed / "last.pt")["step"]
    assert 0 < stopped_at < 24

    r2cnn("train", "--resume", "--data", store, "--out", killed, "--workers", 0)
    resumed = load_checkpoint(killed / "last.pt")
    assert resumed["step"] == reference["step"] == 24
    # the same batches and random draws: the weights agree to float rounding (largest difference seen: 9.5e-7
    # after 21 resumed steps), not bit for bit
    for name, tensor in reference["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=1e-5, msg=name)
    for a, b in zip(reference["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        torch.testing.assert_close(b["exp_avg"], a["exp_avg"], rtol=0, atol=1e-5)
    # the log holds each step once: records after the kill's checkpoint were rewritten by the resumed run
    steps_logged = [r["step"] for r in map(json.loads, (killed / "log.jsonl").read_text().splitlines())
                    if r["kind"] == "train"]
    assert steps_logged == sorted(set(steps_logged))


def test_evaluate_cli_report(trained, store, tmp_path):
    out, result = trained
    report_file = tmp_path / "eval.json"
    proc = r2cnn("evaluate", "--checkpoint", out / "best.pt", "--data", store, "--json", report_file,
                 "--out", tmp_path / "report")
    assert "top-1" in proc.stdout and "partial sketches" in proc.stdout
    report = json.loads(report_file.read_text())
    k = len(result["classes"])
    assert report["split"] == "test" and report["count"] == 5 * k
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert report["top1"] > 2 / k  # well above chance on the held-back test split too
    assert set(report["per_class"]) == set(result["classes"])
    confusion = torch.tensor(report["confusion"])
    assert confusion.shape == (k, k) and int(confusion.sum()) == report["count"]
    assert report["top1"] == pytest.approx(float(confusion.diagonal().sum()) / report["count"])
    assert list(report["partial"]) == ["0.25", "0.5", "0.75", "1"]
    assert report["partial"]["1"] == report["top1"]
    assert report["partial"]["0.25"] < report["top1"]  # a quarter of the strokes says less
    from PIL import Image

    with Image.open(tmp_path / "report" / "confusion.png") as img:
        assert img.size[0] > 12 * k
    assert json.loads((tmp_path / "report" / "report.json").read_text())["top1"] == report["top1"]


def test_first_strokes_rounding():
    import numpy as np

    from r2cnn.engine.evaluate import first_strokes
    from r2cnn.sketch import Sketch

    sketch = Sketch.from_strokes([np.full((2, 2), i, np.float32) for i in range(5)])
    assert [first_strokes(sketch, f).num_strokes for f in (0.0, 0.25, 0.5, 0.75, 1.0)] == [1, 2, 3, 4, 5]


def test_predict_cli_and_python(trained, tmp_path):
    from r2cnn.data import builtin
    from r2cnn.data.formats import write_sketches
    from r2cnn.engine.predict import Predictor

    out, result = trained
    sketches = builtin.generate(1, seed=99)[:3]
    for s in sketches:
        s.meta.update(word=s.label)
    path = tmp_path / "three.ndjson"
    write_sketches(path, sketches)

    predictor = Predictor(str(out / "best.pt"))
    top = predictor.predict(sketches[0], top_k=3)
    assert len(top) == 3 and all(c in result["classes"] for c, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    full = predictor.probabilities(sketches)
    assert full.shape == (3, len(result["classes"])) and torch.allclose(full.sum(1), torch.ones(3))

    proc = r2cnn("predict", "--checkpoint", out / "best.pt", path, "--top-k", 2, "--json")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and all(len(r["top"]) == 2 for r in rows)
    assert rows[0]["top"][0]["class"] == top[0][0]
    assert rows[0]["top"][0]["probability"] == pytest.approx(top[0][1], abs=1e-5)
    table = r2cnn("predict", "--checkpoint", out / "best.pt", path).stdout.splitlines()
    assert len(table) == 3 and table[0].startswith(f"{path}:")


def test_kfold_store_trains_on_other_folds_and_evaluates_on_fold_k(tmp_path):
    """TU-Berlin style 3-fold store: --fold K trains on the other folds; evaluate defaults to the same fold."""
    from r2cnn.data.store import SketchStore, prepare
    from r2cnn.engine.evaluate import evaluate_checkpoint
    from r2cnn.engine.train import train

    store_dir = tmp_path / "kfold"
    prepare([], store_dir, builtin=30, folds=3, log=lambda *a: None, progress=False)
    result = train(tiny_options(store_dir, tmp_path / "run", steps=2, fold=1))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["fold"] == 1
    report = evaluate_checkpoint(result["last"], str(store_dir), partial=(1.0,), progress=False)
    assert report["fold"] == 1 and report["count"] == len(SketchStore(store_dir).indices("test", fold=1))


def test_encoder_lr_scale_gives_the_rnn_its_own_learning_rate(store, tmp_path):
    """``--set encoder_lr_scale=S`` (an entry presets may leave out): the parameters under ``encoder.`` learn at
    S x lr, the CNN at lr; the checkpoint keeps the two groups and a resume loads them."""
    from r2cnn.engine.config import OPTIONAL_ENTRIES, TrainOptions, make_config
    from r2cnn.engine.train import train

    assert OPTIONAL_ENTRIES["encoder_lr_scale"] == 1.0
    opts = tiny_options(store, tmp_path / "run", steps=6, checkpoint_every=3)
    opts.config_overrides.update(encoder_lr_scale=10.0, lr_schedule="constant")
    train(opts)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["config"]["encoder_lr_scale"] == 10.0
    groups = ckpt["optimizer"]["param_groups"]
    assert len(groups) == 2
    cnn, encoder = groups
    assert encoder["lr"] == pytest.approx(10 * cnn["lr"]) and cnn["lr"] > 0
    assert encoder["initial_lr"] == pytest.approx(10 * 3e-3) and cnn["initial_lr"] == pytest.approx(3e-3)
    encoder_names = [n for n in ckpt["model"] if n.startswith("encoder.")]
    assert encoder_names and len(encoder["params"]) == len(encoder_names)

    train(tiny_options(store, tmp_path / "run", steps=6, resume=True))  # loads the two groups' state (stored config)
    after = load_checkpoint(tmp_path / "run" / "last.pt")
    assert after["step"] == 6 and len(after["optimizer"]["param_groups"]) == 2

    # a CNN-only model has no encoder: one group whatever the scale
    config = make_config(TrainOptions(preset="cpu-cnn", data=str(store), out=str(tmp_path / "x"),
                                      config_overrides={"encoder_lr_scale": 10.0}))
    from r2cnn.engine.optim import build_optimizer
    from r2cnn.models import create

    model = create(config["model"], 3, **config["model_options"])
    assert len(build_optimizer(config, model).param_groups) == 1
    with pytest.raises(Exception, match="encoder_lr_scale must be a number > 0"):
        make_config(TrainOptions(preset="cpu-r2cnn", data=str(store), out=str(tmp_path / "y"),
                                 config_overrides={"encoder_lr_scale": 0}))
