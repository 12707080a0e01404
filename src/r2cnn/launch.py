"""The environment the ``r2cnn`` launcher gives the commands that train or benchmark.

Below the command line (:mod:`r2cnn.cli` restarts itself with it) and the benchmarks that start such commands
(``r2cnn bench serve`` starts the server as the launcher would).
"""

from __future__ import annotations

# Commands that train or benchmark start with these set (they act only at start-up, so the launcher restarts the
# process once to set them; a value the user set is kept):
# - glibc's malloc thresholds keep big tensors mapped between steps (docs/architecture.md "Performance");
# - OMP_WAIT_POLICY=PASSIVE: an idle OpenMP thread sleeps at once instead of spinning for up to ~300k iterations
#   (libgomp's default) after each parallel region. Spinning only pays on cores nobody else wants; on a shared
#   machine the spinning threads of one training took the cores from another (two concurrent trainings slowed each
#   other 7-16x). The regions that stay multi-threaded (convolutions, big GEMMs and element-wise ops) are long
#   against the microseconds it takes to wake a sleeping thread (r2cnn.models.encoder, module docstring).
LAUNCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000",
              "OMP_WAIT_POLICY": "PASSIVE"}
HEAVY_COMMANDS = {"train", "bench", "evaluate", "demo", "visualize", "report", "experiment", "serve"}


# `serve` gets OMP_WAIT_POLICY alone: with the malloc thresholds a server kept the memory of its busiest burst for
# good (docs/architecture.md "Serving under load": 1.33-1.46x its idle RSS after a burst, against 1.03-1.18x with
# glibc's defaults, `r2cnn bench serve --server-malloc`).
SERVE_UNSET = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def launch_env(command: str) -> dict[str, str]:
    """The variables the launcher sets for ``command``: :data:`LAUNCH_ENV` for the heavy ones, less the malloc
    thresholds for ``serve``."""
    if command not in HEAVY_COMMANDS:
        return {}
    return {k: v for k, v in LAUNCH_ENV.items() if not (command == "serve" and k in SERVE_UNSET)}
