"""``r2cnn presets [NAME] [--json]``: list the named training configurations (:mod:`r2cnn.presets`)."""

from __future__ import annotations

import argparse
import json

HELP = "list the named training configurations (paper Tables 1-3 and a fast CPU pair)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one preset in full (JSON)")
    p.add_argument("--json", action="store_true", help="print every preset as JSON")


def _canvas(preset: dict) -> str:
    from r2cnn.models import DEFAULT_OPTIONS, get_spec

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


def run(args) -> int:
    from r2cnn.presets import PRESETS, get_preset

    if args.name:
        print(json.dumps(get_preset(args.name), indent=2))
    elif args.json:
        print(json.dumps(PRESETS, indent=2))
    else:
        print(format_table(PRESETS))
    return 0
