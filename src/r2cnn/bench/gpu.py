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
the assumptions in :data:`ASSUMPTIONS` (no GPU had run this yet when it was written): the first real run's wall
times replace them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

HELP = ("prove every CUDA path in one capped run: environment, CUDA-only tests, rasteriser, mixed-precision training "
        "vs a ResNet50, paper-scale dry runs, export parity, NCCL (--device cpu --quick rehearses it)")

BUDGET_S = 480.0  # the whole run on one H100: the 8 minutes the check is sized for
QUICK_BUDGET_S = 1800.0  # the CPU rehearsal on a busy 2-core machine
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
MIN_SECTION_S = 15.0  # with less of the budget left, a section is skipped rather than started

# The expected times of the plan rest on these; each is stated with where it comes from.
ASSUMPTIONS = {
    "start_s": (10.0, "a fresh Python process importing torch and starting CUDA"),
    "resnet50_images_per_s": (1200.0, "a torchvision ResNet50 training step at 224^2, batch 48, bf16 autocast, eager "
                              "PyTorch on one H100: about half of the ~2,500 images/s NVIDIA's DeepLearningExamples "
                              "report for ResNet50 mixed-precision training on an A100 at batch 256 with channels-last "
                              "and DALI, for the small batch and the plain NCHW model"),
    "r2cnn_over_resnet50": (1.15, "the goal: a Sketch-R2CNN step at most 1.15x the ResNet50 step"),
    "builtin_sketches_per_s": (1000.0, "built-in sketches drawn and stored (`r2cnn prepare --builtin`) per second: "
                               "about 600/s on one core of the 2-core development machine, under load"),
    "run_overhead_s": (8.0, "a training run besides its steps: model, loader workers, one validation, checkpoints"),
    "test_s": (1.0, "one CUDA test, Triton compilations included"),
    "raster_test_s": (0.3, "one rasteriser test on the GPU machine"),
    "raster_bench_s": (30.0, "`r2cnn bench raster --device cuda --repeat 50`, reference and dense anchors included"),
    "dry_run_model_s": (4.0, "one model timed by a dry run: build, 3 batches loaded in-process, 1 + 2 steps"),
    "export_s": (30.0, "tracing and writing the ONNX file of R2CNN-ResNet50, then three loads and predictions"),
}


def _assumed(key: str) -> float:
    return ASSUMPTIONS[key][0]


# --- sizes ------------------------------------------------------------------------------------------------------------

