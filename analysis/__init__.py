"""Analysis: run directories in, statistics, comparisons and reports out.

Reads records through `loadtest.records` only; statistics are pure and separate from rendering.
"""
