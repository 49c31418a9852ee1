"""The user-facing error tree: each becomes one line on stderr and exit code 2.

QuantbenchError
├── ConfigError   bench.yaml or a flag is wrong (names the file and field)
└── HarnessError  a target, simulator or Locust could not be run (names the target)
"""

from __future__ import annotations

__all__ = ["ConfigError", "HarnessError", "QuantbenchError"]


class QuantbenchError(Exception):
    """Base of every error that is the user's to fix; printed without a traceback."""


class ConfigError(QuantbenchError):
    pass


class HarnessError(QuantbenchError):
    pass
