"""The benchmarks (``r2cnn bench``) and what they rely on: where they find data, the launcher's environment, the
ResNet18 anchor, OpenCV only where a benchmark needs it. The figures themselves are never asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import r2cnn
from r2cnn import cli
from r2cnn.bench import _paths
from r2cnn.cli import main
from r2cnn.errors import R2CNNError
from r2cnn.launch import LAUNCH_ENV

ENV = dict(os.environ, R2CNN_NO_REEXEC="1")


def r2cnn_cmd(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "r2cnn", *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------------- data paths

def test_data_is_found_under_the_env_var_first(tmp_path, monkeypatch):
    (tmp_path / "env" / "quickdraw" / "x").mkdir(parents=True)
    monkeypatch.setenv(_paths.ENV_VAR, str(tmp_path / "env"))
    assert _paths.data_roots()[0] == tmp_path / "env"
    assert _paths.find_data("quickdraw/x") == tmp_path / "env" / "quickdraw" / "x"


def test_data_beside_the_checkout_then_beside_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    (tmp_path / "shared" / "data" / "only-here").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    roots = _paths.data_roots()
    checkout = Path(r2cnn.__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():  # running from the source tree, not an installed wheel
        assert roots[0] == checkout.parent / "shared" / "data"
    assert roots[-1] == tmp_path / "shared" / "data"
    assert _paths.find_data("only-here") == tmp_path / "shared" / "data" / "only-here"
    assert _paths.find_data("no/such/folder") is None
    note = capsys.readouterr().err
    assert "no/such/folder" in note and _paths.ENV_VAR in note and "built-in" in note


def test_simplify_agreement_without_data_says_where_it_looked(tmp_path, monkeypatch):
    from argparse import Namespace

    from r2cnn.bench import simplify_agreement

    monkeypatch.setattr(_paths, "data_roots", lambda: [tmp_path])
    with pytest.raises(R2CNNError, match=f"not found .*{_paths.ENV_VAR}.*--raw"):
        simplify_agreement.run(Namespace(raw=None, simplified=None, limit=None))


def test_bench_raster_with_a_missing_data_folder_is_one_line(tmp_path):
    proc = r2cnn_cmd("bench", "raster", "--data", tmp_path / "nope", "--repeat", 1, "--batch", 2, "--size", 16)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"r2cnn: error: {tmp_path / 'nope'}: no .ndjson files (expected a "
                                                "folder of QuickDraw simplified files)"]


# ---------------------------------------------------------------------------------------------------- OpenCV

def test_no_module_needs_opencv_at_import():
    """OpenCV is the `bench` extra: every module of the package imports without it."""
    code = ("import importlib, pkgutil, sys; sys.modules['cv2'] = None; import r2cnn\n"
            "for m in pkgutil.walk_packages(r2cnn.__path__, 'r2cnn.'):\n"
            "    if m.name != 'r2cnn.__main__': importlib.import_module(m.name)  # __main__ runs the CLI\n"
            "print('imported', len(sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr


def test_bench_raster_prints_each_goal_with_its_figure(tmp_path, capsys):
    out = tmp_path / "raster.json"
    assert main(["bench", "raster", "--repeat", "1", "--batch", "2", "--size", "16", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cpu forward+backward C=1 vs cv2.polylines 2px = " in printed and "(goal <= 1x)" in printed
    assert "cpu forward+backward C=8 vs C=1 = " in printed and "(goal <= 3x)" in printed
    result = json.loads(out.read_text())
    times, figures = result["times_ms"], result["goal_figures"]
    assert figures["cpu forward+backward C=1 vs cv2.polylines 2px"] == pytest.approx(
        times["cpu forward+backward C=1"] / times["cv2.polylines 2px"])
    # C=8 against the C=1 run that took turns with it (each goal's ratio is between two runs timed together)
    assert figures["cpu forward+backward C=8 vs C=1"] == pytest.approx(
        times["cpu forward+backward C=8"] / times["cpu forward+backward C=1, turns with C=8"])
    assert set(result["goals"]) == {f"{k} <= {b}" for k, b in zip(figures, ("1", "3", "0.1"))}


def test_bench_raster_without_opencv_is_one_line():
    code = ("import sys; sys.modules['cv2'] = None; from r2cnn.cli import main\n"
            "sys.exit(main(['bench', 'raster', '--repeat', '1', '--batch', '2', '--size', '16']))")
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("note:")]
    assert lines == ["r2cnn: error: bench raster draws its anchor with OpenCV, which is not installed: "
                     "pip install 'sketch-r2cnn[bench]'"]


# ------------------------------------------------------------------------------------------------- launcher

def test_launcher_restarts_with_passive_openmp_threads_and_keeps_what_the_user_set(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.delenv("R2CNN_NO_REEXEC", raising=False)
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    cli._reexec_with_launch_env(["train", "--help"])
    exe, argv, env = calls.pop()
    assert argv == [sys.executable, "-m", "r2cnn", "train", "--help"]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["MALLOC_MMAP_THRESHOLD_"] == env["MALLOC_TRIM_THRESHOLD_"] == "1000000000"

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli._reexec_with_launch_env(["train"])
    assert calls.pop()[2]["OMP_WAIT_POLICY"] == "ACTIVE"

    for name, value in LAUNCH_ENV.items():
        monkeypatch.setenv(name, value)
    cli._reexec_with_launch_env(["train"])
    assert calls == []  # everything set: no restart


# ------------------------------------------------------------------------------------------------- benchmarks

def test_resnet18_anchor_is_torchvisions_with_one_input_channel():
    from r2cnn.bench.train import ANCHOR_SIZE, resnet18_anchor

    model = resnet18_anchor(5)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(model.maxpool, torch.nn.MaxPool2d) and model.layer1[0].conv1.in_channels == 64
    assert model(torch.rand(2, 1, ANCHOR_SIZE, ANCHOR_SIZE)).shape == (2, 5)


def test_bench_encoder_reports_every_row_against_the_anchor(tmp_path, capsys):
    out = tmp_path / "encoder.json"
    assert main(["bench", "encoder", "--batch", "4", "--hidden", "8", "--repeat", "1", "--threads", "2",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "packed nn.LSTM, 2 threads (anchor)" in printed and "flipped BiLSTM, 1 thread" in printed
    result = json.loads(out.read_text())
    assert result["threads"] == 2 and len(result["rows"]) == 4
    assert any("length blocks, 1 thread (training)" in row for row in result["rows"])
    assert all(row["wall_ms"] > 0 for row in result["rows"].values())


@pytest.mark.slow
def test_bench_data_reports_the_builtin_generator(tmp_path):
    out = tmp_path / "data.json"
    proc = r2cnn_cmd("bench", "data", "--sketches", 120, "--loader-sketches", 64, "--builtin-sketches", 24,
                     "--raster-size", 32, "--json", out)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["group"], r["what"]): r for r in json.loads(out.read_text())["results"]}
    generated = rows[("builtin", "builtin.generate")]
    assert generated["sketches"] == 24 and generated["ratio_to_anchor"] > 0
    assert rows[("builtin", "json.loads loop, same sketches (anchor)")]["ratio_to_anchor"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(1500)  # seven processes each start torch: minutes on a loaded 2-core machine
def test_bench_train_concurrent_reports_each_process_against_one_alone(tmp_path):
    """`bench train --concurrent 2`: the ResNet18 anchor, then per model one training process alone and two at once,
    each with its rate as a multiple of the lone one's (the figures depend on the machine: not asserted)."""
    out = tmp_path / "bench.json"
    proc = r2cnn_cmd("bench", "train", "--steps", 2, "--warmup", 1, "--batch-size", 4, "--workers", 1,
                     "--concurrent", 2, "--json", out, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    assert "vs ResNet18 step" in proc.stdout and "process 2 of 2" in proc.stdout
    assert "every process >=" in proc.stdout and "R2CNN no worse than CNN-only" in proc.stdout
    assert "R2CNN sketches/s = " in proc.stdout and "the >= 1.2x goal on CPU" in proc.stdout
    result = json.loads(out.read_text())
    assert result["anchor"]["step_over_anchor"] == 1.0
    assert result["r2cnn_sketches_per_s_over_anchor"] == pytest.approx(
        result["anchor"]["step_ms_median"] / result["models"]["R2CNN"]["step_ms_median"])
    for m in result["models"].values():
        assert m["step_over_anchor"] == pytest.approx(m["step_ms_median"] / result["anchor"]["step_ms_median"])
    concurrent = result["concurrent"]
    assert concurrent["processes"] == 2 and concurrent["goal_rate_ratio"] == pytest.approx(0.4)
    assert set(concurrent["models"]) == {"R2CNN", "CNN-only"}
    for m in concurrent["models"].values():
        assert len(m["together_ms"]) == 2 and m["alone_ms"] > 0
        assert m["rate_ratios"] == pytest.approx([m["alone_ms"] / t for t in m["together_ms"]])
