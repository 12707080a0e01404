"""``r2cnn bench gpu``: one run that proves every CUDA path of the project, for a GPU lent for a few minutes.

Behind ``scripts/gpu_check.sh`` (docs/architecture.md "On a GPU"). Seven sections, in order of value, each in a
process of its own under its own time cap (a section over its cap is stopped, recorded as failed, and the next one
runs), inside one budget for the whole run (default 480 s: 8 minutes, within the device's 10-minute command):

1. ``env``: GPU, driver, torch, CUDA, cuDNN, Triton and the other versions;
2. ``cuda-tests``: every test that skips without CUDA (marked ``gpu``, or a ``skipif`` whose reason names CUDA or
   GPU), on the GPU;
3. ``raster``: the rasteriser's tests on the GPU (the Triton backend against the reference, slow cases included),
   ``r2cnn bench raster --device cuda`` and the memory-bandwidth floor of its forward+backward at C = 8;
4. ``train``: 200 training steps of ``qd-r2cnn-resnet50`` (ImageNet weights off) and of its CNN-only twin at 224^2
   on a built-in store made here, through ``r2cnn train``'s loop (the preset's bf16 autocast, pinned memory,
   non-blocking copies; a short fp16 run for the GradScaler): loss first/last (it must fall), steps/s, peak GPU
   memory; then each model's step against a plain torchvision ResNet50's on the same GPU (goal: R2CNN <= 1.15x);
5. ``dry-runs``: ``r2cnn experiment table3|table1|table2 --dry-run --device cuda``: the paper-scale GPU-hours;
6. ``export``: ONNX from the checkpoint trained in 4, and ``r2cnn.load(...).predict`` on CUDA against the CPU and
   onnxruntime (parity of the probabilities);
7. ``nccl``: a 2-rank DDP run over NCCL when 2 GPUs are visible, else skipped with the reason.

Everything lands in ``--out`` (``$OUT`` on the device machine, which brings back at most 8 files): ``summary.json``
(each section's status "ran" / "failed: reason" / "skipped: reason", wall time, cap and figures; rewritten after
every section, so a run stopped from outside still leaves one) and one log per section (``NN-name.log``). Stores,
checkpoints and exports go to a scratch folder that is removed at the end.

``--device cpu --quick`` rehearses every section on the CPU at tiny sizes (what needs CUDA hardware says "skipped:
reason"; the NCCL launch is rehearsed over gloo), so the script cannot rot between loans (tests/test_gpu_check.py).

The plan printed first gives each section's expected time on one H100, derived from its step and test counts and
the assumptions in :data:`~r2cnn.bench.gpu.plan.ASSUMPTIONS` (no GPU had run this yet when it was written): the
first real run's wall times replace them.

One idea per module:

- this package: the command (``HELP``, ``add_arguments``, ``run``): the parent process that prints the plan, runs
  each section in a process group of its own under its cap, and writes ``summary.json``;
- :mod:`~r2cnn.bench.gpu.plan`: the sections, their caps, the budget, the sizes and the expected H100 times;
- :mod:`~r2cnn.bench.gpu.context`: what a section's process gets (:class:`Context`), :class:`Skip` and :class:`Failed`;
- :mod:`~r2cnn.bench.gpu.__main__`: a section's process (``python -m r2cnn.bench.gpu TASK CONTEXT RESULT``);
- the sections: :mod:`~r2cnn.bench.gpu.env` (1), :mod:`~r2cnn.bench.gpu.cuda_tests` (2, and which tests need CUDA),
  :mod:`~r2cnn.bench.gpu.raster` (3), :mod:`~r2cnn.bench.gpu.train` (4), :mod:`~r2cnn.bench.gpu.dry_runs` (5),
  :mod:`~r2cnn.bench.gpu.export` (6) and :mod:`~r2cnn.bench.gpu.nccl` (7).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# needs_cuda and candidate_test_files: the package's names for which tests need CUDA (tests/test_gpu_check.py)
from r2cnn.bench.gpu.cuda_tests import candidate_test_files, needs_cuda
from r2cnn.bench.gpu.env import real_data
from r2cnn.bench.gpu.plan import (ASSUMPTIONS, BUDGET_S, NAMES, QUICK_BUDGET_S, SECTIONS, dry_run_models,
                                  expected_seconds, format_plan, plan_seconds)

__all__ = ["ASSUMPTIONS", "BUDGET_S", "HELP", "NAMES", "QUICK_BUDGET_S", "SECTIONS", "add_arguments",
           "candidate_test_files", "dry_run_models", "expected_seconds", "format_plan", "needs_cuda", "plan_seconds",
           "real_data", "run"]

HELP = ("prove every CUDA path in one capped run: environment, CUDA-only tests, rasteriser, mixed-precision training "
        "vs a ResNet50, paper-scale dry runs, export parity, NCCL (--device cpu --quick rehearses it)")

STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
MIN_SECTION_S = 15.0  # with less of the budget left, a section is skipped rather than started


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda: the real check; cpu: the rehearsal (with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU rehearsal of every section)")
    p.add_argument("--out", type=Path, default=None,
                   help="summary.json and one log per section (default: $OUT, else runs/gpu_check)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for the whole run (default {BUDGET_S:g}; {QUICK_BUDGET_S:g} with --quick)")
    p.add_argument("--only", help=f"comma-separated sections to run ({', '.join(NAMES)}); the others are recorded "
                                  f"as skipped")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (stores, checkpoints, exports)")


def _parse_only(text: str | None) -> set[str]:
    from r2cnn.errors import R2CNNError, did_you_mean

    if not text:
        return set(NAMES)
    chosen = {s.strip() for s in text.split(",") if s.strip()}
    for name in chosen:
        if name not in NAMES:
            raise R2CNNError(f"--only: unknown section {name!r}{did_you_mean(name, NAMES)} (sections: "
                             f"{', '.join(NAMES)})")
    return chosen


def _child_env() -> dict:
    # the launcher's variables (malloc thresholds, passive OpenMP threads) are already in this process's environment
    env = {**os.environ, "R2CNN_NO_REEXEC": "1", "PYTHONUNBUFFERED": "1"}
    src = str(Path(__file__).resolve().parents[3])  # a checkout's src/ (or site-packages): r2cnn from where it is
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _stop(proc: subprocess.Popen) -> None:
    """End a section's process and everything it started (its own process group: loader workers, pytest,
    torchrun's ranks)."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_child(task: str, context: Path, result: Path, log: Path, cap: float) -> tuple[int | None, float]:
    """Run ``python -m r2cnn.bench.gpu TASK CONTEXT RESULT`` with its output in ``log``; (exit code or None when
    stopped at ``cap``, seconds)."""
    start = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.Popen([sys.executable, "-m", "r2cnn.bench.gpu", task, str(context), str(result)],
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_env(),
                                start_new_session=True)
        try:
            code = proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            _stop(proc)
            code = None
    return code, time.perf_counter() - start


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def section_status(code: int | None, result: dict, cap: float, log: Path) -> str:
    """The recorded status of a section's process that ended with ``code`` (None: stopped at ``cap``) and wrote
    ``result``."""
    if code is None:
        return f"failed: stopped at its {cap:.0f} s cap"
    status = result.get("status")
    if code == 0 and status:
        return status
    if status and status.startswith("failed"):
        return status
    return f"failed: exit code {code}: {_last_line(log) or 'no output'}"


