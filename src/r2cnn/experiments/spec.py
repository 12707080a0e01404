"""Experiment specs: which rows make a table, and how each row is trained and tested.

A spec is a TOML file (read with the standard library's ``tomllib``)::

    name = "table2-cpu"                 # optional; default: the file's stem
    title = "Table 2 (CPU twin)"        # optional
    reference = "r2cnn"                 # the row every other row is compared with (paired, same test sketches)
    mode = "tuning"                     # optional: "test" (default) or "tuning": train as usual, report the
                                        # validation split carved from train, never read the test split
                                        # (r2cnn.experiments.protocols; `r2cnn experiment --tuning` sets it too)

    [defaults]                          # optional; any row field below except id, preset, label, init_from, paper
    protocol = "auto"
    seeds = [0]

    [[rows]]
    id = "r2cnn"                        # letters, digits, "-", "_", "." (it names the row's folder)
    preset = "cpu-r2cnn"                # `r2cnn presets`; checked when the spec runs, not when it is read
    label = "Sketch-R2CNN"              # optional; default: the id
    paper = 83.25                       # optional: the paper's top-1 in percent
    protocol = "quickdraw"              # "quickdraw", "tuberlin" or "auto" (from the store: k folds -> tuberlin)
    seeds = [0, 1, 2]                   # one training run per seed (and per fold under "tuberlin")
    overrides = { lr = 5e-4, "model_options.hidden" = 64 }   # as `train --set`; a dotted key sets one entry
    epochs = 4                          # budget: epochs or steps (not both), and/or minutes (wall clock)
    train_subset = 2000                 # optional: train on this many training sketches per class
    init_from = "pretrain-row"          # optional: start from that row's selected checkpoint (except classifier)
    report = true                       # false: a pre-training row, run but left out of the tables

Errors are one line naming the file, the row and the field (:class:`SpecError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from r2cnn.errors import R2CNNError, did_you_mean

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PROTOCOLS = ("quickdraw", "tuberlin", "auto")
BUILTIN = ("table1", "table2", "table3", "table1-cpu", "table2-cpu", "table3-cpu", "table1-cpu-qd")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # fullmatch: "$" would accept a final newline
_TOP_FIELDS = {"name", "title", "reference", "description", "mode", "defaults", "rows"}
MODES = ("test", "tuning")  # r2cnn.experiments.protocols.REPORTED_SPLIT says which split each reports
_DEFAULT_FIELDS = {"protocol", "seeds", "overrides", "epochs", "steps", "minutes", "train_subset", "report"}
_ROW_FIELDS = _DEFAULT_FIELDS | {"id", "preset", "label", "paper", "init_from", "note"}


class SpecError(R2CNNError):
    """A spec that cannot be used: ``FILE: row ID: field NAME: reason`` (one line)."""


@dataclass(frozen=True)
class Row:
    """One row of a table: a preset trained under a protocol for each seed (and fold), within a budget."""

    id: str
    preset: str
    label: str
    protocol: str = "auto"
    seeds: tuple[int, ...] = (0,)
    overrides: dict = field(default_factory=dict)
    epochs: int | None = None
    steps: int | None = None
    minutes: float | None = None
    train_subset: int | None = None
    init_from: str | None = None
    paper: float | None = None
    report: bool = True
    note: str = ""


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    source: str  # the file it was read from (for messages)
    reference: str | None
    rows: tuple[Row, ...]
    description: str = ""
    mode: str = "test"

    def row(self, row_id: str) -> Row:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise SpecError(f"{self.source}: no row {row_id!r} (rows: {', '.join(r.id for r in self.rows)})")

    def ordered(self, only: list[str] | None = None) -> list[Row]:
        """Rows in file order, except that a row comes after the row it is ``init_from`` (a stable topological
        order); with ``only``, just those rows and what they depend on."""
        keep = None
        if only:
            keep, todo = set(), list(only)
            while todo:
                row = self.row(todo.pop())
                if row.id not in keep:
                    keep.add(row.id)
                    todo.extend([row.init_from] if row.init_from else [])
        rows = [r for r in self.rows if keep is None or r.id in keep]
        done: set[str] = set()
        out: list[Row] = []
        while rows:
            ready = next((r for r in rows if r.init_from is None or r.init_from in done), None)
            if ready is None:
                raise SpecError(f"{self.source}: row {rows[0].id}: field 'init_from': dependency cycle through "
                                f"{', '.join(r.id for r in rows)}")
            out.append(ready)
            done.add(ready.id)
            rows.remove(ready)
        return out


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("r2cnn.experiments") / "specs" / f"{name}.toml"))


def load_spec(spec: str | Path) -> Spec:
    """A built-in spec by name (:data:`BUILTIN`) or a TOML file."""
    path = builtin_path(str(spec)) if str(spec) in BUILTIN else Path(spec)
    if not path.is_file():
        raise SpecError(f"{spec}: neither a built-in spec ({', '.join(BUILTIN)}) nor a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise SpecError(f"{path}: not a usable spec (nested too deeply)") from None
    return parse_spec(data, source=str(path), default_name=path.stem)


def parse_spec(data: dict, source: str = "<spec>", default_name: str = "experiment") -> Spec:
    """Validate a spec's TOML data; see the module docstring for the fields."""
    def fail(where: str, name: str, reason: str):
        raise SpecError(f"{source}: {where}field {name!r}: {reason}")

    unknown = sorted(set(data) - _TOP_FIELDS)
    if unknown:
        fail("", unknown[0], f"unknown (top-level fields: {', '.join(sorted(_TOP_FIELDS))})")
    for key in ("name", "title", "reference", "description", "mode"):
        if key in data and not isinstance(data[key], str):
            fail("", key, "must be a string")
    if data.get("mode", "test") not in MODES:
        fail("", "mode", f"must be one of {', '.join(MODES)}, not {data['mode']!r}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        fail("", "defaults", "must be a table")
    unknown = sorted(set(defaults) - _DEFAULT_FIELDS)
    if unknown:
        fail("defaults: ", unknown[0], f"not allowed in [defaults] (allowed: {', '.join(sorted(_DEFAULT_FIELDS))})")
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows or not all(isinstance(r, dict) for r in raw_rows):
        fail("", "rows", "must be a non-empty array of tables ([[rows]])")

    rows: list[Row] = []
    for n, raw in enumerate(raw_rows, 1):
        rid = raw.get("id")
        where = f"row {rid if isinstance(rid, str) else '#' + str(n)}: "
        unknown = sorted(set(raw) - _ROW_FIELDS)
        if unknown:
            fail(where, unknown[0], f"unknown (row fields: {', '.join(sorted(_ROW_FIELDS))})")
        if not isinstance(rid, str) or not _ID.fullmatch(rid):
            fail(where, "id", "required: letters, digits, '-', '_', '.'")
        if any(r.id == rid for r in rows):
            fail(where, "id", "used by an earlier row")
        merged = {**defaults, **raw}
        rows.append(_parse_row(merged, lambda name, reason, w=where: fail(w, name, reason)))

    ids = {r.id for r in rows}
    for i, row in enumerate(rows):
        if row.init_from is not None and row.init_from not in ids:
            fail(f"row {row.id}: ", "init_from", f"no row {row.init_from!r} in this spec")
        if row.init_from == row.id:
            fail(f"row {row.id}: ", "init_from", "a row cannot start from itself")
    reference = data.get("reference")
    if reference is not None:
        ref = next((r for r in rows if r.id == reference), None)
        if ref is None:
            fail("", "reference", f"no row {reference!r} in this spec")
        if not ref.report:
            fail("", "reference", f"row {reference!r} has report = false")
    spec = Spec(name=data.get("name", default_name), title=data.get("title", data.get("name", default_name)),
                source=source, reference=reference, rows=tuple(rows), description=data.get("description", ""),
                mode=data.get("mode", "test"))
    spec.ordered()  # raises on a dependency cycle
    return spec


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_row(r: dict, fail) -> Row:
    preset = r.get("preset")
    if not isinstance(preset, str) or not preset:
        fail("preset", "required: a preset name (see `r2cnn presets`)")
    protocol = r.get("protocol", "auto")
    if protocol not in PROTOCOLS:
        fail("protocol", f"must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    seeds = r.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        fail("seeds", "must be a non-empty list of distinct non-negative integers")
    overrides = r.get("overrides", {})
    if not isinstance(overrides, dict):
        fail("overrides", "must be a table of preset entries (as `train --set KEY=VALUE`)")
    for key in ("epochs", "steps", "train_subset"):
        v = r.get(key)
        if v is not None and (not _is_int(v) or v < 1):
            fail(key, f"must be a positive integer, not {v!r}")
    if r.get("epochs") is not None and r.get("steps") is not None:
        fail("steps", "give epochs or steps, not both")
    minutes = r.get("minutes")
    if minutes is not None and (not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes <= 0):
        fail("minutes", f"must be a positive number, not {minutes!r}")
    paper = r.get("paper")
    if paper is not None and (not isinstance(paper, (int, float)) or isinstance(paper, bool)
                              or not 0 <= paper <= 100):
        fail("paper", f"must be the paper's top-1 in percent (0-100), not {paper!r}")
    for key in ("label", "init_from", "note"):
        if key in r and not isinstance(r[key], str):
            fail(key, "must be a string")
    if "report" in r and not isinstance(r["report"], bool):
        fail("report", "must be true or false")
    return Row(id=r["id"], preset=preset, label=r.get("label", r["id"]), protocol=protocol, seeds=tuple(seeds),
               overrides=_plain(overrides), epochs=r.get("epochs"), steps=r.get("steps"),
               minutes=None if minutes is None else float(minutes), train_subset=r.get("train_subset"),
               init_from=r.get("init_from"), paper=None if paper is None else float(paper),
               report=r.get("report", True), note=r.get("note", ""))


def _plain(value):
    """TOML tables as plain dicts (and tuples never), so configs compare and serialise as JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def apply_overrides(config: dict, overrides: dict, where: str) -> dict:
    """``config`` with ``overrides`` applied: ``KEY`` replaces the entry (as ``train --set``), ``KEY.SUB`` sets one
    entry of a dict-valued entry (``model_options.hidden``). Unknown entries raise a one-line error naming
    ``where``."""
    import copy

    from r2cnn.engine.config import OPTIONAL_ENTRIES
    from r2cnn.experiments.runners import takes_optional_entry

    out = copy.deepcopy(config)
    for key, value in overrides.items():
        head, dot, sub = key.partition(".")
        if head not in out and not (not dot and takes_optional_entry(out, head)):
            optional = [k for k in OPTIONAL_ENTRIES if takes_optional_entry(out, k)]
            raise SpecError(f"{where}: field 'overrides': {head!r} is not an entry of the preset"
                            f"{did_you_mean(head, [*out, *optional])} (entries: {', '.join([*out, *optional])})")
        if dot:
            if not isinstance(out[head], dict):
                raise SpecError(f"{where}: field 'overrides': {head!r} is not a table, so {key!r} cannot be set")
            out[head] = {**out[head], sub: copy.deepcopy(value)}
        else:
            out[head] = copy.deepcopy(value)
    return out
