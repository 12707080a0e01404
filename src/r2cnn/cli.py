"""The ``r2cnn`` command line: one sub-command per module in :mod:`r2cnn.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``r2cnn --help`` stays fast. A :class:`r2cnn.errors.R2CNNError` is
printed as one line (``r2cnn: error: ...``) with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from r2cnn.errors import R2CNNError

# name -> (module, one-line help). The help is repeated here so that `r2cnn --help` imports nothing heavy.
COMMANDS = {
    "prepare": ("r2cnn.commands.prepare", "build a packed, memory-mapped sketch store from files or folders"),
    "convert": ("r2cnn.commands.convert", "convert sketches between ndjson, npz, bin and svg"),
    "download": ("r2cnn.commands.download", "download QuickDraw files (resumable, size-checked)"),
    "train": ("r2cnn.commands.train", "train a model from a preset on a prepared store"),
    "evaluate": ("r2cnn.commands.evaluate", "evaluate a checkpoint: top-1/top-5, per class, confusion, partial sketches"),
    "predict": ("r2cnn.commands.predict", "classify sketch files with a checkpoint"),
    "presets": ("r2cnn.commands.presets", "list the named training configurations"),
    "bench": ("r2cnn.commands.bench", "benchmarks (raster, train, data), each as a ratio to an anchor"),
    "demo": ("r2cnn.commands.demo", "the main job: built-in data, train R2CNN and CNN-only, compare"),
}

# Commands that train or benchmark start with these set (they act only at start-up, so the launcher restarts the
# process once to set them; a value the user set is kept):
# - glibc's malloc thresholds keep big tensors mapped between steps (docs/architecture.md "Performance");
# - OMP_WAIT_POLICY=PASSIVE: an idle OpenMP thread sleeps at once instead of spinning for up to ~300k iterations
#   (libgomp's default) after each parallel region. Spinning only pays on cores nobody else wants; on a shared
#   machine the spinning threads of one training took the cores from another (two concurrent trainings slowed each
#   other 7-16x). The regions that stay multi-threaded (convolutions, big GEMMs and element-wise ops) are long
#   against the microseconds it takes to wake a sleeping thread; the recurrent part, whose regions are not, runs on
#   fewer threads (r2cnn.models.encoder).
LAUNCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000",
              "OMP_WAIT_POLICY": "PASSIVE"}
_HEAVY = {"train", "bench", "evaluate", "demo"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r2cnn", description="Sketch-R2CNN: vector sketch recognition (Li et al., TVCG 2020)")
    from r2cnn import __version__
    parser.add_argument("--version", action="version", version=f"sketch-r2cnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _command_parser(name: str):
    module = importlib.import_module(COMMANDS[name][0])
    p = argparse.ArgumentParser(prog=f"r2cnn {name}", description=getattr(module, "HELP", COMMANDS[name][1]))
    module.add_arguments(p)
    return module, p


def _reexec_with_launch_env(argv: list[str]) -> None:
    """Restart this process with :data:`LAUNCH_ENV` when one of its variables is unset (they act at start-up only);
    variables the user set keep their values. ``R2CNN_NO_REEXEC=1`` turns this off."""
    if all(k in os.environ for k in LAUNCH_ENV) or os.environ.get("R2CNN_NO_REEXEC"):
        return
    env = {**LAUNCH_ENV, **os.environ}
    os.execve(sys.executable, [sys.executable, "-m", "r2cnn", *argv], env)


def main(argv: list[str] | None = None) -> int:
    from_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help / version / the usage error
        parser.print_help()
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name = argv[0]
    if from_process and name in _HEAVY:
        _reexec_with_launch_env(argv)
    try:
        module, p = _command_parser(name)
        args = p.parse_args(argv[1:])
        return int(module.run(args) or 0)
    except R2CNNError as e:
        print(f"r2cnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r2cnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `r2cnn presets | head`: the reader went away; stop quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
