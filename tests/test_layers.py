"""What the import contracts cannot say themselves (docs/architecture.md "Layers"): every top-level module of the
package has a layer, and a module holds one idea, which keeps it short. ``make test`` runs the contracts
(``lint-imports``) before these."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "r2cnn"
MAX_LINES = 500
# modules allowed past MAX_LINES, each with why it is one idea
LONG_MODULES: dict[str, str] = {}


def _layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}


def _top_level_modules() -> set[str]:
    names = {f"r2cnn.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return names | {f"r2cnn.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}


def test_every_top_level_module_has_a_layer():
    layered, present = _layered_modules(), _top_level_modules()
    assert not present - layered, (f"{sorted(present - layered)}: give each its place in the layers of "
                                   f"[tool.importlinter] in pyproject.toml, so that lint-imports checks its imports")
    assert not layered - present, f"{sorted(layered - present)}: in the layers of pyproject.toml but not in src/r2cnn"


def test_no_module_is_over_500_lines_but_the_named_ones():
    long = {p.relative_to(PACKAGE.parent).as_posix(): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    unnamed = {path: n for path, n in long.items() if path not in LONG_MODULES}
    assert not unnamed, (f"over {MAX_LINES} lines: {unnamed}; split each along its ideas (docs/architecture.md "
                         f"\"Layers\"), or name it in LONG_MODULES with why it is one idea")
