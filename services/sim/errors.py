"""Errors of the simulator: one small hierarchy so callers can print one clear line."""

from __future__ import annotations

__all__ = ["SimConfigError", "SimError"]


class SimError(Exception):
    """Base class of every error the simulator raises on purpose."""


class SimConfigError(SimError):
    """An unknown stack, quantization, GPU or a malformed profile file."""
