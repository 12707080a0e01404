"""Dependencies: pyproject.toml gives ranges (so the package installs beside a user's torch), constraints.txt pins
the tested versions, and the install path of `make` and CI uses those pins."""

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement  # a dependency of pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_pyproject_ranges_hold_the_pinned_versions():
    requirements = {Requirement(r).name.lower(): Requirement(r)
                    for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    pins = _pins()
    assert {"torch", "torchvision"} <= set(pins)
    for name, version in pins.items():
        spec = requirements[name].specifier
        assert "==" not in str(spec), f"pyproject pins {name} exactly ({spec}); give a range"
        assert spec.contains(version), f"constraints.txt's {name}=={version} is outside pyproject's {spec}"


def test_make_and_ci_install_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if re.search(r"pip install", line)]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert re.search(r"^\$\(VENV\)/\.installed:.*constraints\.txt", makefile, re.M)  # a new pin reinstalls
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)  # CI goes through the Makefile's install
