"""Run an experiment: every row of a spec, in dependency order, resumable, keeping each test prediction.

Layout of the output folder::

    OUT/experiment.json                  the spec, budget and data of the last invocation (provenance)
    OUT/rows/ROW/row.json                the row's resolved plan; a later run with a different plan is refused
    OUT/rows/ROW/seedS[-foldK]/          one sub-run: the runner's files (engine: last.pt, best.pt, log.jsonl;
                                         with train_subset or in tuning mode, the store view it trains on is in
                                         seedS[-foldK].data/)
        trained.json                     written when training is over: the selected model file
        predictions.npz                  test predictions (tuning mode: validation predictions): index, label,
                                         top5, correct (+ seed, fold, speed)
    OUT/rows/ROW/done.json               written last, when every sub-run has its predictions
    OUT/rows/ROW/not_run.json            the reason a row could not run here (a missing resource such as ImageNet
                                         weights, or a dependency that did not run); the other rows go on
    OUT/results.{md,csv,json,png}        :mod:`r2cnn.experiments.report`

Resume: a row with ``done.json`` is skipped; in a row, a sub-run with predictions is skipped, one with
``trained.json`` is only predicted, and one whose folder exists is handed to its runner with ``resume=True``
(the engine continues from ``last.pt`` exactly). Every file above is written to a temporary name and renamed, so
an interrupt (SIGINT) at any moment leaves a folder that the next run continues.

Tuning mode (the spec's ``mode = "tuning"`` or ``Budget.tuning``; :mod:`r2cnn.experiments.protocols`): every
sub-run trains on a view whose test split is sealed, and its validation split is predicted and reported; the source
store's test indices are never asked for. The mode is part of a row's plan, so an experiment folder holds one kind.

Dependencies (``init_from = "ROW"``): a sub-run starts from the selected model of the dependency's sub-run with
the same seed and fold, else the same seed, else the dependency's first sub-run (a QuickDraw pre-training with one
seed feeds every fold and seed of a TU-Berlin row).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from r2cnn.data.formats.common import AtomicWriter
from r2cnn.data.store import SketchStore
from r2cnn.data.store.reader import MANIFEST
from r2cnn.errors import MissingResource, R2CNNError
from r2cnn.experiments import protocols
from r2cnn.experiments.runners import (NeuralRunner, get_runner, read_json, runner_kind, takes_optional_entry,
                                       write_json_atomic)
from r2cnn.experiments.spec import Row, Spec, SpecError, apply_overrides


@dataclass
class Budget:
    """Command-line budget; a value given here replaces every row's own (``epochs`` and ``steps`` both clear the
    other)."""

    epochs: int | None = None
    steps: int | None = None
    minutes: float | None = None
    train_subset: int | None = None
    overrides: dict = field(default_factory=dict)  # `--set`, applied to every row after the row's own
    tuning: bool = False  # `--tuning`: tuning mode whatever the spec says (a tuning spec is always tuning)


@dataclass
class PlannedRow:
    row: Row
    config: dict  # the preset after overrides and the protocol (what the runner gets), name under "preset"
    protocol: str
    data: str
    subruns: list[tuple[int, int | None]]
    epochs: int | None
    steps: int | None
    minutes: float | None
    train_subset: int | None
    mode: str = "test"  # "test" or "tuning" (module docstring)

    @property
    def split(self) -> str:
        """The split this row predicts and reports."""
        return protocols.REPORTED_SPLIT[self.mode]

    def describe(self) -> dict:
        """JSON form stored as row.json (compared on resume)."""
        d = {k: v for k, v in asdict(self).items() if k != "row"}
        d.update(id=self.row.id, init_from=self.row.init_from, subruns=[list(s) for s in self.subruns])
        return json.loads(json.dumps(d))


def parse_data(items: list[str]) -> dict[str, Path]:
    """``--data PATH`` (every protocol) and ``--data quickdraw=PATH`` / ``--data tuberlin=PATH``."""
    out: dict[str, Path] = {}
    for item in items:
        head, sep, tail = item.partition("=")
        key, path = (head, tail) if sep and head in ("quickdraw", "tuberlin") else ("default", item)
        if key in out:
            raise R2CNNError(f"--data {item}: {key if key != 'default' else 'a default store'} given twice")
        out[key] = Path(path)
    return out


def _store_for(data: dict[str, Path], protocol: str, where: str) -> Path:
    path = data.get(protocol) or data.get("default")
    if path is None:
        raise R2CNNError(f"{where}: no store for protocol {protocol!r}: give --data PATH or --data {protocol}=PATH")
    return path


def plan(spec: Spec, data: dict[str, Path], budget: Budget, only: list[str] | None = None) -> list[PlannedRow]:
    """Resolve every row (in run order): preset + overrides + protocol, store, sub-runs and budget. Checks presets
    and stores, so a bad spec fails before anything trains."""
    from r2cnn.data.store import SketchStore
    from r2cnn.presets import get_preset

    planned, used = [], set()
    mode = "tuning" if budget.tuning or spec.mode == "tuning" else "test"
    for row in spec.ordered(only):
        where = f"{spec.source}: row {row.id}"
        try:
            preset = get_preset(row.preset)
        except R2CNNError as e:
            raise SpecError(f"{where}: field 'preset': {e}") from None
        config = apply_overrides(preset, row.overrides, where)
        # `--set` reaches the rows whose presets have the entry (KEY.SUB: whose KEY table has SUB): a neural
        # row's batch_size is not an entry of a classic row's preset, nor is a ResNet's width an option of
        # AlexNet. An entry no planned row has is an error (below), as for `train --set`.
        mine = {k: v for k, v in budget.overrides.items() if _has_entry(config, k)}
        config = apply_overrides(config, mine, "--set")
        used.update(mine)
        if row.protocol != "auto":
            path = _store_for(data, row.protocol, where)
        elif "default" in data or len(data) == 1:
            path = data.get("default") or next(iter(data.values()))
        else:
            raise R2CNNError(f"{where}: protocol 'auto' uses the store given as --data PATH")
        store = SketchStore(path)
        try:
            protocol = protocols.resolve(row.protocol, store)
        except R2CNNError as e:
            raise R2CNNError(f"{where}: {e}") from None
        config = dict(protocols.protocol_config(protocol, config), preset=row.preset)
        epochs, steps = row.epochs, row.steps
        if budget.epochs is not None or budget.steps is not None:
            epochs, steps = budget.epochs, budget.steps
        if runner_kind(config) != "neural":
            # A classic row is one fit: the table's epochs and steps budget the networks. Its SVM's passes over
            # the data are a preset entry (--set classifier.epochs=N).
            epochs = steps = None
        planned.append(PlannedRow(
            row=row, config=config, protocol=protocol, data=str(Path(path).resolve()),
            subruns=protocols.subruns(protocol, store, row.seeds), epochs=epochs, steps=steps,
            minutes=budget.minutes if budget.minutes is not None else row.minutes,
            train_subset=budget.train_subset if budget.train_subset is not None else row.train_subset, mode=mode))
    unused = [k for k in budget.overrides if k not in used]
    if unused:
        raise SpecError(f"--set: {unused[0]!r} is not an entry of any row's preset")
    return planned


def _has_entry(config: dict, key: str) -> bool:
    head, dot, sub = key.partition(".")
    if not dot and takes_optional_entry(config, head):
        return True
    return head in config and (not dot or (isinstance(config[head], dict) and sub in config[head]))


def subrun_name(seed: int, fold: int | None) -> str:
    return f"seed{seed}" + ("" if fold is None else f"-fold{fold}")


def _dependency_model(out: Path, dep: PlannedRow, seed: int, fold: int | None) -> Path:
    subs = dep.subruns
    first_seed = subs[0][0]
    for cand in ((seed, fold), (seed, None), (first_seed, fold), (first_seed, None), subs[0]):
        if tuple(cand) in [tuple(s) for s in subs]:
            trained = out / "rows" / dep.row.id / subrun_name(*cand) / "trained.json"
            return _trained_model(trained)
    raise AssertionError("unreachable: subs[0] is always a candidate")


def _trained_model(trained: Path) -> Path:
    """The model file a sub-run's ``trained.json`` names."""
    model = read_json(trained).get("model")
    if not isinstance(model, str):
        raise R2CNNError(f"{trained}: damaged (no 'model' entry); remove it and run again")
    return trained.parent / model


