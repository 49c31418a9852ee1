"""The `quality:` section of bench.yaml: what the quality probe sends and the accuracy bar.

Perplexity follows the literature's sliding window (the Hugging Face perplexity guide): windows
of `window` tokens every `stride` tokens, each scoring only the tokens the previous one did
not. The AWQ and GPTQ papers use disjoint 2048-token windows (`window: 2048, stride: 2048`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from loadtest.config import Duration

__all__ = ["QualityConfig", "parse_fraction"]

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_fraction(value: object) -> object:
    """`2%` or a fraction below 1 (`0.02`); anything else is left to fail with a hint."""
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            return float(match.group(1)) / 100
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage; write e.g. 2% or 0.02") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        raise ValueError(f"{value} is not a fraction below 1; write e.g. 2% or 0.02")
    return value


Fraction = Annotated[float, BeforeValidator(parse_fraction), Field(ge=0)]


class QualityConfig(BaseModel):
    """What the quality probe measures: `quantbench quality`, and `quantbench run` after each
    target's load stages.

    `text`: perplexity text (default: the sample shipped with quantbench); `tokenizer`: a local
    tokenizer.json to cut it into tokens (default: `workload.tokenizer`, else the reference
    target's own `/tokenize`; in `quantbench run`, the first target probed); `prompts`: one
    prompt per line for greedy agreement (default: the shipped set); `tasks`: JSON lines
    `{"prompt", "answer", "match": "contains"|"exact"}` for accuracy; `reference`: the FP16
    target (default: the first target whose quant is fp16).
    """

    model_config = ConfigDict(extra="forbid")

    text: Path | None = None
    tokenizer: Path | None = None
    window: int = Field(default=1024, ge=16, description="tokens per perplexity window")
    stride: int = Field(default=512, ge=1, description="tokens between window starts")
    max_text_tokens: int | None = Field(
        default=None, ge=16, description="use only the first N tokens of the text"
    )
    prompts: Path | None = None
    max_tokens: int = Field(default=32, ge=1, description="greedy tokens per agreement prompt")
    tasks: Path | None = None
    reference: str | None = None
    max_ppl_increase: Fraction | None = None
    concurrency: int = Field(default=8, ge=1, description="requests in flight per target")
    timeout: Duration = 120.0

    @model_validator(mode="after")
    def _stride_fits(self) -> QualityConfig:
        if self.stride > self.window:
            raise ValueError(
                f"stride ({self.stride}) is larger than window ({self.window}): tokens between "
                "windows would never be scored"
            )
        return self
