"""What a run directory keeps of the probe: the plan (every window, prompt and task asked) and
each target's raw measurement, read back identical, so a resumed run asks the same."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.quality import QualityConfig, TargetMeasurement, TokenizedText, WindowScore
from loadtest.quality.probe import ProbePlan, build_plan


class WordTokenizer:
    """One token per word, with offsets and a BOS prefix: enough to cut a text into windows."""

    def tokenize(self, text: str) -> TokenizedText:
        ids, offsets, at = [], [], 0
        for word in text.split():
            start = text.index(word, at)
            at = start + len(word)
            ids.append(len(word))
            offsets.append((start, at))
        return TokenizedText(text, ids, [1], offsets, "words")

    def detokenize(self, ids: list[int]) -> str | None:
        return None


def test_a_plan_reads_back_as_the_same_plan(tmp_path: Path) -> None:
    (tmp_path / "text.txt").write_text(" ".join(f"w{k % 7}ord" for k in range(300)))
    (tmp_path / "tasks.jsonl").write_text('{"prompt": "2+2=", "answer": "4", "match": "exact"}\n')
    config = QualityConfig(text=tmp_path / "text.txt", window=64, stride=32,
                           tasks=tmp_path / "tasks.jsonl")  # fmt: skip
    tokenizer = WordTokenizer()
    plan = build_plan(config, tokenizer)
    assert len(plan.windows) > 5 and plan.window_texts is not None
    back = ProbePlan.from_json(json.loads(json.dumps(plan.to_json())), config, tokenizer)
    assert back == plan
    assert back.describe() == plan.describe()


def test_a_measurement_reads_back_as_the_same_measurement() -> None:
    measured = TargetMeasurement(
        windows=[WindowScore(0, 0, 64, 123.5, 64, "abc"), WindowScore(1, 32, 96, 60.25, 32, "d")],
        outputs=["a b", "c"],
        output_ids=[[1, 2], [3]],
        divergence_error=None,
        task_outputs=["4"],
        task_correct=[True],
        seconds={"perplexity": 1.5},
        agreement_error=None,
        perplexity_error=None,
    )
    assert TargetMeasurement.from_json(json.loads(json.dumps(measured.to_json()))) == measured
    failed = TargetMeasurement(perplexity_error="prompt log-probs: HTTP 422", tasks_error="x")
    assert TargetMeasurement.from_json(json.loads(json.dumps(failed.to_json()))) == failed
