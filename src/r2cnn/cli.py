"""The ``r2cnn`` command line: one sub-command per module in :mod:`r2cnn.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``r2cnn --help`` stays fast. A :class:`r2cnn.errors.R2CNNError`, a bad
option, an OS error on a path the user gave (a file in the way of an output folder, no permission) and a full or
read-only disk anywhere (:func:`r2cnn.errors.write_failure`; the project's writers name the file themselves) are
printed as one line (``r2cnn: error: ...``) with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from r2cnn.commands.bench import TARGETS as BENCH_TARGETS  # light registries: the lists below are made from them
from r2cnn.errors import R2CNNError, write_failure
from r2cnn.experiments.spec import BUILTIN as SPECS
from r2cnn.launch import launch_env

# name -> (module, one-line help). The help is repeated here so that `r2cnn --help` imports nothing heavy.
COMMANDS = {
    "prepare": ("r2cnn.commands.prepare", "build a packed, memory-mapped sketch store from files or folders"),
    "convert": ("r2cnn.commands.convert", "convert sketches between ndjson, npz, bin and svg"),
    "download": ("r2cnn.commands.download", "download QuickDraw files (resumable, size-checked)"),
    "train": ("r2cnn.commands.train", "train a model from a preset on a prepared store"),
    "evaluate": ("r2cnn.commands.evaluate", "evaluate a checkpoint: top-1/top-5, per class, confusion, partial sketches"),
    "predict": ("r2cnn.commands.predict", "classify sketch files with a checkpoint"),
    "presets": ("r2cnn.commands.presets", "list the named training configurations"),
    "bench": ("r2cnn.commands.bench", f"benchmarks ({', '.join(BENCH_TARGETS)}), each as a ratio to an anchor"),
    "visualize": ("r2cnn.commands.visualize", "attention figures (paper Figs. 3-6), stroke importance, deletion check"),
    "report": ("r2cnn.commands.report", "one static HTML page for a training run: curves, confusion, attention"),
    "serve": ("r2cnn.commands.serve", "a local web page to draw on, with live top-5 classes and attention"),
    "experiment": ("r2cnn.commands.experiment", f"run a table of the paper ({', '.join(SPECS)}, or a TOML spec): "
                                                "resumable, statistics"),
    "demo": ("r2cnn.commands.demo", "the main job: built-in data, train R2CNN and CNN-only, compare"),
    "export": ("r2cnn.commands.export", "export a checkpoint as ONNX or TorchScript, with its input contract"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r2cnn", description="Sketch-R2CNN: vector sketch recognition (Li et al., TVCG 2020)")
    from r2cnn.version import __version__
    parser.add_argument("--version", action="version", version=f"sketch-r2cnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default appended, where it has one the help does not already give
    (options whose default is "none" or "off" say in words what happens without them)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or default == []
                or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """A command's parser: help with defaults, and a bad option is a one-line :class:`R2CNNError` (the usage is
    one ``--help`` away) instead of argparse's usage block. Sub-command parsers inherit both."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise R2CNNError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _command_parser(name: str):
    module = importlib.import_module(COMMANDS[name][0])
    p = CommandParser(prog=f"r2cnn {name}", description=getattr(module, "HELP", COMMANDS[name][1]))
    module.add_arguments(p)
    if not issubclass(p.formatter_class, HelpFormatter):  # a command chose its own layout (e.g. a raw epilog)
        p.formatter_class = type(f"Defaults{p.formatter_class.__name__}", (HelpFormatter, p.formatter_class), {})
    return module, p


def _given_paths(args: argparse.Namespace) -> list[str]:
    """Every string the user passed as an option value or argument, as absolute paths."""
    values = []
    for value in vars(args).values():
        values.extend(value if isinstance(value, (list, tuple)) else [value])
    return [os.path.abspath(v) for v in values if isinstance(v, (str, os.PathLike)) and os.fspath(v)]


def _related(a: str, b: str) -> bool:
    """``a`` and ``b`` (absolute) are the same path, or one lies inside the other."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def user_path_error(error: OSError, args: argparse.Namespace | None) -> str | None:
    """One line for an OS error on a path the user gave, a path inside it or a folder on the way to it, else
    None: an OS error on any other path (the package's own files, a temporary folder) is a bug and keeps its
    traceback."""
    names = [os.fspath(n) for n in (error.filename, error.filename2) if n is not None]
    if args is None or not names:
        return None
    given = _given_paths(args)
    if not any(_related(os.path.abspath(n), g) for n in names for g in given):
        return None
    reason = error.strerror or type(error).__name__
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason += " (a file is where a folder is needed)"
    return f"{' -> '.join(names)}: {reason}"


def _reexec_with_launch_env(argv: list[str]) -> None:
    """Restart this process with :func:`~r2cnn.launch.launch_env` when one of its variables is unset (they act at
    start-up only); variables the user set keep their values. ``R2CNN_NO_REEXEC=1`` turns this off."""
    wanted = launch_env(argv[0])
    if all(k in os.environ for k in wanted) or os.environ.get("R2CNN_NO_REEXEC"):
        return
    env = {**wanted, **os.environ}
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
    if from_process:
        _reexec_with_launch_env(argv)
    args = None
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
    except (OSError, RuntimeError) as e:  # RuntimeError: torch's writers report a full disk as one
        line = user_path_error(e, args) if isinstance(e, OSError) else None
        disk = write_failure(e)
        if line is None and disk is not None:
            line = f"{disk.filename + ': ' if disk.filename else ''}cannot write ({disk.strerror or disk})"
        if line is None:
            raise
        print(f"r2cnn: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
