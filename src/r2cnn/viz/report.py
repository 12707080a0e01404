"""``r2cnn report RUN_DIR``: one static HTML page about a training run that opens offline.

Everything is in the one file: images are PNG data URIs, the style sheet is inline, there are no scripts and no
links out. Sections: the run (checkpoint, preset, accuracy), training curves from ``RUN/log.jsonl``
(:mod:`r2cnn.engine.log`), the confusion matrix and per-class accuracy from :func:`evaluate_checkpoint`, the worst
classes with example sketches, attention figures (:mod:`r2cnn.viz.figures`) with the deletion check
(:mod:`r2cnn.viz.deletion`), and the partial-sketch accuracy curve.

The evaluation is taken from ``RUN/report.json`` (``r2cnn evaluate --out RUN``) or ``RUN/test_report.json``
(``r2cnn demo``) when one of them is for the same checkpoint file, step and split, or from ``RUN/*/report.json``
(``r2cnn evaluate --out RUN/eval``, as in the README) when it names this very checkpoint; otherwise it is run on
the store (``data``, or the store named in that file) and written to ``RUN/report.json``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from r2cnn.data.formats.common import AtomicWriter, write_file
from r2cnn.errors import R2CNNError
from r2cnn.viz.attention import AttentionModel, open_store

EVALUATION_FILES = ("report.json", "test_report.json")

_STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #1f2328; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; margin: .5em 0; }
td, th { border: 1px solid #d0d7de; padding: .2em .6em; text-align: left; }
td { overflow-wrap: anywhere; } th { white-space: nowrap; }
th { background: #f6f8fa; } img { max-width: 100%; } .note { color: #59636e; font-size: .9em; }
"""


def read_log(run: Path) -> list[dict]:
    """The records of ``run/log.jsonl``; a line that is not JSON is a one-line error naming it."""
    path = run / "log.jsonl"
    if not path.is_file():
        raise R2CNNError(f"{run}: no log.jsonl, not a training run directory (made by `r2cnn train --out`)")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise R2CNNError(f"{path}:{n}: not a JSON record ({e})") from None
        if not isinstance(record, dict):
            raise R2CNNError(f"{path}:{n}: not a JSON object")
        records.append(record)
    return records


def find_checkpoint(run: Path, checkpoint: str | None) -> Path:
    if checkpoint:
        return Path(checkpoint)
    for name in ("best.pt", "last.pt"):
        if (run / name).is_file():
            return run / name
    raise R2CNNError(f"{run}: no best.pt or last.pt; pass --checkpoint")


def load_evaluation(run: Path, checkpoint: Path, step, split: str) -> dict | None:
    """A saved evaluation of this checkpoint file at this step on ``split``, or None (module docstring): in the run
    folder one for a checkpoint of the same name, in a folder below it one for this very file."""
    own = [(run / name, True) for name in EVALUATION_FILES]
    for path, in_run in own + [(p, False) for p in sorted(run.glob(f"*/{EVALUATION_FILES[0]}"))]:
        if not path.is_file():
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict):
            continue
        named = Path(str(report.get("checkpoint")))
        same = named.name == checkpoint.name if in_run else named.resolve() == checkpoint.resolve()
        if (same and report.get("step") == step and report.get("split") == split
                and {"confusion", "per_class", "partial"} <= set(report)):
            return report
    return None


