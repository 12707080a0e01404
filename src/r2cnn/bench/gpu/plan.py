"""The plan of ``r2cnn bench gpu``: its seven sections with their caps, the run's budget, the sizes each section
works at, and each section's expected time on one H100, from the counts found and the assumptions stated in
:data:`ASSUMPTIONS`."""

from __future__ import annotations

import math
from dataclasses import dataclass


BUDGET_S = 480.0  # the whole run on one H100: the 8 minutes the check is sized for
QUICK_BUDGET_S = 1800.0  # the CPU rehearsal on a busy 2-core machine


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