def save_predictions(path: Path, pred: dict, seed: int, fold: int | None) -> None:
    """``predictions.npz``: index, label, top5, correct (top-1), seed, fold (-1: none), speed (NaN: unknown)."""
    label = np.asarray(pred["label"], np.int64)
    top5 = np.asarray(pred["top5"], np.int64).reshape(len(label), -1)
    with AtomicWriter(path, compress=False) as f:
        np.savez(f, index=np.asarray(pred["index"], np.int64), label=label, top5=top5,
                 correct=top5[:, 0] == label if len(label) else np.zeros(0, bool), seed=seed,
                 fold=-1 if fold is None else fold,
                 step_seconds=float(pred.get("step_seconds", np.nan)),
                 sketches_per_second=float(pred.get("sketches_per_second", np.nan)))


PREDICTION_ARRAYS = ("index", "label", "top5", "correct", "seed", "fold", "step_seconds", "sketches_per_second")


def load_predictions(path: Path) -> dict:
    """What :func:`save_predictions` wrote; an empty, torn or foreign file is a one-line error naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            missing = [k for k in PREDICTION_ARRAYS if k not in z.files]
            if missing:
                raise ValueError(f"no {missing[0]!r} array")
            d = {k: z[k] for k in z.files}
        for k in ("seed", "fold"):
            d[k] = int(d[k])
        for k in ("step_seconds", "sketches_per_second"):
            d[k] = float(d[k])
    except OSError as e:
        raise R2CNNError(f"{path}: cannot read ({e.strerror or e})") from None
    except (zipfile.BadZipFile, EOFError, ValueError, TypeError, AttributeError) as e:  # a torn or foreign file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise R2CNNError(f"{path}: damaged predictions ({reason}); remove it and run the experiment again to "
                         f"predict anew") from None
    d["fold"] = None if d["fold"] < 0 else d["fold"]
    return d


# A row that could not run (a missing resource, or a dependency that did not run) has this file with the reason.
SKIPPED = "not_run.json"


def run_experiment(spec: Spec, out: Path, planned: list[PlannedRow], *, neural: NeuralRunner | None = None,
                   runner_for=None, log=print) -> None:
    """Run the planned rows into ``out`` (see the module docstring). ``runner_for(config)`` picks a row's runner
    (default :func:`get_runner`; tests pass their own)."""
    check_owner(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    neural = neural or NeuralRunner()
    runner_for = runner_for or (lambda config: get_runner(config, neural))
    write_json_atomic(out / "experiment.json", {"spec": spec.name, "source": spec.source,
                                                "rows": [p.describe() for p in planned]})
    by_id = {p.row.id: p for p in planned}
    for p in planned:
        row_dir = out / "rows" / p.row.id
        row_dir.mkdir(parents=True, exist_ok=True)
        _check_plan(row_dir, p)
        if (row_dir / "done.json").exists():
            log(f"[{p.row.id}] done, skipped")
            continue
        marker = row_dir / SKIPPED
        if p.row.init_from and not (out / "rows" / p.row.init_from / "done.json").exists():
            reason = f"needs row {p.row.init_from}, which did not run"
        else:
            try:
                _run_row(p, row_dir, out, by_id, runner_for(p.config), log)
                marker.unlink(missing_ok=True)
                continue
            except MissingResource as e:
                reason = str(e)
        # The row cannot run on this machine; the others can. A rerun tries it again.
        log(f"[{p.row.id}] not run: {reason}")
        write_json_atomic(marker, {"reason": reason})


def check_owner(out: Path, spec: Spec) -> None:
    """Refuse ``out`` when it holds another spec's experiment: its rows, ``results.*`` and ``experiment.json``
    would be mixed with or replaced by this spec's."""
    f = out / "experiment.json"
    if f.exists():
        before = read_json(f).get("spec")
        if before != spec.name:
            raise R2CNNError(f"{out}: holds the experiment of spec {before!r}, not {spec.name!r}; use another --out "
                             f"for {spec.name!r}")