def _img(fig, alt: str) -> str:
    from r2cnn.viz.figures import png_bytes

    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: Sequence[Sequence], header: Sequence[str] | None) -> str:
    """A table of ``rows``; ``header=None`` for a key-value table, whose first column heads each row."""
    if header is None:
        body = "".join(f'<tr><th scope="row">{html.escape(str(row[0]))}</th>'
                       + "".join(f"<td>{html.escape(str(c))}</td>" for c in row[1:]) + "</tr>" for row in rows)
        return f"<table>{body}</table>"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _worst_classes(model: AttentionModel, store, positions: np.ndarray, evaluation: dict, worst: int,
                   per_class_examples: int) -> str:
    """The ``worst`` classes by top-1, each with its most frequent wrong prediction and up to
    ``per_class_examples`` of its misclassified sketches (titled by what the model predicted)."""
    from r2cnn.viz.figures import FAILURE, sketches_figure

    classes = model.classes
    confusion = np.asarray(evaluation["confusion"])
    per_class = evaluation["per_class"]
    ranked = sorted((per_class[name], c) for c, name in enumerate(classes) if per_class.get(name) is not None)[:worst]
    labels = np.asarray(store.labels)[positions]
    parts = []
    for acc, c in ranked:
        row = confusion[c].copy()
        row[c] = -1
        confused = int(row.argmax())
        mistaken = (f"most often taken for <b>{html.escape(classes[confused])}</b> ({row[confused]} of "
                    f"{confusion[c].sum()})" if row[confused] > 0 else "no confusions")
        parts.append(f"<h3>{html.escape(classes[c])}: top-1 {acc:.3f}, {mistaken}</h3>")
        sketches = [store[int(i)] for i in positions[labels == c]]
        prepared = model.prepare(sketches)
        predicted = model.predict_prepared(prepared)
        wrong = [(s, p) for s, p in zip(prepared, predicted) if p != c][:per_class_examples]
        if wrong:
            fig = sketches_figure([s for s, _ in wrong], [f"taken for {classes[p]}" for _, p in wrong],
                                  [FAILURE] * len(wrong))
            parts.append(_img(fig, f"misclassified {classes[c]} sketches"))
        else:
            parts.append('<p class="note">no misclassified sketch of this class</p>')
    return "\n".join(parts)


def _attention_section(model: AttentionModel, store, positions: np.ndarray, split: str, examples: int,
                       detailed: int, deletion_ks: Sequence[int], deletion_max: int | None, seed: int,
                       log: Callable[[str], None]) -> str:
    from r2cnn.viz import figures
    from r2cnn.viz.deletion import ARMS, deletion_check, format_deletion

    if not model.has_attention:
        return f'<p class="note">{html.escape(model.no_attention_message())}.</p>'
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(positions), min(examples, len(positions)), replace=False))
    views = model.views([store[int(positions[p])] for p in chosen])
    parts = ['<p>Colour-coded attention: non-stroke pixels are left uncoloured (paper Fig. 4); beside it the '
             'sketching-order encoding (Fig. 5: 1 at the first point, 0 at the last). Top-3 in green when the '
             'top-1 is right, in red when it is wrong.</p>']
    if views:
        parts.append(_img(figures.overview_figure(views, model.classes, name=model.name,
                                                  where=[f"#{p}" for p in chosen]), "attention overview"))
    for view, position in zip(views[:detailed], chosen):
        parts.append(_img(figures.sketch_figure(view, model.classes, name=model.name, where=f"{split} #{position}"),
                          "attention of one sketch"))
    if deletion_ks:
        subset = positions if not deletion_max or deletion_max >= len(positions) else \
            np.sort(rng.choice(positions, deletion_max, replace=False))
        result = deletion_check(model, [store[int(i)] for i in subset], deletion_ks, seed=seed, progress=False)
        log(format_deletion(result, f"deletion check on {split}"))
        rows = [[k] + [f"{result['top1'][arm][str(k)]:.4f}" for arm in ARMS] for k in result["ks"]]
        parts += [f"<h3>Deletion check</h3><p>Top-1 of {result['count']} sketches of the {html.escape(split)} split "
                  f"(mean {result['mean_strokes']:.1f} strokes) after removing the k strokes with the highest or "
                  f"lowest mean attention, or k random strokes ({html.escape(result['rule'])}). If attention marks "
                  "the informative strokes, removing the most attended ones hurts most.</p>",
                  _table(rows, ["k", "most attended removed", "least attended removed", "random removed"]),
                  _img(figures.deletion_figure(result), "deletion check")]
    return "\n".join(parts)


