"""The probe's inputs: windows like the Hugging Face perplexity guide, task files, the bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loadtest.quality import QualityConfig, QualityInputError, plan_windows
from loadtest.quality.text import (
    Task,
    default_prompts_path,
    default_text_path,
    load_prompts,
    load_tasks,
    read_text,
)


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(4488, 1024, 512), (1000, 256, 256), (50, 64, 16), (1025, 1024, 1)]
)
def test_every_token_is_scored_once_with_at_least_window_minus_stride_context(
    n: int, window: int, stride: int
) -> None:
    windows = plan_windows(n, window, stride)
    scored = [t for w in windows for t in range(w.scored_from, w.end)]
    assert scored == list(range(n)), "each token scored exactly once, in order"
    assert all(w.end - w.begin <= window for w in windows)
    assert windows[0].scored_from == 0
    for w in windows[1:]:
        assert w.scored_from - w.begin >= window - stride, "scored tokens keep their context"


def test_the_first_windows_of_the_guide() -> None:
    windows = plan_windows(2000, 1024, 512)
    assert [(w.begin, w.end, w.scored_from) for w in windows] == [
        (0, 1024, 0), (512, 1536, 1024), (1024, 2000, 1536)
    ]  # fmt: skip


def test_shipped_inputs_load() -> None:
    assert len(read_text(default_text_path()).split()) > 3000
    assert len(load_prompts(default_prompts_path())) == 50


def test_tasks_match_case_and_space_insensitively(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(
        '{"prompt": "Capital of France?", "answer": "Paris"}\n\n'
        '{"prompt": "2+2=", "answer": "4", "match": "exact"}\n'
    )
    tasks = load_tasks(path)
    assert tasks[0].correct(" It is  PARIS.") and not tasks[0].correct("Lyon")
    assert tasks[1].correct(" 4 ") and not tasks[1].correct("4, of course")
    assert Task("p", "a b").correct("x A\nB y")


def test_a_bad_task_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "no answer"}\n')
    with pytest.raises(QualityInputError, match=r"tasks.jsonl:2: expected"):
        load_tasks(path)


def test_the_bar_is_a_percentage_or_a_fraction() -> None:
    assert QualityConfig(max_ppl_increase="2%").max_ppl_increase == pytest.approx(0.02)
    assert QualityConfig(max_ppl_increase=0.015).max_ppl_increase == 0.015
    for bad in ("2", 2, "lots"):
        with pytest.raises(ValidationError, match=r"2% or 0\.02"):
            QualityConfig(max_ppl_increase=bad)
    with pytest.raises(ValidationError, match="stride"):
        QualityConfig(window=128, stride=256)
