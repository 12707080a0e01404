"""Section 2, ``cuda-tests``: which tests skip without CUDA (found by collection, which also gives the plan its
counts) and their run on the GPU; pytest in the section's process with its outcomes counted (section 3 runs the
rasteriser's tests the same way)."""

from __future__ import annotations

import re
from pathlib import Path

from r2cnn.bench.gpu.context import Context, Failed, Skip
from r2cnn.bench.gpu.plan import RASTER_TEST_FILES


CUDA_REASON = re.compile(r"CUDA|GPU")  # as tests/_skips.py groups skip reasons
_CANDIDATE = re.compile(r"skipif\([^\n]*(CUDA|cuda|GPU)|mark\.gpu\b")


def needs_cuda(item) -> bool:
    """A pytest item that skips without CUDA: marked ``gpu``, or a ``skipif`` whose reason names CUDA or GPU."""
    if any(True for _ in item.iter_markers("gpu")):
        return True
    return any(CUDA_REASON.search(str(m.kwargs.get("reason", ""))) for m in item.iter_markers("skipif"))


def candidate_test_files(root: Path) -> list[str]:
    """Test files whose text has a CUDA/GPU ``skipif`` or a ``gpu`` mark (collection then decides per test)."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if _CANDIDATE.search(p.read_text(encoding="utf-8", errors="replace")))


class CudaOnly:
    """pytest plugin: keep only the tests that need CUDA (:func:`needs_cuda`), and note their ids."""

    def __init__(self):
        self.ids: list[str] = []

    def pytest_collection_modifyitems(self, config, items) -> None:
        keep = [i for i in items if needs_cuda(i)]
        dropped = [i for i in items if not needs_cuda(i)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        self.ids = [i.nodeid for i in keep]


class Outcomes:
    """pytest plugin: counts of passed / failed / skipped tests, the failures' ids and the skip reasons."""

    def __init__(self):
        self.counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
        self.failures: list[str] = []
        self.skip_reasons: dict[str, int] = {}
        self.collected = 0

    def pytest_collection_finish(self, session) -> None:
        self.collected = len(session.items)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            if report.outcome == "passed":
                self.counts["passed"] += 1
            elif report.outcome == "skipped":
                self.counts["skipped"] += 1
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1
            elif report.when == "call":
                self.counts["failed"] += 1
                self.failures.append(report.nodeid)
            else:
                self.counts["errors"] += 1
                self.failures.append(f"{report.nodeid} ({report.when})")

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.counts["errors"] += 1
            self.failures.append(f"{report.nodeid} (collection)")


def run_pytest(args: list[str]) -> Outcomes:
    """pytest in this process (its output in the section's log), with the outcomes counted."""
    import pytest

    outcomes = Outcomes()
    code = pytest.main(["-p", "no:cacheprovider", "-rfEs", *args], plugins=[outcomes])
    outcomes.counts["exit_code"] = int(code)
    return outcomes


def collect(ctx: Context) -> None:
    """The plan's counts: the tests that need CUDA, the other rasteriser tests, the visible GPUs."""
    import pytest

    files = candidate_test_files(ctx.root)
    selection = CudaOnly()
    # a module that does not import is counted (section 2 reports it) rather than hiding the others' tests
    errors = Outcomes()
    code = pytest.main(["-p", "no:cacheprovider", "--collect-only", "-q", "-m", "slow or not slow",
                        "--continue-on-collection-errors", *files], plugins=[selection, errors]) \
        if files else pytest.ExitCode.NO_TESTS_COLLECTED
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED, pytest.ExitCode.TESTS_FAILED):
        raise Failed(f"collecting {', '.join(files)} failed (pytest exit code {int(code)})")
    counter = Outcomes()
    pytest.main(["-p", "no:cacheprovider", "--collect-only", "-q", "-m", "slow or not slow", *RASTER_TEST_FILES,
                 *[f"--deselect={i}" for i in selection.ids]], plugins=[counter])
    import torch

    ctx.record(cuda_tests=selection.ids, candidate_files=files, raster_tests=counter.collected,
               collection_errors=errors.failures,
               gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0)


def cuda_test_ids(ctx: Context) -> list[str]:
    if ctx.cuda_tests is None:
        collect(ctx)  # the plan's collection failed: try again here, so its error lands in this log
        ctx.cuda_tests, ctx.collection_errors = ctx.figures["cuda_tests"], ctx.figures["collection_errors"]
    return ctx.cuda_tests


def section_cuda_tests(ctx: Context) -> None:
    ids = cuda_test_ids(ctx)
    ctx.figures.clear()
    ctx.record(found=len(ids), tests=ids, collection_errors=ctx.collection_errors)
    print(f"{len(ids)} tests skip without CUDA:\n  " + "\n  ".join(ids))
    unimportable = (f"test modules that do not import here: {', '.join(ctx.collection_errors)} (the plan's "
                    f"collection, at the top of this log)")
    if not ctx.cuda or not ids:
        if ctx.collection_errors:
            raise Failed(unimportable)
        raise Skip("no test skips without CUDA" if not ids else
                   f"no CUDA device: the {len(ids)} tests that need one were collected (figures.tests) and run on "
                   f"a GPU")
    ctx.require_cuda()
    outcomes = run_pytest(["-m", "slow or not slow", *ids])
    skipped = outcomes.counts["skipped"]
    ctx.record(**outcomes.counts, failures=outcomes.failures, skip_reasons=outcomes.skip_reasons,
               headline=f"{outcomes.counts['passed']} passed, {outcomes.counts['failed']} failed, {skipped} skipped "
                        f"of {len(ids)}" + (f" ({max(outcomes.skip_reasons, key=outcomes.skip_reasons.get)})"
                                            if skipped else ""))
    check_tests(outcomes, len(ids))
    if ctx.collection_errors:
        raise Failed(unimportable)


def check_tests(outcomes: Outcomes, n: int) -> None:
    bad = outcomes.counts["failed"] + outcomes.counts["errors"]
    if bad or outcomes.counts["exit_code"] not in (0, 5):
        raise Failed(f"{bad} of {n} tests failed or errored: {', '.join(outcomes.failures[:5])}"
                     + (" ..." if len(outcomes.failures) > 5 else "") + " (see the log)")