PRESET = "qd-r2cnn-resnet50"
GOAL_OVER_RESNET50 = 1.15  # the R2CNN step at most this multiple of a plain torchvision ResNet50 step (on a GPU)
TWIN = "qd-cnn-resnet50"
DRY_RUN_SPECS = ("table3", "table1", "table2")
RASTER_TEST_FILES = ("tests/test_raster_triton.py", "tests/test_raster.py")
# the quick rehearsal's model: qd-r2cnn-resnet50's code path (BiLSTM -> NLR -> ResNet50 bottlenecks), tiny
TINY_OPTIONS = {"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1, "dropout": 0.0}


@dataclass(frozen=True)
class Sizes:
    steps: int  # training steps of each model (section 4)
    batch: int | None  # None: the preset's (48)
    workers: int | None  # None: the preset's (8)
    lr: float | None  # None: the preset's
    log_every: int
    fp16_steps: int  # the GradScaler run (CUDA only)
    timed_steps: int  # steps timed per model against the ResNet50 anchor (median)
    warmup_steps: int
    raster_repeat: int
    predict_sketches: int
    ddp_steps: int

    @staticmethod
    def of(quick: bool) -> "Sizes":
        if quick:
            return Sizes(steps=12, batch=16, workers=0, lr=3e-3, log_every=3, fp16_steps=0, timed_steps=3,
                         warmup_steps=1, raster_repeat=3, predict_sketches=6, ddp_steps=4)
        return Sizes(steps=200, batch=None, workers=None, lr=None, log_every=10, fp16_steps=30, timed_steps=20,
                     warmup_steps=5, raster_repeat=50, predict_sketches=24, ddp_steps=30)


# --- the plan ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    name: str
    what: str
    cap_s: float  # full run, on a GPU
    quick_cap_s: float  # the CPU rehearsal


SECTIONS = (
    Section("env", "GPU, driver, torch, CUDA, cuDNN, Triton versions", 60, 120),
    Section("cuda-tests", "every test that skips without CUDA, on CUDA", 120, 240),
    Section("raster", "rasteriser tests on CUDA, bench raster --device cuda, bandwidth floor", 150, 420),
    Section("train", f"200 steps of {PRESET} and {TWIN} (224^2, bf16, pretrained off), fp16 GradScaler run, "
                     f"step vs torchvision ResNet50", 180, 420),
    Section("dry-runs", "experiment table3/table1/table2 --dry-run --device cuda: paper-scale GPU-hours", 240, 300),
    Section("export", "ONNX export of the CUDA-trained checkpoint; predict on CUDA vs CPU vs onnxruntime", 90, 240),
    Section("nccl", "2-rank DDP over NCCL (needs 2 GPUs)", 90, 240),
)
NAMES = tuple(s.name for s in SECTIONS)


def plan_seconds() -> float:
    """The plan's own time: a process collecting the tests (pytest, torch and Triton imported)."""
    return _assumed("start_s") + 5


def expected_seconds(counts: dict) -> dict[str, float]:
    """Each section's expected wall time on one H100 for the full run, from ``counts``: ``cuda_tests`` (tests that
    need CUDA), ``raster_tests`` (the other rasteriser tests), ``dry_run_models`` (models each dry run times, summed
    over the specs), ``gpus`` (visible devices)."""
    start = _assumed("start_s")
    sizes = Sizes.of(False)
    batch = 48
    r50_step = batch / _assumed("resnet50_images_per_s")
    r2cnn_step = _assumed("r2cnn_over_resnet50") * r50_step
    classes = 12  # the built-in generator's
    per_class = math.ceil(sizes.steps * batch / classes) + 4
    store = classes * per_class / _assumed("builtin_sketches_per_s")
    overhead = _assumed("run_overhead_s")
    train = (start + store + 2 * overhead + sizes.steps * (r2cnn_step + r50_step)  # the two 200-step runs
             + overhead + sizes.fp16_steps * r2cnn_step  # fp16 + GradScaler
             + (sizes.timed_steps + sizes.warmup_steps) * (r2cnn_step + 2 * r50_step) + 5)  # the anchor, batches
    two_gpus = counts.get("gpus", 1) >= 2
    return {
        "env": start,
        "cuda-tests": start + 5 + _assumed("test_s") * counts.get("cuda_tests", 20),
        "raster": start + 5 + _assumed("raster_test_s") * counts.get("raster_tests", 150)
        + _assumed("raster_bench_s") + start,
        "train": train,
        "dry-runs": start + len(DRY_RUN_SPECS) * 3 + _assumed("dry_run_model_s") * counts.get("dry_run_models", 20),
        "export": start + _assumed("export_s"),
        "nccl": 2 * start + overhead + sizes.ddp_steps * r2cnn_step if two_gpus else 1.0,
    }


def dry_run_models() -> int:
    """Models the dry runs of :data:`DRY_RUN_SPECS` time: the distinct neural presets of each spec, summed."""
    from r2cnn.experiments.runners import runner_kind
    from r2cnn.experiments.spec import load_spec
    from r2cnn.presets import get_preset

    return sum(len({r.preset for r in load_spec(name).rows if runner_kind(get_preset(r.preset)) == "neural"})
               for name in DRY_RUN_SPECS)


def format_plan(device: str, quick: bool, budget: float, caps: dict, expected: dict, counts: dict) -> str:
    from r2cnn.engine.report import table

    rows = [(str(i + 1), s.name, f"{expected[s.name]:.0f} s", f"{caps[s.name]:.0f} s", s.what)
            for i, s in enumerate(SECTIONS)]
    total = plan_seconds() + sum(expected.values())
    head = (f"r2cnn bench gpu: {len(SECTIONS)} sections on {device}"
            + (" (rehearsal: tiny sizes; the times below are the full run's on one H100)" if quick else "")
            + f", budget {budget:.0f} s; found {counts.get('cuda_tests', '?')} CUDA-only tests, "
              f"{counts.get('raster_tests', '?')} other rasteriser tests, {counts.get('dry_run_models', '?')} "
              f"models to time in the dry runs")
    lines = [head, table(rows, ["#", "section", "expected on H100", "cap", "what"]),
             f"expected total on one H100: {total:.0f} s ({total / 60:.1f} min, the plan's {plan_seconds():.0f} s of "
             f"test collection included; the check is sized for 8 min)",
             "assumptions: " + "; ".join(f"{k} = {v:g} ({why})" for k, (v, why) in ASSUMPTIONS.items())]
    return "\n".join(lines)


# --- which tests need CUDA --------------------------------------------------------------------------------------------

CUDA_REASON = re.compile(r"CUDA|GPU")  # as tests/_skips.py groups skip reasons
_CANDIDATE = re.compile(r"skipif\([^\n]*(CUDA|cuda|GPU)|mark\.gpu\b")


def needs_cuda(item) -> bool:
    """A pytest item that skips without CUDA: marked ``gpu``, or a ``skipif`` whose reason names CUDA or GPU."""
    if any(True for _ in item.iter_markers("gpu")):
        return True
    return any(CUDA_REASON.search(str(m.kwargs.get("reason", ""))) for m in item.iter_markers("skipif"))


def candidate_test_files(root: Path) -> list[str]:
    """Test files whose text has a CUDA/GPU ``skipif`` or a ``gpu`` mark (collection then decides per test)."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if _CANDIDATE.search(p.read_text(encoding="utf-8", errors="replace")))


class CudaOnly:
    """pytest plugin: keep only the tests that need CUDA (:func:`needs_cuda`), and note their ids."""

    def __init__(self):
        self.ids: list[str] = []

    def pytest_collection_modifyitems(self, config, items) -> None:
        keep = [i for i in items if needs_cuda(i)]
        dropped = [i for i in items if not needs_cuda(i)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        self.ids = [i.nodeid for i in keep]


class Outcomes:
    """pytest plugin: counts of passed / failed / skipped tests, the failures' ids and the skip reasons."""

    def __init__(self):
        self.counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
        self.failures: list[str] = []
        self.skip_reasons: dict[str, int] = {}
        self.collected = 0

    def pytest_collection_finish(self, session) -> None:
        self.collected = len(session.items)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            if report.outcome == "passed":
                self.counts["passed"] += 1
            elif report.outcome == "skipped":
                self.counts["skipped"] += 1
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1
            elif report.when == "call":
                self.counts["failed"] += 1
                self.failures.append(report.nodeid)
            else:
                self.counts["errors"] += 1
                self.failures.append(f"{report.nodeid} ({report.when})")

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.counts["errors"] += 1
            self.failures.append(f"{report.nodeid} (collection)")


# --- the parent: plan, sections, summary ------------------------------------------------------------------------------

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
    src = str(Path(__file__).resolve().parents[2])  # a checkout's src/ (or site-packages): r2cnn from where it is
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


def real_data(root: Path) -> Path | None:
    """The data folder the tests' ``shared_data`` fixture uses (tests/conftest.py), when it holds the sketches the
    CUDA tests compare on."""
    data = Path(os.environ.get("R2CNN_SHARED_DATA") or root.parent / "shared" / "data")
    return data if (data / "quickdraw" / "qd5" / "valid").is_dir() else None


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


# --- the sections (each in its own process) ---------------------------------------------------------------------------

class Skip(Exception):
    """The section cannot run here; its message is the reason."""


class Failed(Exception):
    """A check of the section failed; its message says which."""


class Context:
    """What a section process gets: the run's settings, the scratch folder, and ``record(**figures)`` (written to
    the result file at once, so a section stopped at its cap keeps what it had measured)."""

    def __init__(self, context: Path, result: Path):
        data = json.loads(context.read_text())
        self.device: str = data["device"]
        self.quick: bool = data["quick"]
        self.work = Path(data["work"])
        self.root = Path(data["root"])
        self.cuda_tests: list[str] | None = data.get("cuda_tests")
        self.collection_errors: list[str] = data.get("collection_errors", [])
        self.sizes = Sizes.of(self.quick)
        self.result = result
        self.figures: dict = {}

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def record(self, **figures) -> None:
        self.figures.update(figures)
        self.write("running")

    def write(self, status: str) -> None:
        self.result.write_text(json.dumps({"status": status, "figures": self.figures}, indent=1, default=str))

    def require_cuda(self) -> None:
        import torch

        if self.cuda and not torch.cuda.is_available():
            raise Failed(f"torch {torch.__version__} sees no CUDA device (torch.version.cuda = {torch.version.cuda})")


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "torchvision", "triton", "numpy", "numba", "onnx", "onnxruntime", "pytest", "hypothesis",
                 "opencv-python-headless", "orjson", "fastapi", "sketch-r2cnn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _nccl_version() -> str | None:
    import torch

    try:
        version = torch.cuda.nccl.version()  # a tuple in recent torch, an int in older ones
    except Exception as e:  # noqa: BLE001 - a figure only
        return f"unknown ({type(e).__name__})"
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def section_env(ctx: Context) -> None:
    import platform
    import shutil

    import r2cnn

    data = real_data(ctx.root)
    ctx.record(python=platform.python_version(), executable=sys.executable, r2cnn=r2cnn.__version__,
               r2cnn_from=str(Path(r2cnn.__file__).parent), cpus=os.cpu_count(), packages=_versions(),
               real_data=None if data is None else str(data))
    import torch

    gpu = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "devices": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu.update(name=props.name, capability=f"{props.major}.{props.minor}", memory_gib=round(
            props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported(), nccl=_nccl_version())
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        gpu["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        gpu["driver"] = smi.stdout.split(",")[1].strip() if smi.returncode == 0 and "," in smi.stdout else None
    else:
        gpu["nvidia_smi"] = None
    ctx.record(**gpu, headline=(f"{gpu.get('name', 'no GPU')}, driver {gpu.get('driver')}, torch {torch.__version__} "
                                f"(CUDA {torch.version.cuda}), triton {ctx.figures['packages']['triton']}"))
    print(json.dumps(ctx.figures, indent=1))
    ctx.require_cuda()


def _pytest(args: list[str]) -> Outcomes:
    """pytest in this process (its output in the section's log), with the outcomes counted."""
    import pytest

    outcomes = Outcomes()
    code = pytest.main(["-p", "no:cacheprovider", "-rfEs", *args], plugins=[outcomes])
    outcomes.counts["exit_code"] = int(code)
    return outcomes


def collect(ctx: Context) -> None:
    """The plan's counts: the tests that need CUDA, the other rasteriser tests, the visible GPUs."""
    import pytest

    files = candidate_test_files(ctx.root)
    selection = CudaOnly()
    # a module that does not import is counted (section 2 reports it) rather than hiding the others' tests
    errors = Outcomes()
    code = pytest.main(["-p", "no:cacheprovider", "--collect-only", "-q", "-m", "slow or not slow",
                        "--continue-on-collection-errors", *files], plugins=[selection, errors]) \
        if files else pytest.ExitCode.NO_TESTS_COLLECTED
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED, pytest.ExitCode.TESTS_FAILED):
        raise Failed(f"collecting {', '.join(files)} failed (pytest exit code {int(code)})")
    counter = Outcomes()
    pytest.main(["-p", "no:cacheprovider", "--collect-only", "-q", "-m", "slow or not slow", *RASTER_TEST_FILES,
                 *[f"--deselect={i}" for i in selection.ids]], plugins=[counter])
    import torch

    ctx.record(cuda_tests=selection.ids, candidate_files=files, raster_tests=counter.collected,
               collection_errors=errors.failures,
               gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0)


def _cuda_test_ids(ctx: Context) -> list[str]:
    if ctx.cuda_tests is None:
        collect(ctx)  # the plan's collection failed: try again here, so its error lands in this log
        ctx.cuda_tests, ctx.collection_errors = ctx.figures["cuda_tests"], ctx.figures["collection_errors"]
    return ctx.cuda_tests


def section_cuda_tests(ctx: Context) -> None:
    ids = _cuda_test_ids(ctx)
    ctx.figures.clear()
    ctx.record(found=len(ids), tests=ids, collection_errors=ctx.collection_errors)
    print(f"{len(ids)} tests skip without CUDA:\n  " + "\n  ".join(ids))
    unimportable = (f"test modules that do not import here: {', '.join(ctx.collection_errors)} (the plan's "
                    f"collection, at the top of this log)")
    if not ctx.cuda or not ids:
        if ctx.collection_errors:
            raise Failed(unimportable)
        raise Skip("no test skips without CUDA" if not ids else
                   f"no CUDA device: the {len(ids)} tests that need one were collected (figures.tests) and run on "
                   f"a GPU")
    ctx.require_cuda()
    outcomes = _pytest(["-m", "slow or not slow", *ids])
    skipped = outcomes.counts["skipped"]
    ctx.record(**outcomes.counts, failures=outcomes.failures, skip_reasons=outcomes.skip_reasons,
               headline=f"{outcomes.counts['passed']} passed, {outcomes.counts['failed']} failed, {skipped} skipped "
                        f"of {len(ids)}" + (f" ({max(outcomes.skip_reasons, key=outcomes.skip_reasons.get)})"
                                            if skipped else ""))
    _check_tests(outcomes, len(ids))
    if ctx.collection_errors:
        raise Failed(unimportable)


def _check_tests(outcomes: Outcomes, n: int) -> None:
    bad = outcomes.counts["failed"] + outcomes.counts["errors"]
    if bad or outcomes.counts["exit_code"] not in (0, 5):
        raise Failed(f"{bad} of {n} tests failed or errored: {', '.join(outcomes.failures[:5])}"
                     + (" ..." if len(outcomes.failures) > 5 else "") + " (see the log)")


def section_raster(ctx: Context) -> None:
    ids = _cuda_test_ids(ctx)
    ctx.figures.clear()
    if ctx.cuda:
        ctx.require_cuda()
    # the CUDA-only tests ran in section 2; the rehearsal runs a few of the Triton tests in the interpreter (all
    # of its cases take minutes there), the real run both files whole, slow cases included
    files = RASTER_TEST_FILES[:1] if ctx.quick else RASTER_TEST_FILES
    select = ["-m", "not slow", "-k", "gradcheck"] if ctx.quick else ["-m", "slow or not slow"]
    # the bench and its floor first: the tests' run is the longer, and a stop at the cap then loses only it
    bench = _raster_bench(ctx)
    floor = _raster_floor(ctx, bench)
    print(f"\n== pytest {' '.join([*select, *files])} (without the {len(ids)} tests of section 2)", flush=True)
    outcomes = _pytest(["-q", *select, *files, *[f"--deselect={i}" for i in ids]])
    ctx.record(tests={**outcomes.counts, "files": list(files), "failures": outcomes.failures})
    ctx.record(headline=f"tests {outcomes.counts['passed']} passed, {outcomes.counts['failed']} failed; "
                        + ("floor " + (f"{floor['times_floor']:.1f}x" if floor.get("times_floor") else "n/a")))
    _check_tests(outcomes, sum(outcomes.counts[k] for k in ("passed", "failed", "skipped")))


def _raster_bench(ctx: Context) -> dict:
    from r2cnn.bench import raster

    path = ctx.work / "raster_bench.json"
    argv = ["--device", ctx.device, "--repeat", str(ctx.sizes.raster_repeat), "--json", str(path),
            *(["--batch", "8", "--size", "64"] if ctx.quick else [])]
    print(f"\n== r2cnn bench raster {' '.join(argv)}", flush=True)
    parser = argparse.ArgumentParser(prog="r2cnn bench raster")
    raster.add_arguments(parser)
    code = raster.run(parser.parse_args(argv))
    if code != 0:
        raise Failed(f"r2cnn bench raster --device {ctx.device} exited with {code}")
    bench = json.loads(path.read_text())
    ctx.record(bench={k: bench[k] for k in ("config", "times_ms", "goal_figures", "goals")})
    return bench


# bytes/s, HBM peak from the data sheets (the floor's denominator)
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12}


def _raster_floor(ctx: Context, bench: dict) -> dict:
    """Bytes the fast backend's forward+backward at C = 8 must move on the bench's sketches, as time at the GPU's
    peak bandwidth, next to the measured time."""
    import torch

    import r2cnn.raster as R
    from r2cnn.bench._paths import find_data
    from r2cnn.bench.raster import QUICKDRAW_VALID, sample_sketches
    from r2cnn.sketch import SketchBatch

    config = bench["config"]
    device = torch.device(ctx.device)
    batch = SketchBatch.from_sketches(sample_sketches(config["batch"], find_data(QUICKDRAW_VALID, quiet=True)),
                                      labels=[-1] * config["batch"])
    geo = R.geometry(batch.points.to(device), batch.offsets.to(device), config["size"])
    b, (h, w), c, e, p = geo.batch_size, geo.size, 8, geo.num_entries, geo.num_points
    entry = geo.pixel.element_size() + geo.segment.element_size() + geo.alpha.element_size()
    forward = b * h * w * c * 4 + e * entry + e * c * 4 + p * c * 4  # zero the image, read geometry, write, read a
    backward = e * entry + (p + 1) * 8 + e * c * 4 + p * c * 4  # read geometry + CSR, gather grad pixels, write grad
    fast = "triton" if ctx.cuda else "cpu"
    measured_ms = bench["times_ms"].get(f"{fast} forward+backward C=8")
    name = torch.cuda.get_device_name() if ctx.cuda else "cpu"
    peak = next((v for k, v in PEAK_BANDWIDTH.items() if k in name), None)
    floor = {"device": name, "entries": e, "points": p, "forward_mb": forward / 1e6, "backward_mb": backward / 1e6,
             "measured_us": None if measured_ms is None else measured_ms * 1e3, "peak_bytes_per_s": peak}
    if peak and measured_ms:
        floor_us = (forward + backward) / peak * 1e6
        floor.update(floor_us=floor_us, times_floor=measured_ms * 1e3 / floor_us)
    print(f"\n== bandwidth floor (B={b}, {h}x{w}, C=8, overlap=last): {json.dumps(floor)}")
    ctx.record(floor=floor)
    return floor


def _store(ctx: Context) -> Path:
    """The built-in stand-in store of sections 4, 6 and 7: one epoch of the training runs (``steps x batch``
    sketches) plus a validation batch; made once, found up to date afterwards."""
    from r2cnn.data.builtin import CLASSES
    from r2cnn.data.store import prepare

    batch = ctx.sizes.batch or 48
    per_class = math.ceil(ctx.sizes.steps * batch / len(CLASSES))
    valid = max(1, math.ceil(batch / len(CLASSES)))
    path = ctx.work / "store"
    prepare([], path, builtin=per_class + valid, split_sizes=(per_class, valid, 0), progress=False)
    return path


def _train_options(ctx: Context, preset: str, store: Path, out: Path, **kwargs):
    from r2cnn.engine.config import TrainOptions

    overrides = {"model_options": dict(TINY_OPTIONS, pretrained=None)} if ctx.quick else {
        "model_options.pretrained": None}
    s = ctx.sizes
    fields = dict(preset=preset, data=str(store), out=str(out), steps=s.steps, device=ctx.device,
                  workers=s.workers, batch_size=s.batch, lr=s.lr, log_every=s.log_every, progress=False,
                  print_every=50, overwrite=True, config_overrides=overrides)
    fields.update(kwargs)
    return TrainOptions(**fields)


def _losses(run_dir: Path) -> list[float]:
    """The training losses of a run's log, one per logged window."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if r.get("kind") == "train"]


def _train_once(ctx: Context, preset: str, store: Path, name: str | None = None, **kwargs) -> dict:
    """Train ``preset`` through the engine's loop into the scratch folder's ``train/NAME`` (default: the preset's
    name); its figures."""
    import statistics

    import torch

    from r2cnn.engine.precision import amp_dtype
    from r2cnn.engine.train import train

    name = name or preset
    out = ctx.work / "train" / name
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    print(f"\n== train {name}: {kwargs.get('steps', ctx.sizes.steps)} steps on {ctx.device}", flush=True)
    start = time.perf_counter()
    result = train(_train_options(ctx, preset, store, out, **kwargs))
    wall = time.perf_counter() - start
    losses = _losses(out)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["sketches_per_s"] for r in records if r.get("kind") == "train"][1:]  # the first window warms up
    config = records[0]["config"]
    precision = amp_dtype(config, torch.device(ctx.device))  # bf16 on a CPU only where it is native
    figures = {"steps": result["step"], "wall_s": wall, "batch_size": config["batch_size"], "amp": config["amp"],
               "precision": str(precision or torch.float32).replace("torch.", ""),
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "steps_per_s": statistics.median(rates) / config["batch_size"] if rates else None,
               "valid_top1": (result.get("valid") or {}).get("top1"), "checkpoint": result["best_path"]}
    if ctx.cuda:
        figures.update(peak_gpu_memory_gib=torch.cuda.max_memory_allocated() / 2**30,
                       peak_gpu_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    print(json.dumps(figures))
    return figures


def _fell(figures: dict) -> bool:
    first, last = figures["loss_first"], figures["loss_last"]
    return first is not None and last is not None and math.isfinite(last) and last < first


def resnet50_anchor(num_classes: int):
    """torchvision's ResNet50 as it ships, for 1-channel images (its 7x7/2 stem with one input channel)."""
    import torchvision
    from torch import nn

    model = torchvision.models.resnet50(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def _step_times(ctx: Context, store: Path) -> dict:
    """Median step of R2CNN, its CNN-only twin and torchvision's ResNet50 on the same device, taking turns on the
    same batches (the anchor on random images of the canvas' size), each in the preset's precision."""
    import statistics

    import torch

    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore
    from r2cnn.engine.factory import build_model, build_transform
    from r2cnn.engine.precision import amp_dtype
    from r2cnn.engine.timing import make_step, timed
    from r2cnn.engine.config import make_config
    from r2cnn.engine.optim import build_optimizer

    device = torch.device(ctx.device)
    configs = {k: make_config(_train_options(ctx, p, store, ctx.work / "unused")) for k, p in
               (("R2CNN", PRESET), ("CNN-only", TWIN))}
    data = SketchStore(str(store))
    torch.manual_seed(0)
    models = {k: build_model(c, len(data.classes), pretrained=False).to(device) for k, c in configs.items()}
    canvas = models["R2CNN"].raster_size
    models["ResNet50"] = resnet50_anchor(len(data.classes)).to(device)
    configs["ResNet50"] = configs["CNN-only"]
    batch_size = configs["R2CNN"]["batch_size"]
    n = ctx.sizes.warmup_steps + ctx.sizes.timed_steps
    loader = make_loader(data, "train", batch_size=batch_size, transform=build_transform(configs["R2CNN"], True),
                         shuffle=True, drop_last=True, num_workers=ctx.sizes.workers
                         if ctx.sizes.workers is not None else configs["R2CNN"]["num_workers"],
                         raster_size=canvas, raster_eps=models["R2CNN"].raster_eps)
    batches = [b.to(device) for _, b in zip(range(n), loader)]
    del loader
    images = torch.rand(batch_size, 1, canvas, canvas, generator=torch.Generator().manual_seed(0)).to(device)
    inputs = {"R2CNN": lambda b: b, "CNN-only": lambda b: b, "ResNet50": lambda b: images}
    steps = {k: make_step(m.train(), build_optimizer(configs[k], m), device, amp_dtype(configs[k], device))
             for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    if len(batches) < n:
        raise Failed(f"the store gave {len(batches)} batches of {batch_size}; timing needs {n}")
    for i, batch in enumerate(batches):
        for k, step in steps.items():  # taking turns: whatever else runs falls on each model alike
            t = timed(lambda: step(inputs[k](batch), batch.labels), device)
            if i >= ctx.sizes.warmup_steps:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"batch_size": batch_size, "canvas": canvas, "timed_steps": len(times["R2CNN"]),
           "precision": str(amp_dtype(configs["R2CNN"], device) or torch.float32).replace("torch.", ""),
           "step_ms": {k: 1000 * v for k, v in med.items()},
           "r2cnn_over_resnet50": med["R2CNN"] / med["ResNet50"],
           "cnn_over_resnet50": med["CNN-only"] / med["ResNet50"],
           "r2cnn_over_cnn": med["R2CNN"] / med["CNN-only"],
           "goal_r2cnn_over_resnet50_max": GOAL_OVER_RESNET50,
           # the rehearsal's tiny R2CNN against a full ResNet50 says nothing about the goal
           "goal_met": None if ctx.quick else med["R2CNN"] / med["ResNet50"] <= GOAL_OVER_RESNET50}
    if ctx.cuda:
        out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(out))
    return out


def section_train(ctx: Context) -> None:
    from r2cnn.data.loader import make_loader  # noqa: F401  (import errors surface before the store is built)

    if ctx.cuda:
        ctx.require_cuda()
    start = time.perf_counter()
    store = _store(ctx)
    ctx.record(store={"path": "scratch", "seconds": time.perf_counter() - start})
    runs = {}
    for preset in (PRESET, TWIN):
        runs[preset] = _train_once(ctx, preset, store)
        ctx.record(runs=runs)
    if ctx.cuda and ctx.sizes.fp16_steps:
        from r2cnn.engine.checkpoint import load_checkpoint

        fp16 = _train_once(ctx, PRESET, store, f"{PRESET}-fp16", amp="fp16", steps=ctx.sizes.fp16_steps)
        last = load_checkpoint(str(ctx.work / "train" / f"{PRESET}-fp16" / "last.pt"), training_state=True)
        scale = (last.get("scaler") or {}).get("scale")  # the GradScaler's loss scale after the run
        fp16["grad_scale"] = None if scale is None else float(scale)
        ctx.record(fp16_gradscaler=fp16)
    else:
        ctx.record(fp16_gradscaler="skipped: fp16 autocast and the GradScaler are CUDA only")
    speed = _step_times(ctx, store)
    ctx.record(step_vs_resnet50=speed)
    r = runs[PRESET]
    goal = {None: "n/a in the rehearsal", True: "met", False: "MISSED"}[speed["goal_met"]]
    ctx.record(headline=f"R2CNN loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, "
                        f"{r['steps_per_s'] or float('nan'):.1f} steps/s; step {speed['r2cnn_over_resnet50']:.2f}x "
                        f"ResNet50 (goal <= {GOAL_OVER_RESNET50}x: {goal})")
    checked = dict(runs)
    if isinstance(ctx.figures.get("fp16_gradscaler"), dict):
        checked[f"{PRESET} fp16"] = ctx.figures["fp16_gradscaler"]
    flat = [f"{name} ({f['loss_first']} -> {f['loss_last']})" for name, f in checked.items() if not _fell(f)]
    if flat:
        raise Failed("the loss did not fall for " + ", ".join(flat))


def section_dry_runs(ctx: Context) -> None:
    from r2cnn.experiments import dryrun, execute
    from r2cnn.experiments.spec import load_spec

    if ctx.cuda:
        ctx.require_cuda()
    # the rehearsal plans every row of the paper's specs (sizes, paper-scale steps) without timing ResNet50s on the
    # CPU, and times the CPU spec's models (the same measurement code)
    runs = [(name, 2 if not ctx.quick else 0, {}) for name in DRY_RUN_SPECS]
    if ctx.quick:
        runs.append(("table3-cpu", 1, {"batch_size": 8}))
    specs = {}
    for name, measure_steps, overrides in runs:
        print(f"\n== r2cnn experiment {name} --dry-run --device {ctx.device} --measure-steps {measure_steps}"
              + "".join(f" --set {k}={v}" for k, v in overrides.items()), flush=True)
        start = time.perf_counter()
        # what `r2cnn experiment SPEC --dry-run` runs without --data (r2cnn.commands.experiment)
        spec = load_spec(name)
        budget = execute.Budget(overrides=overrides)
        rows = dryrun.dry_run_without_data(lambda data: execute.plan(spec, data, budget, None),
                                           measure_steps=measure_steps, device=ctx.device)
        print(dryrun.format_dry_run(rows, ctx.device, reference=spec.reference))
        hours = [r["paper_scale"]["estimate_seconds"] / 3600 for r in rows
                 if r["paper_scale"]["estimate_seconds"] is not None]
        specs[name] = {"seconds": time.perf_counter() - start, "paper_scale_hours": sum(hours) if hours else None,
                       "rows": [{"id": r["id"], "preset": r["preset"], "runner": r["runner"],
                                 "step_ms": None if r["step_seconds"] is None else 1000 * r["step_seconds"],
                                 "paper_subruns": r["paper_scale"]["subruns"],
                                 "paper_steps_per_subrun": r["paper_scale"]["steps_per_subrun"],
                                 "paper_scale_hours": None if r["paper_scale"]["estimate_seconds"] is None
                                 else r["paper_scale"]["estimate_seconds"] / 3600} for r in rows]}
        ctx.record(specs=specs)
    unit = "GPU-hours" if ctx.cuda else "hours on this CPU"
    print(f"\npaper-scale {unit} (training steps only, one device; the tables above give each row):")
    for name, s in specs.items():
        total = s["paper_scale_hours"]
        print(f"  {name}: " + ("not measured" if total is None else f"{total:,.0f} {unit} ({total / 24:,.1f} days)"))
    ctx.record(unit=unit, headline="; ".join(
        f"{n} {s['paper_scale_hours']:,.0f} {unit}" if s["paper_scale_hours"] else f"{n} not timed"
        for n, s in specs.items()))


def _checkpoint(ctx: Context) -> tuple[Path, str]:
    """Section 4's R2CNN checkpoint, or a short run's when section 4 left none."""
    trained = ctx.work / "train" / PRESET / "best.pt"
    if trained.is_file():
        return trained, "section 4's run"
    own = _train_once(ctx, PRESET, _store(ctx), "export-own", steps=5)
    return Path(own["checkpoint"]), "a 5-step run of its own (section 4 left no checkpoint)"


def section_export(ctx: Context) -> None:
    import numpy as np

    import r2cnn
    from r2cnn.data.builtin import generate
    from r2cnn.export import export_checkpoint

    if ctx.cuda:
        ctx.require_cuda()
    checkpoint, source = _checkpoint(ctx)
    onnx_path = ctx.work / "export" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    export_checkpoint(checkpoint, "onnx", onnx_path)
    ctx.record(checkpoint=source, export_s=time.perf_counter() - start, onnx_mb=onnx_path.stat().st_size / 1e6)
    models = {"device": r2cnn.load(checkpoint, ctx.device), "cpu": r2cnn.load(checkpoint, "cpu"),
              "onnx": r2cnn.load(onnx_path)}
    k = len(models["cpu"].classes)
    sketches = generate(math.ceil(ctx.sizes.predict_sketches / 12), seed=123)[:ctx.sizes.predict_sketches]
    probs = {}
    top1 = {}
    for name, model in models.items():
        preds = [model.predict(s, top_k=k) for s in sketches]
        probs[name] = np.array([[dict(zip(p.labels, p.probabilities))[c] for c in model.classes] for p in preds])
        top1[name] = [p.label for p in preds]
    # the CUDA convolutions run in TF32 (torch's default for cuDNN), hence a looser bound than onnxruntime's
    bounds = {"device": 2e-2, "onnx": 1e-3}
    parity = {}
    for name in ("device", "onnx"):
        diff = float(np.abs(probs[name] - probs["cpu"]).max())
        parity[f"{name}_vs_cpu"] = {"max_abs_probability_diff": diff, "bound": bounds[name],
                                    "top1_agree": sum(a == b for a, b in zip(top1[name], top1["cpu"])),
                                    "sketches": len(sketches)}
    ctx.record(parity=parity, device=ctx.device, headline=", ".join(
        f"{n}: max |dp| {p['max_abs_probability_diff']:.1e}, top-1 {p['top1_agree']}/{p['sketches']}"
        for n, p in parity.items()))
    print(json.dumps(parity, indent=1))
    bad = [n for n, p in parity.items() if p["max_abs_probability_diff"] > p["bound"]]
    if bad:
        raise Failed("probabilities differ beyond the bound: " + ", ".join(
            f"{n} {parity[n]['max_abs_probability_diff']:.2e} > {parity[n]['bound']:g}" for n in bad))


def section_nccl(ctx: Context) -> None:
    import torch

    if ctx.cuda:
        ctx.require_cuda()
        gpus = torch.cuda.device_count()
        ctx.record(gpus=gpus)
        if gpus < 2:
            raise Skip(f"{gpus} CUDA device visible: a 2-rank NCCL run needs 2")
        backend, extra = "nccl", ["--set", "model_options.pretrained=null", "--workers", "4"]
    else:
        # the rehearsal: the same launch over gloo on the CPU, tiny model
        backend, extra = "gloo", ["--set", f"model_options={json.dumps(dict(TINY_OPTIONS, pretrained=None))}",
                                  "--workers", "0", "--batch-size", "8"]
    store = _store(ctx)
    out = ctx.work / "ddp"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "r2cnn", "train", "--preset", PRESET, "--data", str(store), "--out", str(out), "--overwrite",
            "--steps", str(ctx.sizes.ddp_steps), "--device", ctx.device, "--log-every", "1", "--print-every", "0",
            *extra]
    print(" ".join(argv), flush=True)
    start = time.perf_counter()
    code = subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] \
        if (out / "log.jsonl").is_file() else []
    starts = [r for r in records if r.get("event") == "start"]
    done = [r for r in records if r.get("event") == "done"]
    ctx.record(backend=backend, rehearsal=not ctx.cuda, exit_code=code, wall_s=wall,
               world_size=starts[0].get("world_size") if starts else None, steps=done[0]["step"] if done else None,
               headline=f"{backend}: 2 ranks, exit code {code}" + (" (CPU rehearsal)" if not ctx.cuda else ""))
    if code != 0 or not done or ctx.figures["world_size"] != 2:
        raise Failed(f"torchrun with 2 ranks ({backend}) exited with {code}"
                     + ("" if done else ", no 'done' event in its log"))


TASKS = {"collect": collect, "env": section_env, "cuda-tests": section_cuda_tests, "raster": section_raster,
         "train": section_train, "dry-runs": section_dry_runs, "export": section_export, "nccl": section_nccl}


def _child(argv: list[str]) -> int:
    """``python -m r2cnn.bench.gpu TASK CONTEXT RESULT``: run one task, leave its status and figures in RESULT."""
    task, context, result = argv
    ctx = Context(Path(context), Path(result))
    os.chdir(ctx.root)
    try:
        TASKS[task](ctx)
        status = "ran"
    except Skip as e:
        status = f"skipped: {e}"
    except Failed as e:
        status = f"failed: {e}"
    except BaseException as e:  # noqa: BLE001 - recorded as the section's failure, traceback in its log
        traceback.print_exc()
        status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    ctx.write(status)
    print(f"\n== status: {status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
