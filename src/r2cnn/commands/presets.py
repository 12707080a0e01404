"""``r2cnn presets [NAME] [--all] [--json]``: list the named training configurations (:mod:`r2cnn.presets`).

The default listing reads the presets' data only (no torch import, no model built), so it prints at once.
"""

from __future__ import annotations

import argparse
import json

HELP = "list the named training configurations, grouped, the recommended ones first and marked"
MARK = "*"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one preset in full (JSON)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--all", action="store_true",
                       help="one table of every preset: name, model, canvas, lr, batch, description")
    shown.add_argument("--json", action="store_true", help="print every preset as JSON")


def _canvas(preset: dict) -> str:
    from r2cnn.model_specs import DEFAULT_OPTIONS, get_spec

    if preset.get("runner") == "classic":
        return str(preset["canvas"])
    options = {**DEFAULT_OPTIONS, **get_spec(preset["model"]).defaults, **preset["model_options"]}
    return str(options["canvas"])


def format_table(presets: dict[str, dict]) -> str:
    """One row per preset: name, model, canvas, lr, batch, description."""
    header = ("name", "model", "canvas", "lr", "batch", "description")
    rows = [(name, p["model"], _canvas(p), f"{p['lr']:g}", str(p["batch_size"]), p["description"])
            if p.get("runner", "neural") == "neural" else
            (name, f"classic:{p['classifier']['kind']}", _canvas(p), "-", "-", p["description"])
            for name, p in presets.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [header, *rows]]
    return "\n".join(lines)


def format_groups(groups: list[tuple[str, list[str]]], presets: dict[str, dict], recommended: tuple[str, ...],
                  width: int = 100) -> str:
    """The default listing: each group's title, then one line per preset (the recommended ones marked with
    :data:`MARK`), its description cut to ``width`` columns; a last line says how to see more."""
    name_width = max(len(n) for _, names in groups for n in names) + 2
    lines = []
    for title, names in groups:
        lines += ["", f"{title}:"] if lines else [f"{title}:"]
        for name in names:
            text = presets[name]["description"]
            room = max(width - name_width - 2, 20)
            text = text if len(text) <= room else text[:room - 3].rstrip() + "..."
            lines.append(f"{MARK if name in recommended else ' '} {name.ljust(name_width)}{text}")
    lines += ["", f"{MARK}: recommended. `r2cnn presets NAME`: one preset in full (JSON);",
              "--all: every preset with its model, canvas, lr and batch; --json: all as JSON."]
    return "\n".join(lines)


def run(args) -> int:
    import shutil

    from r2cnn.presets import PRESETS, RECOMMENDED, get_preset, preset_groups

    if args.name:
        print(json.dumps(get_preset(args.name), indent=2))
    elif args.json:
        print(json.dumps(PRESETS, indent=2))
    elif args.all:
        print(format_table(PRESETS))
    else:
        width = max(shutil.get_terminal_size((100, 24)).columns, 80)
        print(format_groups(preset_groups(), PRESETS, RECOMMENDED, width))
    return 0
