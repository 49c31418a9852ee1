"""The user-facing error tree: every mistake or failure the user can act on, caught once in
the CLI and printed as one line on stderr with the exit code of its kind.

QuantbenchError                  (exit 2)
├── ConfigError                  bench.yaml, a flag, or a file either names is wrong
├── InputError                   a run directory or data file cannot be read
├── HarnessError                 a target, simulator or Locust could not be run
│   ├── InterruptedRun           SIGTERM/SIGINT stopped the run (records kept, resumable)
│   └── NoValidStageError        every stage of a target is invalid: the run cannot answer
└── ThresholdError               (exit 1) a threshold the user asked to enforce failed

Raise these where the fault is known, naming the file, field or target and what would fix
it. `services`, `loadtest` and `analysis` never import `quantbench` (DESIGN.md), so they keep
their own small error classes; `translated()` maps each of those to its kind here, once, at
the CLI's edge (the table `FOREIGN_ERRORS`), and turns a stray `OSError` into a harness error
naming its file instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from analysis.plan import PlanInputError
from analysis.rundir import RunDirError
from loadtest.prompts import DatasetError
from services.sim.errors import SimError

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_OK",
    "FOREIGN_ERRORS",
    "ConfigError",
    "HarnessError",
    "InputError",
    "InterruptedRun",
    "NoValidStageError",
    "QuantbenchError",
    "ThresholdError",
    "one_line",
    "translated",
]

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class QuantbenchError(Exception):
    """Base of every error meant for the user: printed as one line, never a traceback."""

    exit_code = EXIT_ERROR
    kind = "error"


class ConfigError(QuantbenchError):
    kind = "config"


class InputError(QuantbenchError):
    kind = "input"


class HarnessError(QuantbenchError):
    kind = "harness"


class InterruptedRun(HarnessError):
    """The run was stopped by a signal; what was recorded is kept and can be resumed."""


class NoValidStageError(HarnessError):
    """A target's every stage is invalid, so the run has no figure to give for it."""


class ThresholdError(QuantbenchError):
    exit_code = EXIT_FAILED
    kind = "threshold"


#: Errors of the packages below `quantbench`, and the kind each one is.
FOREIGN_ERRORS: dict[type[Exception], type[QuantbenchError]] = {
    RunDirError: InputError,
    DatasetError: InputError,
    SimError: ConfigError,
    PlanInputError: ConfigError,
}


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise the lower packages' errors, and unexpected OS errors, as `QuantbenchError`."""
    try:
        yield
    except QuantbenchError:
        raise
    except tuple(FOREIGN_ERRORS) as exc:
        kind = next(k for cls, k in FOREIGN_ERRORS.items() if isinstance(exc, cls))
        raise kind(str(exc)) from exc
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise HarnessError(f"{where}{exc.strerror or exc}") from exc
