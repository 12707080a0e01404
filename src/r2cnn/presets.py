"""Named training configurations: the paper's (Sec. 4.1, Tables 1-3) and a fast CPU pair.

A preset is a plain dict (JSON types only; it is stored in checkpoints as the run's config):

- ``description``; ``model`` (a :func:`r2cnn.models.create` name) and ``model_options`` (its options);
- ``batch_size``, ``optimizer`` ("adam"), ``lr``, ``weight_decay``, ``epochs``, ``lr_schedule`` ("constant",
  "cosine" or ``{"name": ..., "warmup": steps or fraction, "warmup_cap": fraction}``), ``grad_clip`` (max gradient
  norm or None);
- ``transform`` / ``eval_transform``: keyword arguments of ``make_transform(train=True / False, ...)``;
- ``num_workers`` (data-loader processes), ``amp`` ("bf16", "fp16" or "none"; on CUDA as named; on a CPU bf16 only
  where it is native and only for the CNN, fp32 otherwise: :mod:`r2cnn.engine.precision`).

Warm-up in short runs: a warm-up lasts at most 10 % of the run (``warmup_cap``,
:func:`r2cnn.engine.optim.parse_schedule`): ``min(warmup, 0.1 x the run's steps)``, and with a time budget
(``--max-minutes``, ``r2cnn demo``) it also ends once 10 % of the budget has passed. The CPU presets' 100 steps are
thus whole in runs of 1,000 steps or more, and a 35-step run warms up for 4 (35 steps of cpu-r2cnn on 720 built-in
sketches a class: valid top-1 0.545 with the cap, 0.21 without; :data:`r2cnn.engine.optim.WARMUP_CAP`).
``"warmup_cap": 1`` keeps a warm-up as given. The paper's presets have no warm-up (a constant
rate), so the cap never changes them.

Paper settings (Sec. 4.1): Adam, batch 48, lr 1e-4 on QuickDraw and 5e-5 on TU-Berlin; TU-Berlin sketches
RDP-simplified to at most 448 points and augmented by horizontal reflection, stroke removal and deformation
(following Sketch-a-Net). The paper gives no epoch count, schedule, clipping or augmentation probabilities: those
values below are ours. The paper's ResNet50 starts from ImageNet weights (Table 3), so the ``qd-``/``tub-``
presets of the paper's ResNet50 models carry the model option ``pretrained="imagenet"``: torchvision's cached
``resnet50-*.pth`` (nothing is downloaded; without the file training stops with a line naming it, and ``--set
model_options.pretrained=null`` trains from scratch). On TU-Berlin the paper fine-tunes models pre-trained on
QuickDraw (Sec. 4.2): ``r2cnn train --preset tub-... --init-from QUICKDRAW_CHECKPOINT``, which takes the place of the
ImageNet weights (the file is then not needed).
"""

from __future__ import annotations

import copy

from r2cnn.errors import R2CNNError, did_you_mean
from r2cnn.model_specs import get_spec

_QUICKDRAW = dict(batch_size=48, optimizer="adam", lr=1e-4, weight_decay=0.0, epochs=5, lr_schedule="constant",
                  grad_clip=None, transform={}, eval_transform={}, num_workers=8, amp="bf16")
_TUBERLIN_TRANSFORM = dict(max_points=448, flip=0.5, stroke_removal=0.3, deform=0.5)
_TUBERLIN = dict(_QUICKDRAW, lr=5e-5, epochs=30, transform=_TUBERLIN_TRANSFORM, eval_transform={"max_points": 448})

