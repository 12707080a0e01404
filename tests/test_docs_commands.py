"""Every command in README.md and docs/*.md works as written.

The commands are read from the Markdown at run time: every line of a ```bash (sh, shell, console) block, and the
lines of a plain ``` block that start with a program (``r2cnn``, ``make``, ``python``, ``pip``, ``torchrun`` ...);
a trailing ``\\`` joins the next line, ``# ...`` comments are dropped. ```python blocks are run as scripts.

- Default run (fast): every command parses with the exact flags it uses (each ``r2cnn`` command through its own
  argparse parser; ``make`` targets exist; ``pip install`` names files and extras that exist), and every command
  is either run by the slow test or listed in :data:`NOT_RUN` with the reason. A command of any other program
  fails the test until it is given one of the two.
- ``-m slow``: each documented file's commands run in order in a fresh folder, on small data with a small budget.
  The substitutions (:data:`DATA` for the data the docs assume, :func:`small` for the budgets) are the only
  changes to the commands as written:

  ======================================  ============================================================
  documented                              run as
  ======================================  ============================================================
  ``../shared/data/quickdraw/qd5``        ``qd5``: 40 sketches per class of each qd5 file (built-in
  ``qd5``                                 sketches of 5 classes where ../shared/data is absent)
  ``data/qd`` (what the download writes)  3 classes of that subset
  ``../shared/data/quickdraw/             ``qdsample/simplified-sample``, ``qdsample/raw-sample``: the first
  simplified-sample``, ``raw-sample``     6 classes of each (built-in sketches of 6 classes without it)
  ``tuberlin/svg``                        3 classes x 6 SVG files (built-in sketches as SVG without
                                          ../shared/data)
  ``cat.ndjson``, ``my_sketches.ndjson``  a few built-in sketches
  ``--builtin N``                         ``--builtin 16``
  ``--epochs N``                          ``--steps 2`` (``r2cnn experiment``: ``--steps 1``)
  ``--train-subset N``                    ``--train-subset 4``
  ``--sample N`` / ``--failures N``       ``--sample 2`` / ``--failures 2``
  ``r2cnn train``                         ``+ --workers 0``
  ``r2cnn experiment`` (a run)            ``+ --steps 1 --workers 0 --bootstrap 100 --set batch_size=8``
  ``r2cnn experiment --dry-run``          ``+ --measure-steps 0``
  ``r2cnn report``                        ``+ --examples 2 --deletion-max 20``
  ======================================  ============================================================
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "data"
PROGRAMS = ("r2cnn", "make", "python", "python3", "pip", "torchrun", "export", ".")
SHELL_LANGS = ("bash", "sh", "shell", "console")

# Commands not run here (pattern on the command as written -> why); each is still parsed by the fast test.
NOT_RUN = {
    r"^make (demo|test)$": "creates .venv and installs from PyPI (network); `make test` would also rerun this suite",
    r"^python3 -m venv ": "creates a virtual environment that the next (network) install fills",
    r"^pip install ": "installs from PyPI (network)",
    r"^r2cnn download ": "downloads from Google's servers (network); tests/test_download.py tests it offline",
    r"^torchrun ": "8 processes training a paper-scale ResNet50 (GPUs, ImageNet weights); tests/test_ddp.py runs DDP",
    r"^r2cnn bench ": "a benchmark times minutes of work; tests/test_bench.py runs every target on small settings",
    r"^r2cnn serve ": "a server that runs until stopped; tests/test_serve*.py drive its app and page",
}


@dataclass
class Command:
    where: str  # file:line
    text: str  # as written, continuation lines joined, the comment dropped
    file: str


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes that starts a word)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def extract(path: Path) -> tuple[list[Command], list[tuple[str, str]]]:
    """(shell commands, python blocks as (where, source)) of one Markdown file."""
    commands, blocks = [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    fence, lang, start, body = False, "", 0, []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*```\s*(\S*)", line)
        if m:
            if fence and lang == "python":
                blocks.append((f"{path.name}:{start}", "\n".join(body)))
            fence, lang, start, body = not fence, m.group(1).lower(), i + 2, []
            i += 1
            continue
        if fence and lang == "python":
            body.append(line)
        elif fence and (lang in SHELL_LANGS or lang == ""):
            first = i + 1
            text = line
            while text.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            text = _strip_comment(text).strip()
            words = text.split()
            if words and (lang in SHELL_LANGS or words[0] in PROGRAMS):
                commands.append(Command(f"{path.name}:{first}", " ".join(words), path.name))
        i += 1
    return commands, blocks


def documented() -> tuple[list[Command], list[tuple[str, str]]]:
    commands, blocks = [], []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        c, b = extract(path)
        commands += c
        blocks += b
    return commands, blocks


def not_run_reason(text: str) -> str | None:
    return next((why for pattern, why in NOT_RUN.items() if re.search(pattern, text)), None)


def _parts(text: str) -> list[list[str]]:
    """The simple commands of ``a && b``, each as its words (quotes removed as the shell would)."""
    out, current = [], []
    for word in shlex.split(text):
        if word == "&&":
            out.append(current)
            current = []
        else:
            current.append(word)
    return out + [current]


def _check_r2cnn(argv: list[str]) -> None:
    from r2cnn.cli import COMMANDS, _command_parser

    assert argv and argv[0] in COMMANDS, f"unknown r2cnn command {argv[:1]}"
    _, parser = _command_parser(argv[0])
    parser.parse_args(argv[1:])  # a bad flag raises R2CNNError


def check_parses(words: list[str]) -> None:
    """The part of a command that can be checked without running it; AssertionError/R2CNNError if it is wrong."""
    program = words[0]
    if program == "r2cnn":
        _check_r2cnn(words[1:])
    elif program == "torchrun":
        assert "-m" in words and words[words.index("-m") + 1] == "r2cnn", words
        _check_r2cnn(words[words.index("-m") + 2:])
    elif program in ("python", "python3") and words[1:3] == ["-m", "r2cnn"]:
        _check_r2cnn(words[3:])
    elif program in ("python", "python3"):
        assert words[1:3] == ["-m", "venv"], f"unchecked python command {words}"
    elif program == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert set(words[1:]) <= set(targets), f"Makefile has no target {set(words[1:]) - set(targets)}"
    elif program == "pip":
        assert words[1] == "install", words
        if "-c" in words:
            assert (ROOT / words[words.index("-c") + 1]).is_file(), words
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for word in words:
            m = re.fullmatch(r"\.\[([\w,]+)\]", word)
            if m:
                assert set(m.group(1).split(",")) <= set(extras), f"pyproject.toml has no extra {m.group(1)}"
    elif program == "export":
        assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w) for w in words[1:]), words
    elif program == ".":
        assert len(words) == 2, words
    else:
        raise AssertionError(f"no check for program {program!r}")


COMMANDS, PYTHON_BLOCKS = documented()


def test_the_docs_have_commands():
    files = {c.file for c in COMMANDS}
    assert {"README.md", "experiments.md", "table1.md"} <= files
    assert any(c.text.startswith("r2cnn prepare train=") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_every_documented_command_parses_and_is_run_or_listed(command):
    for words in _parts(command.text):
        check_parses(words)
    runnable = all(w[0] in ("r2cnn", "export") for w in _parts(command.text))
    assert runnable or not_run_reason(command.text), \
        f"{command.where}: {command.text!r} is neither run by this test nor listed in NOT_RUN with a reason"


@pytest.mark.parametrize("where, source", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_every_documented_python_block_compiles(where, source):
    compile(source, where, "exec")


# ------------------------------------------------------------------------------------------ running them
def _write_class_files(folder: Path, sketches_by_class: dict, fmt: str) -> None:
    from r2cnn.data.formats import write_sketches

    folder.mkdir(parents=True, exist_ok=True)
    for name, sketches in sketches_by_class.items():
        if fmt == "svg":
            write_sketches(folder, sketches, fmt="svg")
        else:
            write_sketches(folder / f"{name}.ndjson", sketches)


def _builtin_by_class(n: int, classes: list[str], seed: int) -> dict:
    from r2cnn.data import builtin

    sketches = builtin.generate(n, seed=seed, classes=classes)
    return {c: [s for s in sketches if s.label == c] for c in classes}


def make_data(ws: Path) -> None:
    """The data the docs assume, small (module docstring)."""
    from r2cnn.data import builtin

    qd5 = SHARED / "quickdraw" / "qd5"
    for split, seed in (("train", 0), ("valid", 1)):
        out = ws / "qd5" / split
        out.mkdir(parents=True)
        if qd5.is_dir():
            for f in sorted((qd5 / split).glob("*.ndjson")):
                with open(f) as src:
                    (out / f.name).write_text("".join(line for _, line in zip(range(40), src)))
        else:
            _write_class_files(out, _builtin_by_class(40, list(builtin.CLASSES[:5]), seed), "ndjson")
    for sample, seed in (("simplified-sample", 3), ("raw-sample", 4)):
        out, src = ws / "qdsample" / sample, SHARED / "quickdraw" / sample
        out.mkdir(parents=True)
        if src.is_dir():
            for f in sorted(src.glob("*.ndjson"))[:6]:
                shutil.copy(f, out / f.name)
        else:
            _write_class_files(out, _builtin_by_class(20, list(builtin.CLASSES[:6]), seed), "ndjson")
    (ws / "data" / "qd").mkdir(parents=True)
    for f in sorted((ws / "qd5" / "train").iterdir())[:3]:
        shutil.copy(f, ws / "data" / "qd" / f.name)
    svg = SHARED / "tuberlin" / "svg"
    if svg.is_dir():
        for folder in sorted(p for p in svg.iterdir() if p.is_dir())[:3]:
            (ws / "tuberlin" / "svg" / folder.name).mkdir(parents=True)
            for f in sorted(folder.glob("*.svg"))[:6]:
                shutil.copy(f, ws / "tuberlin" / "svg" / folder.name / f.name)
    else:
        _write_class_files(ws / "tuberlin" / "svg", _builtin_by_class(6, list(builtin.CLASSES[:3]), 2), "svg")
    from r2cnn.data.formats import write_sketches
    write_sketches(ws / "cat.ndjson", [s.copy() for s in builtin.generate(3, seed=5, classes=["sun"])])
    write_sketches(ws / "my_sketches.ndjson", builtin.generate(1, seed=6)[:5])
    (ws / "docs").symlink_to(ROOT / "docs")


def _replace_value(words: list[str], flag: str, value: str) -> list[str]:
    return [value if i and words[i - 1] == flag else w for i, w in enumerate(words)]


def small(words: list[str]) -> list[str]:
    """The command with the budgets of the module docstring's table."""
    words = [w.replace("../shared/data/quickdraw/qd5", "qd5").replace("../shared/data/quickdraw/", "qdsample/")
             for w in words]
    if words[0] != "r2cnn":
        return words
    sub = words[1]
    for flag, value in (("--builtin", "16"), ("--train-subset", "4"), ("--sample", "2"), ("--failures", "2")):
        words = _replace_value(words, flag, value)
    if "--epochs" in words:
        i = words.index("--epochs")
        words = words[:i] + ["--steps", "1" if sub == "experiment" else "2"] + words[i + 2:]
    if sub == "train":
        words += ["--workers", "0"]
    elif sub == "experiment" and "--dry-run" in words:
        words += ["--measure-steps", "0"]
    elif sub == "experiment" and "--list" not in words:
        words += (["--steps", "1"] if "--steps" not in words else []) + ["--workers", "0", "--bootstrap", "100",
                                                                         "--set", "batch_size=8"]
    elif sub == "report":
        words += ["--examples", "2", "--deletion-max", "20"]
    return words