def build_report(run_dir: str | Path, *, checkpoint: str | None = None, data: str | None = None,
                 split: str = "test", out: str | Path | None = None, examples: int = 6, detailed: int = 2,
                 worst: int = 3, deletion_ks: Sequence[int] = (1, 2, 3), deletion_max: int | None = 2000,
                 seed: int = 0, device: str = "cpu", log: Callable[[str], None] = print, force: bool = False) -> Path:
    """Write the HTML report of a run (default ``RUN/report.html``) and return its path. An existing ``out`` that
    is not such a report is refused unless ``force``."""
    from r2cnn.engine.evaluate import evaluate_checkpoint
    from r2cnn.viz import figures

    run = Path(run_dir)
    if not run.is_dir():
        raise R2CNNError(f"{run}: not a directory")
    out = Path(out) if out else run / "report.html"
    _check_out(out, force)
    records = read_log(run)
    ckpt_path = find_checkpoint(run, checkpoint)
    model = AttentionModel(str(ckpt_path), device)
    evaluation = load_evaluation(run, ckpt_path, model.step, split)
    data = data or (evaluation or {}).get("data")
    if data is None:
        raise R2CNNError(f"{run}: no saved evaluation of {ckpt_path.name} on {split}; pass --data STORE to run one")
    if not Path(data, "manifest.json").is_file():
        raise R2CNNError(f"{data}: not a sketch store (pass the store the run was trained on with --data)")
    if evaluation is None or evaluation.get("data") != str(data):
        log(f"evaluating {ckpt_path} on {data} [{split}]")
        evaluation = evaluate_checkpoint(str(ckpt_path), str(data), split=split, device=device, progress=False)
        write_file(run / "report.json", json.dumps(evaluation, indent=1))
    store = open_store(str(data), model.classes)
    positions = store.indices(split, fold=evaluation.get("fold"))

    config = model.config
    summary = [["checkpoint", str(ckpt_path)], ["model", f"{config.get('model')} (preset {config.get('preset')})"],
               ["step", model.step], ["data", f"{data} [{split}], {evaluation['count']} sketches, "
                                              f"{len(model.classes)} classes"],
               ["top-1", f"{evaluation['top1']:.4f}"], ["top-5", f"{evaluation['top5']:.4f}"]]
    per_class = sorted(((acc, name) for name, acc in evaluation["per_class"].items() if acc is not None))
    partial = evaluation["partial"]
    sections = [
        ("Run", _table(summary, None)),
        ("Training curves", _img(figures.training_curves_figure(records), "training curves")
         if any(r.get("kind") in ("train", "valid") for r in records) else '<p class="note">no training records</p>'),
        ("Confusion matrix", "<p>Rows: true class, columns: predicted, each row normalised.</p>"
         + _img(figures.confusion_figure(evaluation["confusion"], model.classes), "confusion matrix")),
        ("Per-class accuracy", _img(figures.per_class_figure(evaluation["per_class"]), "per-class accuracy")
         + _table([[name, f"{acc:.4f}"] for acc, name in per_class], ["class (worst first)", "top-1"])),
        ("Worst classes", _worst_classes(model, store, positions, evaluation, worst, 6)),
        ("Attention", _attention_section(model, store, positions, split, examples, detailed, deletion_ks,
                                         deletion_max, seed, log)),
        ("Partial sketches", f"<p>Top-1 when only the {html.escape(evaluation['partial_rounding'])}.</p>"
         + _img(figures.partial_figure(partial), "partial-sketch accuracy")
         + _table([[f"{float(f):.0%}", f"{a:.4f}"] for f, a in partial.items()], ["strokes", "top-1"])),
    ]
    title = f"r2cnn report: {run.resolve().name}"
    body = "\n".join(f"<h2>{html.escape(name)}</h2>\n{content}" for name, content in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    with AtomicWriter(out, compress=False) as f:
        f.write(page.encode("utf-8"))
    return out


# How every report page begins (see build_report): an existing file that does not is somebody else's.
# (reports written before the viewport tag was added have the title straight after the charset)
_REPORT_START = b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
_REPORT_TITLE = b"<title>r2cnn report: "


def _check_out(out: Path, force: bool) -> None:
    """Refuse to replace a folder, or a file this command did not write (unless ``force``), before any work."""
    if out.is_dir():
        raise R2CNNError(f"--out {out}: is a folder; give a file name (e.g. {out / 'report.html'})")
    if out.exists() and not force:
        with open(out, "rb") as f:
            start = f.read(512)
        if not (start.startswith(_REPORT_START) and _REPORT_TITLE in start):
            raise R2CNNError(f"--out {out}: exists and is not a report written by `r2cnn report`; refusing to "
                             f"replace it (give --force to replace it, or another --out)")
