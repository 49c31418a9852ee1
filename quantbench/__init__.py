"""quantbench: measure LLM serving stacks × quantizations on your own GPU, honestly.

This package is the composition root: the `quantbench` CLI and the `bench.yaml` schema.
"""

__version__ = "0.1.0"
