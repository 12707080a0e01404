"""The one line a test run ends with: which tests did not run, why, and the one command that enables them.

Used by tests/conftest.py (``pytest_sessionfinish`` below) and tested by tests/test_skips_summary.py on a tiny
throw-away suite. Skip reasons are grouped by what the tests need; a reason no group matches is shown as it is.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

# (pattern in the skip reason, what the tests are, why they skip (None: the matched text), what enables them)
CAUSES = [
    (re.compile(r"Chromium not found at \S+"), "browser", None,
     "run `sudo apt-get install chromium` (or `.ci/run` as root)"),
    (re.compile(r"\S+ is not installed|could not import \S+"), "optional-package", None,
     "run `pip install -e '.[test]'`"),
    (re.compile(r"CUDA|GPU"), "CUDA", "no CUDA device", "run them on a machine with an NVIDIA GPU"),
    (re.compile(r"real sketch data not found"), "real-data", "no ../shared/data",
     "put the real sketch data at ../shared/data (developers' machines)"),
]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun} test{'' if n == 1 else 's'}"


def skip_summary(reasons: list[str], deselected: int = 0, markexpr: str = "") -> str | None:
    """One line for ``reasons`` (one skip reason per skipped test or module, "Skipped: " prefix optional) and
    ``deselected`` tests left out by ``-m markexpr``; ``None`` when everything ran."""
    groups: Counter[tuple[str, str, str | None]] = Counter()
    for reason in reasons:
        reason = reason.removeprefix("Skipped: ").strip()
        for pattern, noun, why, enable in CAUSES:
            m = pattern.search(reason)
            if m:
                groups[noun, why or m.group(0), enable] += 1
                break
        else:
            groups["other", reason, None] += 1
    parts = [f"{_plural(n, noun)} ({why}{': ' + enable if enable else ''})" for (noun, why, enable), n in
             groups.items()]
    line = "skipped: " + ", ".join(parts) if parts else ""
    if deselected:
        what = (f"{_plural(deselected, 'slow')} (run `make test-all`)" if markexpr.strip() == "not slow"
                else f"{deselected} test{'' if deselected == 1 else 's'} (not selected by -m/-k)")
        line += ("; " if line else "") + "deselected: " + what
    return line or None


def _reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    """After pytest's own closing line (its wrapper runs inside this one): the skip summary, so the run ends
    with it."""
    result = yield
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        line = skip_summary([_reason(r) for r in reporter.stats.get("skipped", [])],
                            len(reporter.stats.get("deselected", [])), session.config.option.markexpr or "")
        if line:
            reporter.write_line(line, yellow=True)
    return result