def not_run(out: Path, planned: list[PlannedRow]) -> dict[str, str]:
    """Row id -> why it did not run, for the rows without ``done.json`` that were skipped (see ``SKIPPED``)."""
    reasons = {}
    for p in planned:
        f = out / "rows" / p.row.id / SKIPPED
        if f.exists() and not (out / "rows" / p.row.id / "done.json").exists():
            reasons[p.row.id] = read_json(f).get("reason", "")
    return reasons


def _run_row(p: PlannedRow, row_dir: Path, out: Path, by_id: dict, runner, log) -> None:
    """Every sub-run of one row that is not finished yet, then ``done.json``."""
    for seed, fold in p.subruns:
        sub = row_dir / subrun_name(seed, fold)
        if (sub / "predictions.npz").exists():
            continue
        data, data_fold, subset = Path(p.data), fold, p.train_subset
        if p.mode == "tuning":
            # the sub-run sees a view without a test split (a runner would otherwise build one for the subset)
            data, data_fold, subset = sub.with_name(f"{sub.name}.data"), None, None
            if not (data / MANIFEST).exists():
                protocols.subset_view(SketchStore(p.data), data, fold, p.train_subset, seal_test=True)
        trained = sub / "trained.json"
        if not trained.exists():
            resume = sub.exists()
            log(f"[{p.row.id}] {'resuming' if resume else 'training'} {sub.name} ({p.row.preset}, "
                f"{p.protocol}{', tuning' if p.mode == 'tuning' else ''})")
            init = _dependency_model(out, by_id[p.row.init_from], seed, fold) if p.row.init_from else None
            model = runner.train(p.config, data, sub, seed=seed, fold=data_fold, epochs=p.epochs,
                                 steps=p.steps, max_minutes=p.minutes, init_from=init, resume=resume,
                                 train_subset=subset)
            write_json_atomic(trained, {"model": os.path.relpath(model, sub)})
        model = _trained_model(trained)
        log(f"[{p.row.id}] predicting the {p.split} split of {sub.name}")
        save_predictions(sub / "predictions.npz", runner.predict(model, data, p.split, data_fold), seed, fold)
    write_json_atomic(row_dir / "done.json", {"subruns": [subrun_name(*s) for s in p.subruns]})