def _environment(ws: Path) -> dict:
    bin_dir = ws / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "r2cnn"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m r2cnn \"$@\"\n")
    shim.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", R2CNN_NO_REEXEC="1",
                PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
                MALLOC_MMAP_THRESHOLD_="1000000000", MALLOC_TRIM_THRESHOLD_="1000000000", OMP_WAIT_POLICY="PASSIVE")


DOC_FILES = sorted({c.file for c in COMMANDS} | {w.split(":")[0] for w, _ in PYTHON_BLOCKS})


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a whole file's commands: experiments.md runs about 200 one-step sub-runs
@pytest.mark.parametrize("doc", DOC_FILES)
def test_documented_commands_run_on_small_data(doc, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    make_data(ws)
    env = _environment(ws)
    ran = []
    for command in [c for c in COMMANDS if c.file == doc]:
        if not_run_reason(command.text):
            continue
        line = " && ".join(shlex.join(small(words)) for words in _parts(command.text))
        proc = subprocess.run(["bash", "-c", line], cwd=ws, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command.where}: {line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, f"{command.where}: {line}\n{proc.stderr[-3000:]}"
        ran.append(line)
    for where, source in [b for b in PYTHON_BLOCKS if b[0].startswith(f"{doc}:")]:
        proc = subprocess.run([sys.executable, "-c", source], cwd=ws, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"{where}:\n{proc.stderr[-3000:]}"
        ran.append(where)
    assert ran or doc not in {"README.md", "experiments.md", "table1.md"}
    (tmp_path / "ran.json").write_text(json.dumps(ran, indent=1))