# (model = preset suffix, paper row, tables it appears in); Table 2 was run on TU-Berlin only, Table 3 is QuickDraw
_PAPER_MODELS = [
    ("cnn-sketchanet", "Sketch-a-Net v2 (ours)", (1, 3)),
    ("cnn-resnet50", "ResNet50", (1, 3)),
    ("r2cnn-sketchanet", "Sketch-R2CNN (Sketch-a-Net v2)", (1, 3)),
    ("r2cnn-resnet50", "Sketch-R2CNN (ResNet50)", (1, 2, 3)),
    ("two-branch-late-fusion", "Two-Branch-Late-Fusion", (2, 3)),
    ("attentive-resnet50", "Attentive-ResNet50", (2,)),
    ("random-stroke-order", "Random-Stroke-Order", (2,)),
    ("attention-sketching-order", "Attention-using-Sketching-Order", (2,)),
    ("two-branch-early-fusion", "Two-Branch-Early-Fusion", (2,)),
]
# Beyond the paper, on both datasets: the Kaggle-style time-encoded image (the strongest cheap rival of the RNN
# attention) and R2CNN's attention next to it.
_EXTRA_MODELS = [
    ("time-encoded-resnet50", "time-encoded image (binary, stroke order, point order), ResNet50; not in the paper"),
    ("attention-time-encoded-resnet50", "R2CNN attention next to the time-encoded image, ResNet50; not in the paper"),
]

# The CPU pair: same backbone and canvas, so their difference is the RNN + NLR attention. A ResNet18 of half
# width with a 3x3/2 stem and no max-pool sees a 64x64 canvas at 32x32 in its first stage (torchvision's stem
# would leave 16x16); on 2 cores its training step (batch 64) took 174 ms against 357 ms for the full-width
# torchvision ResNet18 at 64x64.
# The encoder is a 2x64 BiLSTM, the largest within the step limit. Its cost grows with H: the R2CNN step is ~1.2x
# the CNN-only step at hidden 32, ~1.4x at 64 and ~1.54x at 128 (limit: 1.5x). On qd5 at 3 epochs
# (docs/experiments/qd5-r2cnn-study.toml) hidden 32 and 64 are within noise of each other; 64 is the nearer to the
# paper's 512.
_CPU_MODEL_OPTIONS = dict(canvas=64, eps=1.0, width=32, stem="small", hidden=64, layers=2, dropout=0.5)
# The RNN learns at 10x the CNN's learning rate (encoder_lr_scale; the CNN-only twin and the designs without an
# RNN carry the entry too, where it changes nothing, so the pair's settings differ only in the model). At one rate
# the trained attention stayed within 0.45-0.72 (std 0.036-0.064 within a sketch, seeds 0-6) after 468 steps: the CNN
# saw an almost uniform image. At 10x the spread grows ~1.6x (0.059-0.102); on qd5 at 3 epochs R2CNN's paired lead
# over the CNN-only twin went from -0.00 [-0.26, +0.26] (seeds 0-6) to +0.30 [+0.06, +0.53] points (seeds 0-9; the
# fresh seeds 7-9 alone: +0.28), with half the seed spread (docs/experiments/qd5-r2cnn-study.toml: r2cnn, r2cnn-lr1).
_CPU_RNN_LR = dict(encoder_lr_scale=10.0)
# amp="bf16": on a CPU with native bf16 (AVX512-BF16, AMX) the CNN trains under bf16 autocast, the RNN in fp32
# (r2cnn.engine.precision); elsewhere fp32. On the 2-core EPYC the cpu-cnn step went from 300 to 185 ms and the
# cpu-r2cnn step to 250 ms, 1.45x the fp32 ResNet18 anchor's sketches/s (`r2cnn bench train`).
_CPU = dict(batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=4,
            lr_schedule={"name": "cosine", "warmup": 100}, grad_clip=5.0, transform={}, eval_transform={},
            num_workers=1, amp="bf16")