def _check_plan(row_dir: Path, p: PlannedRow) -> None:
    """Refuse a row whose settings changed since it ran, except its seeds (or folds) and its preset's description
    (a row that stopped before any of its sub-runs started takes the new settings): adding seeds to a finished row
    runs only the new ones, the finished sub-runs are kept; a sub-run no longer listed is left on disk and not
    reported."""
    f = row_dir / "row.json"
    now = p.describe()
    if f.exists():
        before = read_json(f)
        before.setdefault("mode", "test")  # written before tuning mode existed
        # A preset's description is prose, not a setting: rewording it does not make a finished row stale.
        before["config"] = {**before.get("config", {}), "description": now["config"].get("description")}
        started = any((row_dir / subrun_name(*sub)).exists() for sub in before.get("subruns", []))
        if before != now and not started:
            write_json_atomic(f, now)  # nothing of the row was trained (it failed before its first sub-run)
        elif before != now:
            key = next(k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
            if key != "subruns" or {**before, "subruns": now["subruns"]} != now:
                raise R2CNNError(f"{row_dir}: row {p.row.id} was run with another {key!r} ({before.get(key)!r}, "
                                 f"now {now.get(key)!r}); use a new --out, or remove that row's folder to run it again")
            done = row_dir / "done.json"
            if done.exists() and read_json(done).get("subruns") != [subrun_name(*s) for s in p.subruns]:
                done.unlink()
            write_json_atomic(f, now)
    else:
        write_json_atomic(f, now)


def recorded_budgets(out: Path, planned: list[PlannedRow]) -> dict[str, dict]:
    """Row id -> the budget the row ran with, as its ``row.json`` records it (``--report-only`` plans from the
    invocation, whose --epochs/--steps may differ from those the rows were trained with)."""
    result = {}
    for p in planned:
        f = out / "rows" / p.row.id / "row.json"
        if f.exists():
            ran = read_json(f)
            result[p.row.id] = {k: ran.get(k) for k in ("epochs", "steps", "minutes", "train_subset")}
    return result


def collect(out: Path, planned: list[PlannedRow]) -> dict[str, list[dict]]:
    """Predictions of every finished row (``done.json`` present): row id -> list of sub-run predictions. A row whose
    spec gained seeds since it finished has only the finished ones until the next run trains the rest
    (``--report-only`` in between reports them as "N of M sub-runs")."""
    result = {}
    for p in planned:
        row_dir = out / "rows" / p.row.id
        ran = read_json(row_dir / "row.json").get("mode", "test") if (row_dir / "row.json").exists() else p.mode
        if ran != p.mode:
            raise R2CNNError(f"{row_dir}: row {p.row.id} ran in {ran} mode, this report is in {p.mode} mode "
                             f"({'leave out' if ran == 'test' else 'add'} --tuning, or use another --out)")
        if (row_dir / "done.json").exists():
            files = [row_dir / subrun_name(*s) / "predictions.npz" for s in p.subruns]
            result[p.row.id] = [load_predictions(f) for f in files if f.exists()]
    return result
