"""``scripts/gpu_check.sh`` / ``r2cnn bench gpu`` (src/r2cnn/bench/gpu/): the plan fits its 8 minutes, the tests
that need CUDA are found, every section lands in the summary whatever happens to it, and (slow) the whole script
rehearses on the CPU."""

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from r2cnn.bench import gpu

ROOT = Path(__file__).resolve().parents[1]


def test_plan_fits_in_eight_minutes_on_an_h100():
    counts = {"cuda_tests": 51, "raster_tests": 99, "dry_run_models": gpu.dry_run_models(), "gpus": 1}
    expected = gpu.expected_seconds(counts)
    assert set(expected) == set(gpu.NAMES)
    assert gpu.plan_seconds() + sum(expected.values()) < gpu.BUDGET_S == 8 * 60
    for section in gpu.SECTIONS:  # each section's expected time within its cap, with room to spare
        assert expected[section.name] < 0.8 * section.cap_s, section.name
    plan = gpu.format_plan("cuda", False, gpu.BUDGET_S, {s.name: s.cap_s for s in gpu.SECTIONS}, expected, counts)
    assert "expected total on one H100" in plan and all(name in plan for name in gpu.NAMES)


def test_plan_counts_the_dry_runs_models():
    # Table 3's neural rows alone time five models; the classic rows of Table 1 time none
    assert gpu.dry_run_models() >= 5 + 5


class FakeItem:
    def __init__(self, *marks):
        self.marks = [m.mark for m in marks]

    def iter_markers(self, name=None):
        return (m for m in self.marks if name is None or m.name == name)


@pytest.mark.parametrize("marks,needs", [
    ((pytest.mark.skipif(True, reason="needs a CUDA device"),), True),
    ((pytest.mark.skipif(False, reason="real-size comparisons need a CUDA device (the interpreter is too slow)"),),
     True),
    ((pytest.mark.gpu,), True),
    ((pytest.mark.skipif(True, reason="real sketch data not found"), pytest.mark.slow), False),
    ((), False),
])
def test_needs_cuda(marks, needs):
    assert gpu.needs_cuda(FakeItem(*marks)) is needs


def test_candidate_files_hold_the_cuda_only_tests():
    files = gpu.candidate_test_files(ROOT)
    # a superset (test_skips_summary.py's CUDA skips are in a string): collection then decides test by test
    assert {"tests/test_raster.py", "tests/test_raster_triton.py"} <= set(files)
    assert "tests/test_engine.py" not in files


def _args(tmp_path, **kw):
    return argparse.Namespace(**{"device": "cpu", "quick": True, "out": tmp_path / "out", "budget": 1000.0,
                                 "only": None, "keep_work": False, **kw})


def test_every_section_lands_in_the_summary(tmp_path, monkeypatch, capsys):
    """A section stopped at its cap is recorded as failed and the next one still runs; one that ends with an
    exception's status keeps it; once the budget is spent the rest are skipped with the reason."""
    clock = [0.0]
    monkeypatch.setattr(gpu, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(gpu, "dry_run_models", lambda: 20)
    ran = []

    def fake_child(task, context, result, log, cap):
        ran.append(task)
        clock[0] += 380.0 if task == "train" else 10.0
        outcome = {"collect": ("ran", {"cuda_tests": ["tests/t.py::a"], "raster_tests": 3, "gpus": 0}),
                   "env": ("ran", {"headline": "no GPU"}), "raster": ("failed: 1 of 3 tests failed", {}),
                   "train": ("ran", {"runs": {}})}.get(task)
        if task == "cuda-tests":
            return None, cap  # stopped at its cap, no result written
        if outcome:
            result.write_text(json.dumps({"status": outcome[0], "figures": outcome[1]}))
        return 0, 10.0

    monkeypatch.setattr(gpu, "_run_child", fake_child)
    monkeypatch.chdir(ROOT)
    assert gpu.run(_args(tmp_path, budget=400.0)) == 1  # a section failed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    sections = summary["sections"]
    assert list(sections) == list(gpu.NAMES)
    assert sections["env"]["status"] == "ran" and sections["env"]["figures"] == {"headline": "no GPU"}
    assert sections["cuda-tests"]["status"] == "failed: stopped at its 240 s cap"
    assert sections["raster"]["status"] == "failed: 1 of 3 tests failed"
    assert sections["train"]["status"] == "ran"
    for name in ("dry-runs", "export", "nccl"):  # 4 x 10 + 380 s: past the 400 s budget
        assert sections[name]["status"].startswith("skipped: the run's 400 s budget is spent"), name
    assert ran == ["collect", "env", "cuda-tests", "raster", "train"]
    out = capsys.readouterr().out
    assert "expected on H100" in out and "failed: cuda-tests, raster" in out


def test_only_runs_the_sections_named(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "dry_run_models", lambda: 20)
    ran = []

    def fake_child(task, context, result, log, cap):
        ran.append(task)
        result.write_text(json.dumps({"status": "ran", "figures": {}}))
        return 0, 1.0

    monkeypatch.setattr(gpu, "_run_child", fake_child)
    monkeypatch.chdir(ROOT)
    assert gpu.run(_args(tmp_path, only="env,export")) == 0
    sections = json.loads((tmp_path / "out" / "summary.json").read_text())["sections"]
    assert ran == ["collect", "env", "export"]
    assert sections["train"]["status"] == "skipped: not selected (--only)"


@pytest.mark.parametrize("argv,message", [
    (["--device", "cpu"], "--device cpu is the rehearsal: give --quick too"),
    (["--device", "cpu", "--quick", "--only", "trian"], "--only: unknown section 'trian'"),
])
def test_bad_options_are_one_line(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "r2cnn", "bench", "gpu", "--out", str(tmp_path), *argv],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "R2CNN_NO_REEXEC": "1"})
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_cpu_rehearsal_writes_every_section(tmp_path):
    """`scripts/gpu_check.sh --device cpu --quick`: every section ran or was skipped with a reason, within the
    device's limit of 8 files brought back."""
    out = tmp_path / "out"
    proc = subprocess.run(["scripts/gpu_check.sh", "--device", "cpu", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OUT": str(out), "PYTHON": sys.executable})
    summary = json.loads((out / "summary.json").read_text())
    sections = summary["sections"]
    failed = {n: (out / e["log"]).read_text()[-3000:] for n, e in sections.items() if e["status"].startswith("failed")}
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + "".join(
        f"\n--- {name}'s log, its end:\n{tail}" for name, tail in failed.items())
    assert list(sections) == list(gpu.NAMES)
    for name, entry in sections.items():
        assert entry["status"] == "ran" or entry["status"].startswith("skipped: "), (name, entry["status"])
        assert (out / entry["log"]).is_file()
    assert sections["cuda-tests"]["status"].startswith("skipped: no CUDA device")
    assert sections["cuda-tests"]["figures"]["found"] > 0
    train = sections["train"]["figures"]["runs"]
    assert all(r["loss_last"] < r["loss_first"] for r in train.values())
    assert sections["export"]["figures"]["parity"]["onnx_vs_cpu"]["top1_agree"] > 0
    assert sections["nccl"]["figures"]["backend"] == "gloo"
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8