def _build() -> dict[str, dict]:
    presets: dict[str, dict] = {}
    for dataset, base, where, tables in (("qd", _QUICKDRAW, "QuickDraw", {3}), ("tub", _TUBERLIN, "TU-Berlin", {1, 2})):
        for model, row, in_tables in _PAPER_MODELS:
            shown = sorted(tables & set(in_tables))
            if not shown:
                continue
            preset = copy.deepcopy(base)
            table_list = " and ".join(map(str, shown))
            imagenet = get_spec(model).backbone == "resnet50"
            preset.update(description=f"paper, {where}: {row} (Table{'s' if len(shown) > 1 else ''} {table_list})"
                          + ("; ResNet50 from ImageNet weights (needs torchvision's resnet50 file)" if imagenet else ""),
                          model=model, model_options={"pretrained": "imagenet"} if imagenet else {})
            # e.g. Random-Stroke-Order (Table 2) needs shuffled strokes at training and evaluation time
            needs = get_spec(model).transform_requirements
            preset["transform"] = {**preset["transform"], **needs}
            preset["eval_transform"] = {**preset["eval_transform"], **needs}
            presets[f"{dataset}-{model}"] = preset
        for model, row in _EXTRA_MODELS:
            presets[f"{dataset}-{model}"] = dict(copy.deepcopy(base), model=model, model_options={},
                                                 description=f"{where}: {row}")
    presets["cpu-r2cnn-paper"] = dict(copy.deepcopy(_CPU), **_CPU_RNN_LR, model="r2cnn-resnet18",
                                      model_options=dict(_CPU_MODEL_OPTIONS),
                                      description="fast CPU: Sketch-R2CNN as in the paper (the attention is the "
                                                  "CNN's only input), BiLSTM 2x64 (10x lr) + half-width ResNet18 at "
                                                  "64x64")
    presets["cpu-cnn"] = dict(copy.deepcopy(_CPU), **_CPU_RNN_LR, model="cnn-resnet18",
                              model_options=dict(_CPU_MODEL_OPTIONS),
                              description="fast CPU: CNN-only twin of cpu-r2cnn (same ResNet18 and canvas, binary "
                                          "raster)")
    # CPU twins of Table 2's designs and of the time-encoded rows: cpu-r2cnn's backbone, canvas, encoder and budget.
    for name, model, text in _CPU_TWINS:
        preset = dict(copy.deepcopy(_CPU), **_CPU_RNN_LR, model=model, model_options=dict(_CPU_MODEL_OPTIONS),
                      description=f"fast CPU twin of cpu-r2cnn: {text}")
        needs = get_spec(model).transform_requirements
        preset["transform"] = {**preset["transform"], **needs}
        preset["eval_transform"] = {**preset["eval_transform"], **needs}
        presets[name] = preset
    # The CPU preset of Sketch-R2CNN is the design kept on validation (docs/experiments.md "The CPU design and its
    # evidence"): still RNN -> NLR -> CNN end to end, its NLR drawing the learned attention next to the binary,
    # stroke-order and point-order channels, and in training half the sketches get those fixed channels drawn as
    # zeros (model option fixed_dropout), so that the CNN must classify them from the attention alone. The
    # attention-design study chose the design without the dropout first (cpu-attention-time-encoded: mean top-1 over
    # qd340-mini and qd5 validation 61.43 against 58.58 for the paper's design, cpu-r2cnn-paper); with the dropout,
    # validation top-1 went from 83.88 to 89.49 on qd5 at 320 sketches a class (3 seeds) and from 27.70 to 31.29 on
    # qd340-mini (docs/experiments/qd5-low-attention-tuning.toml). Its step is 1.36x cpu-cnn's (`r2cnn bench
    # train`). The tables' CPU specs use cpu-r2cnn-paper, the paper's system.
    presets["cpu-r2cnn"] = dict(copy.deepcopy(presets["cpu-attention-time-encoded"]),
                                model_options=dict(_CPU_MODEL_OPTIONS, fixed_dropout=0.5),
                                description="fast CPU: Sketch-R2CNN, its attention (BiLSTM 2x64, 10x lr) drawn next "
                                            "to the time-encoded image, whose channels are dropped for half the "
                                            "training sketches, + half-width ResNet18 at 64x64")
    # C > 1 attention channels (the paper: C = 1; its released code: 8): the CNN's first convolution takes C inputs
    presets["cpu-r2cnn-c3"] = dict(copy.deepcopy(presets["cpu-r2cnn-paper"]),
                                   model_options=dict(_CPU_MODEL_OPTIONS, in_channels=3),
                                   description="fast CPU twin of cpu-r2cnn-paper: C = 3 attention channels (beyond the "
                                               "paper)")
    # --- Table 1's classic and early deep baselines (r2cnn.classic.presets) ---
    from r2cnn.classic.presets import table1_presets
    presets.update(table1_presets(_TUBERLIN, _CPU))
    # --- end of Table 1 baselines ---
    return presets


