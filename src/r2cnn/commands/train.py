"""``r2cnn train``: train a preset on a prepared store (one process, or DDP under torchrun)."""

from __future__ import annotations

import argparse
import contextlib
import os
import re

HELP = "train a model from a preset on a prepared store (torchrun --nproc_per_node N -m r2cnn train ... for DDP)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.commands.options import add_device, non_negative_int, positive_float, positive_int

    p.add_argument("--preset",
                   help="named configuration (see `r2cnn presets`); required, except with --resume (default: none)")
    p.add_argument("--data", required=True, help="store directory made by `r2cnn prepare`")
    p.add_argument("--out", required=True, help="run directory: log.jsonl, last.pt, best.pt")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="epochs (default: the preset's)")
    length.add_argument("--steps", type=positive_int, help="total optimiser steps instead of epochs (default: epochs)")
    p.add_argument("--max-minutes", type=positive_float,
                   help="also stop after this wall-clock time, not reproducible (default: no time limit)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    again.add_argument("--overwrite", action="store_true",
                       help="start afresh in an OUT that holds a run, removing its log, checkpoints and tensorboard "
                            "folder (without it or --resume, such an OUT is refused)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sample order, augmentation and initialisation")
    p.add_argument("--fold", type=int, help="k-fold stores (TU-Berlin): fold K is the test split (default: none)")
    p.add_argument("--init-from", metavar="CKPT",
                   help="start from a checkpoint's weights except the classifier (default: fresh weights)")
    add_device(p)
    p.add_argument("--workers", type=non_negative_int, help="data-loader worker processes (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int,
                   help="per process; global batch = this x processes (default: the preset's)")
    p.add_argument("--lr", type=positive_float, help="learning rate (default: the preset's)")
    p.add_argument("--amp", choices=["bf16", "fp16", "none"],
                   help="mixed precision: on CUDA autocast to bf16 or fp16; on a CPU bf16 runs the CNN in bf16 where "
                        "the processor has native bf16 (AVX512-BF16, AMX), else fp32, and fp16 is CUDA only; none: "
                        "fp32 (default: the preset's, bf16 for the presets)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a preset entry (see `r2cnn presets NAME`); VALUE is JSON (1e-3, true, null, "
                        "[1, 2], {\"hidden\": 64}, \"text\") or a bare word taken as text (cosine); a JSON object "
                        "merges into the preset's, e.g. --set model_options='{\"hidden\": 64}' keeps its canvas, as does "
                        "KEY.SUB=VALUE (--set model_options.hidden=64); encoder_lr_scale=S trains the RNN at "
                        "S x lr (default: the preset's, e.g. cpu-r2cnn's 10, else 1)")
    p.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs tensorboard)")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="N",
                   help="also write last.pt every N steps (0: at epoch ends only)")
    p.add_argument("--log-every", type=positive_int, default=10, metavar="N", help="log training metrics every N steps")
    p.add_argument("--print-every", type=non_negative_int, metavar="N",
                   help="print a progress line (loss, accuracy, sketches/s, time left) every N steps; 0: never "
                        "(default: when stdout is not a terminal, every 50 steps or 30 s)")


def options_from_args(args):
    from r2cnn.commands.options import resolve_device
    from r2cnn.engine.train import TrainOptions
    from r2cnn.errors import R2CNNError

    device = resolve_device(args.device)
    if not args.resume and not args.preset:
        raise R2CNNError("--preset is required (see `r2cnn presets`), unless --resume")
    return TrainOptions(preset=args.preset, data=args.data, out=args.out, epochs=args.epochs, steps=args.steps,
                        max_minutes=args.max_minutes, resume=args.resume, overwrite=args.overwrite, seed=args.seed,
                        fold=args.fold, init_from=args.init_from, device=device, workers=args.workers,
                        batch_size=args.batch_size, lr=args.lr, amp=args.amp, tensorboard=args.tensorboard,
                        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                        print_every=args.print_every,
                        config_overrides=parse_overrides(args.overrides))


