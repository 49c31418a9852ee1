"""The quality probe on a 50,000-token text against simulated targets: seconds per target.

The text is the shipped sample repeated to 50k tokens (speed does not depend on the words);
targets are simulators at their profiles' timing (speed 1), probed with the default window
1024 / stride 512, 50 agreement prompts and concurrency. Target (issue 18): under a minute
per simulated target.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from loadtest.quality.config import QualityConfig
from loadtest.quality.text import default_text_path, read_text
from quantbench.config import BenchConfig
from quantbench.quality import run_quality
from services.sim.tokens import count_tokens

__all__ = ["QualitySpeed", "describe", "measure_quality_speed"]


@dataclass(frozen=True)
class QualitySpeed:
    tokens: int
    windows: int
    per_target_s: dict[str, float]  # perplexity + agreement, per target
    perplexity_s: dict[str, float]


def _text(tokens: int, folder: Path) -> Path:
    sample = read_text(default_text_path())
    copies = -(-tokens // count_tokens(sample))
    path = folder / "text.txt"
    path.write_text("\n\n".join([sample] * copies))
    return path


def measure_quality_speed(tokens: int = 50_000) -> QualitySpeed:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = BenchConfig.model_validate(
            {
                "name": "bench",
                "targets": [
                    {"name": "vllm-fp16", "sim": {"stack": "vllm", "quant": "fp16"}},
                    {"name": "vllm-awq", "sim": {"stack": "vllm", "quant": "awq"}},
                    {"name": "tgi-gptq", "api": "tgi", "sim": {"stack": "tgi", "quant": "gptq"}},
                ],
            }
        )
        config.quality = QualityConfig(text=_text(tokens, folder), max_text_tokens=tokens)
        _, result, _ = run_quality(config, folder, console=Console(quiet=True))
    per_target = {t["name"]: round(sum(t["seconds"].values()), 1) for t in result["targets"]}
    perplexity = {t["name"]: t["seconds"]["perplexity"] for t in result["targets"]}
    return QualitySpeed(result["text"]["tokens"], result["text"]["windows"], per_target, perplexity)


def describe(r: QualitySpeed) -> str:
    rows = ", ".join(
        f"{name} {seconds:.1f} s ({r.perplexity_s[name]:.1f} s perplexity)"
        for name, seconds in r.per_target_s.items()
    )
    return (
        f"quality probe (simulated targets, speed 1): {r.tokens:,}-token text, window 1024, "
        f"stride 512, {r.windows} windows, 50 greedy prompts; per target: {rows} "
        "(target: < 60 s per simulated target)"
    )
