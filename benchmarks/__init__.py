"""Benchmarks run by `make bench`: they print figures and never act as pass/fail unit tests."""