# A bare word (a schedule or optimiser name) needs no JSON quotes; anything else must be JSON.
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs: VALUE is JSON, or a bare word (``cosine``) taken as a string. Anything else, such as
    ``{bad``, is an error: taking it as a string would train with a value the user did not mean."""
    import json

    from r2cnn.errors import R2CNNError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise R2CNNError(f"--set expects KEY=VALUE, not {item!r}")
        try:
            out[key] = json.loads(value)
        except RecursionError:
            raise R2CNNError(f"--set {key}: the value is nested too deeply (a preset entry has at most "
                             f"{_MAX_DEPTH} levels)") from None
        except ValueError as e:  # JSONDecodeError; or an integer of thousands of digits
            if not _BARE_WORD.fullmatch(value):
                where = (f"{e.msg} at character {e.pos}" if isinstance(e, json.JSONDecodeError)
                         else "a number of thousands of digits")
                raise R2CNNError(f"--set {key}: {_shorten(value)!r} is not JSON ({where}); quote text as JSON, "
                                 f"e.g. --set {key}='\"...\"'") from None
            out[key] = value
        if _depth(out[key]) > _MAX_DEPTH:
            raise R2CNNError(f"--set {key}: the value is nested too deeply (a preset entry has at most "
                             f"{_MAX_DEPTH} levels)")
    return out


# JSON nesting a preset entry may have (model_options.pretrained is 2 deep); deeper values only reach code that
# recurses (merging, copying, checkpoints) and would fail there
_MAX_DEPTH = 8


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0); iterative, so any depth json accepted is measured."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def run(args) -> int:
    from r2cnn.presets import get_preset

    preset = get_preset(args.preset) if args.preset else None
    with one_run_per_folder(args.out):
        if preset is not None and preset.get("runner", "neural") == "classic":
            return _run_classic(args, preset)
        from r2cnn.engine.train import train

        result = train(options_from_args(args))
    if result.get("rank", 0) == 0:
        best = result["best"]
        if best is not None:
            print(f"best valid top-1 {best['value']:.4f} at step {best['step']}: {result['best_path']}")
        print(f"last checkpoint: {result['last']}")
        if best is not None and result.get("valid"):  # None when a resumed run had nothing left to evaluate
            warn_at_chance(best["value"], result["valid"]["count"], len(result["classes"]), result["step"])
    return 0


def warn_at_chance(top1: float, count: int, num_classes: int, steps: int, what: str = "best valid top-1") -> None:
    """One line on stderr when a trained model's top-1 is within noise of chance (:mod:`r2cnn.engine.chance`)."""
    import sys

    from r2cnn.engine.chance import chance_warning

    warning = chance_warning(top1, count, num_classes, what=what,
                             causes=f"the model has not learned; likely too few steps ({steps}) or a learning rate "
                                    f"too low or too high for them (--lr; the lr column of log.jsonl)")
    if warning:
        print(warning, file=sys.stderr)


@contextlib.contextmanager
def one_run_per_folder(out: str):
    """The process that writes ``out`` (rank 0 under torchrun) holds its lock for the whole run, the lock
    ``r2cnn experiment`` takes on its folder: a second ``train`` or ``experiment`` into it is refused with one line
    naming the holder, and the kernel drops the lock when the process dies. Holding it, the run first removes the
    temporary files that killed runs left in ``out``."""
    from pathlib import Path

    from r2cnn.data.formats.common import remove_stale_parts
    from r2cnn.data.store import one_writer_at_a_time

    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with one_writer_at_a_time(Path(out), print, command="r2cnn train", wait=False):
        if Path(out).is_dir():
            remove_stale_parts(Path(out))
        yield


def _run_classic(args, preset: dict) -> int:
    """Classic Table 1 rows (hand-crafted features + SVM): :class:`r2cnn.classic.runner.ClassicRunner`."""
    from pathlib import Path

    from r2cnn.classic.runner import ClassicRunner

    preset.update(parse_overrides(args.overrides))
    model = ClassicRunner().train(preset, Path(args.data), Path(args.out), seed=args.seed, fold=args.fold,
                                  epochs=args.epochs, steps=args.steps, max_minutes=args.max_minutes,
                                  init_from=args.init_from, resume=args.resume)
    print(f"classic model: {model}")
    return 0