_CPU_TWINS = [  # (preset, model, description)
    ("cpu-attentive", "attentive-resnet18", "Attentive-ResNet (Table 2)"),
    ("cpu-random-stroke-order", "random-stroke-order-resnet18", "Random-Stroke-Order (Table 2)"),
    ("cpu-sketching-order", "attention-sketching-order-resnet18", "Attention-using-Sketching-Order (Table 2)"),
    ("cpu-late-fusion", "two-branch-late-fusion-resnet18", "Two-Branch-Late-Fusion (Tables 2, 3)"),
    ("cpu-early-fusion", "two-branch-early-fusion-resnet18", "Two-Branch-Early-Fusion (Table 2)"),
    ("cpu-time-encoded", "time-encoded-resnet18", "time-encoded image, binary + stroke + point order (Kaggle style)"),
    ("cpu-attention-time-encoded", "attention-time-encoded-resnet18",
     "R2CNN attention next to the time-encoded image (beyond the paper)"),
    # The attention-design study's designs, each still Sketch-R2CNN (RNN -> NLR -> CNN, end to end), so any could be
    # cpu-r2cnn; docs/experiments/*-attention-tuning.toml says why each is tried.
    ("cpu-r2cnn-stroke", "r2cnn-stroke-resnet18", "Sketch-R2CNN with stroke-level attention, one value per stroke "
                                                 "(beyond the paper)"),
    ("cpu-attention-replaces-binary", "attention-replaces-binary-resnet18",
     "the time-encoded image whose binary channel is R2CNN's attention (beyond the paper)"),
    ("cpu-r2cnn-contrast", "r2cnn-contrast-resnet18",
     "Sketch-R2CNN with its attention standardised within each sketch (beyond the paper)"),
    ("cpu-attention-gated-time", "attention-gated-time-resnet18",
     "R2CNN attention next to the time-encoded order channels multiplied by it (beyond the paper)"),
]


PRESETS: dict[str, dict] = _build()

# What to train on a CPU: the Sketch-R2CNN design kept on validation and its CNN-only twin (the pair `r2cnn demo`
# compares). `r2cnn presets` lists them first, marked.
RECOMMENDED = ("cpu-r2cnn", "cpu-cnn")


def preset_groups() -> list[tuple[str, list[str]]]:
    """Every preset once, in the groups ``r2cnn presets`` prints, as ``(title, names)``: the recommended CPU pair
    (:data:`RECOMMENDED`); the paper's systems (its settings, Sec. 4.1, at the paper's scale, and its design on a
    CPU, ``cpu-r2cnn-paper``); ablations and other designs (the CPU twins of Table 2's rows and the designs beyond
    the paper); the classic and early baselines of Table 1 (:mod:`r2cnn.classic.presets`)."""
    from r2cnn.classic.presets import table1_presets

    classics = set(table1_presets(_TUBERLIN, _CPU))
    paper = [n for n, p in PRESETS.items() if p["description"].startswith("paper") or n == "cpu-r2cnn-paper"]
    taken = {*RECOMMENDED, *paper, *classics}
    return [
        ("recommended on a CPU: Sketch-R2CNN (the design kept on validation) and its CNN-only twin",
         list(RECOMMENDED)),
        ("the paper's systems (qd-: QuickDraw, tub-: TU-Berlin; GPU scale) and its design on a CPU", paper),
        ("ablations and other designs (CPU twins of Table 2; beyond the paper)",
         [n for n in PRESETS if n not in taken]),
        ("classic and early baselines (Table 1)", [n for n in PRESETS if n in classics]),
    ]


def get_preset(name: str) -> dict:
    """A deep copy of preset ``name`` (callers may change it)."""
    if name not in PRESETS:
        raise R2CNNError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def cnn_twin(name: str) -> str | None:
    """The CNN-only preset with the same backbone and canvas as R2CNN preset ``name`` (for benchmarks and
    side-by-side comparisons), or None."""
    twin = name.replace("r2cnn", "cnn", 1) if "r2cnn" in name else None
    if twin not in PRESETS and name in PRESETS and name.startswith(("cpu-r2cnn-", "cpu-attention-")):
        twin = "cpu-cnn"  # the attention designs: cpu-cnn's backbone, canvas and options
    return twin if twin in PRESETS else None
