"""The quality probe: perplexity over fixed token windows and greedy agreement, measured
through each target's own HTTP API (no model files needed on the client)."""

from loadtest.quality.client import Endpoint, NotMeasurable, TargetClient, client_for
from loadtest.quality.config import QualityConfig, parse_fraction
from loadtest.quality.probe import (
    ProbePlan,
    TargetMeasurement,
    WindowScore,
    build_plan,
    check_inputs,
    measure_target,
)
from loadtest.quality.text import QualityInputError, Task, TokenizedText, Window, plan_windows
from loadtest.quality.tokenizer import LocalTokenizer, TextTokenizer

__all__ = [
    "Endpoint",
    "LocalTokenizer",
    "NotMeasurable",
    "ProbePlan",
    "QualityConfig",
    "QualityInputError",
    "TargetClient",
    "TargetMeasurement",
    "Task",
    "TextTokenizer",
    "TokenizedText",
    "Window",
    "WindowScore",
    "build_plan",
    "check_inputs",
    "client_for",
    "measure_target",
    "parse_fraction",
    "plan_windows",
]
