"""Engine commands fail with one line (``r2cnn: error: ...``), never a traceback, on bad input."""

import os
import subprocess
import sys

import pytest

ENV = dict(os.environ, R2CNN_NO_REEXEC="1")


def r2cnn(*args):
    return subprocess.run([sys.executable, "-m", "r2cnn", *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "{tmp}/nope", "--out", "{tmp}/run"], "--preset is required"),
    (["train", "--preset", "no-such", "--data", "{tmp}/nope", "--out", "{tmp}/run"], "unknown preset"),
    (["train", "--resume", "--data", "{tmp}/nope", "--out", "{tmp}/run"], "nothing to resume"),
    (["train", "--preset", "cpu-r2cnn", "--data", "{tmp}", "--out", "{tmp}/run", "--steps", "0"], "--steps: must be at least 1"),
    (["train", "--preset", "cpu-r2cnn", "--data", "{tmp}", "--out", "{tmp}/run", "--set", "x"], "KEY=VALUE"),
    (["train", "--preset", "cpu-r2nn", "--data", "{tmp}", "--out", "{tmp}/run"], "did you mean 'cpu-r2cnn'?"),
    (["train", "--preset", "cpu-r2cnn", "--data", "{tmp}", "--out", "{tmp}/run", "--set", "model_options.hiden=3"],
     "'hiden' is not an entry of model_options (did you mean 'hidden'?) (entries: canvas,"),
    (["train", "--preset", "cpu-r2cnn", "--data", "{tmp}", "--out", "{tmp}/run", "--set", "batchsize=3"],
     "not an entry of preset cpu-r2cnn (did you mean 'batch_size'?)"),
    (["train", "--preset", "cpu-r2cnn", "--data", "{tmp}/missing/", "--out", "{tmp}/run"], "missing: does not exist"),
    (["evaluate", "--checkpoint", "{tmp}/missing.pt", "--data", "{tmp}"], "checkpoint not found"),
    (["evaluate", "--checkpoint", "{tmp}/junk.pt", "--data", "{tmp}"], "not a readable r2cnn checkpoint"),
    (["predict", "--checkpoint", "{tmp}/missing.pt", "{tmp}/a.ndjson"], "checkpoint not found"),
])
def test_one_line_errors(tmp_path, args, message):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    proc = r2cnn(*[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r2cnn: error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_on_a_missing_store_is_one_line(tmp_path):
    proc = r2cnn("train", "--preset", "cpu-r2cnn", "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_bench_train_reports_both_models_and_the_loader(tmp_path):
    import json

    out = tmp_path / "bench.json"
    proc = r2cnn("bench", "train", "--preset", "cpu-r2cnn", "--steps", 2, "--warmup", 1, "--batch-size", 4,
                 "--workers", 0, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "R2CNN step =" in proc.stdout and "loader" in proc.stdout
    result = json.loads(out.read_text())
    assert result["twin"] == "cpu-cnn"
    assert set(result["models"]) == {"R2CNN", "CNN-only"}
    for m in result["models"].values():
        assert m["step_ms_median"] > 0 and m["sketches_per_s"] > 0
    assert result["r2cnn_over_cnn_step_time"] == pytest.approx(
        result["models"]["R2CNN"]["step_ms_median"] / result["models"]["CNN-only"]["step_ms_median"])
    assert result["loader"]["sketches_per_s"] > 0
    # the anchor is a fixed fp32 workload on the CPU; where the presets train in bf16 it is timed in bf16 too
    assert result["precision"]["ResNet18"] == "float32"
    assert ("anchor_bf16" in result) == (result["precision"]["R2CNN"] == "bfloat16")


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reruns(tmp_path):
    for _ in range(2):  # the second run finds the store up to date and retrains
        proc = r2cnn("demo", "--out", tmp_path, "--minutes", 0.2, "--per-class", 20, "--workers", 0)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "up to date" in proc.stdout
    assert "| R2CNN" in proc.stdout and "| CNN-only" in proc.stdout
    report = (tmp_path / "report.md").read_text()
    assert "test top-1" in report and (tmp_path / "r2cnn" / "best.pt").exists() and (tmp_path / "cnn" / "best.pt").exists()
    assert "HTML report (R2CNN run)" in proc.stdout and (tmp_path / "r2cnn" / "report.html").exists()
