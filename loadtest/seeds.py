"""Stable integer seeds from text seeds, for every seeded draw of the load generator."""

from __future__ import annotations

__all__ = ["hash_seed"]


def hash_seed(seed: int | str) -> int:
    """A stable integer from a seed that may be text (e.g. "7:stage2:worker1"); Python's own
    `hash` of a string changes from process to process."""
    if isinstance(seed, int):
        return seed
    value = 0
    for char in seed.encode():
        value = (value * 131 + char) % (2**63)
    return value