def write_summary(path: Path, summary: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, path)


def run(args) -> int:
    from r2cnn.errors import R2CNNError

    quick = args.quick
    if args.device == "cpu" and not quick:
        raise R2CNNError("--device cpu is the rehearsal: give --quick too (the full sizes are for a GPU)")
    chosen = _parse_only(args.only)
    budget = args.budget if args.budget is not None else (QUICK_BUDGET_S if quick else BUDGET_S)
    if budget <= 0:
        raise R2CNNError(f"--budget must be positive, not {budget:g}")
    out = Path(args.out or os.environ.get("OUT") or "runs/gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    root = Path.cwd()
    if not (root / "tests").is_dir():
        raise R2CNNError(f"run from the repository root (no tests/ in {root}): the check runs the project's tests")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="r2cnn-gpu-check-"))
    try:
        return _run_sections(args, quick, chosen, budget, out, root, work, started)
    finally:
        if not args.keep_work:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch kept in {work}")


def _run_sections(args, quick, chosen, budget, out, root, work, started) -> int:
    caps = {s.name: s.quick_cap_s if quick else s.cap_s for s in SECTIONS}
    context = work / "context.json"
    ctx = {"device": args.device, "quick": quick, "work": str(work), "root": str(root)}
    context.write_text(json.dumps(ctx))
    # the plan's counts: the tests that need CUDA (collected once; section 2 runs them, section 3 leaves them out)
    counts: dict = {}
    collect_log = out / f"{NAMES.index('cuda-tests') + 1:02d}-cuda-tests.log"  # 8 files come back: no log of its own
    collect_log.write_text("== plan: collecting the tests that need CUDA\n")
    code, _ = _run_child("collect", context, work / "collect.json", collect_log, 120.0)
    collected = _read_json(work / "collect.json").get("figures", {})
    if code == 0 and "cuda_tests" in collected:
        ctx.update(cuda_tests=collected["cuda_tests"], collection_errors=collected.get("collection_errors", []))
        counts.update(cuda_tests=len(collected["cuda_tests"]), raster_tests=collected["raster_tests"])
    else:
        print(f"note: collecting the tests failed ({_last_line(collect_log)}); sections 2 and 3 collect their own")
    context.write_text(json.dumps(ctx))
    try:
        counts["dry_run_models"] = dry_run_models()
    except Exception as e:  # noqa: BLE001 - the plan's estimate only; section 5 reports the real error
        print(f"note: could not count the dry runs' models ({type(e).__name__}: {e})")
    counts["gpus"] = collected.get("gpus", 0)
    expected = expected_seconds(counts)
    plan = format_plan(args.device, quick, budget, caps, expected, counts)
    print(plan, flush=True)
    data = real_data(root)
    if data is None:
        print(f"note: no real sketch data ($R2CNN_SHARED_DATA, else {root.parent / 'shared' / 'data'}): the CUDA tests "
              f"that compare on 48 real QuickDraw sketches will skip; to run them, bring a copy of "
              f"quickdraw/qd5/valid (about 1 MB) and point R2CNN_SHARED_DATA at the folder that holds quickdraw/",
              flush=True)

    summary = {"device": args.device, "quick": quick, "budget_s": budget, "command": " ".join(sys.argv),
               "expected_h100_total_s": round(plan_seconds() + sum(expected.values()), 1), "assumptions": {
                   k: {"value": v, "why": why} for k, (v, why) in ASSUMPTIONS.items()},
               "sections": {s.name: {"status": "skipped: not reached (the run was stopped before it)",
                                     "wall_s": None, "cap_s": caps[s.name],
                                     "expected_h100_s": round(expected[s.name], 1),
                                     "log": f"{i + 1:02d}-{s.name}.log", "figures": {}}
                            for i, s in enumerate(SECTIONS)}}
    summary_path = out / "summary.json"
    write_summary(summary_path, summary)
    for i, s in enumerate(SECTIONS):
        entry = summary["sections"][s.name]
        log = out / entry["log"]
        left = budget - (time.perf_counter() - started)
        if s.name not in chosen:
            entry["status"] = "skipped: not selected (--only)"
        elif left < MIN_SECTION_S:
            entry["status"] = f"skipped: the run's {budget:.0f} s budget is spent ({max(left, 0):.0f} s left)"
        else:
            cap = min(caps[s.name], left)
            with open(log, "a") as f:
                f.write(f"\n== {i + 1}. {s.name}: {s.what} (cap {cap:.0f} s)\n")
            result_path = work / f"{s.name}.json"
            code, wall = _run_child(s.name, context, result_path, log, cap)
            result = _read_json(result_path)
            entry.update(status=section_status(code, result, cap, log), wall_s=round(wall, 1),
                         figures=result.get("figures", {}))
            if cap < caps[s.name]:
                entry["cap_s"] = round(cap, 1)  # cut to what was left of the budget
        print(f"[{i + 1}/{len(SECTIONS)}] {s.name}: {entry['status']}"
              + (f" ({entry['wall_s']:.0f} s)" if entry["wall_s"] is not None else "")
              + (f"; {entry['figures']['headline']}" if entry["figures"].get("headline") else ""), flush=True)
        summary["total_wall_s"] = round(time.perf_counter() - started, 1)
        write_summary(summary_path, summary)
    failed = [n for n, e in summary["sections"].items() if e["status"].startswith("failed")]
    print(f"summary: {summary_path} ({summary['total_wall_s']:.0f} s"
          + (f"; failed: {', '.join(failed)})" if failed else "; no section failed)"))
    return 1 if failed else 0
