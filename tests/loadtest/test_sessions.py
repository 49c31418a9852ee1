"""Conversations for closed-loop users (pure): history, think times, file and synthetic."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from loadtest.config import SecondsDist, WorkloadConfig
from loadtest.prompts import DatasetError, PromptSource
from loadtest.sessions import Conversations, load_conversations, sample_seconds
from loadtest.workload import VOCABULARY

SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "be brief"},
            {"from": "human", "value": "one two three"},
            {"from": "gpt", "value": "four five"},
            {"from": "human", "value": "six"},
            {"from": "gpt", "value": "seven eight nine ten"},
        ]
    }
]


def _workload(sessions: dict[str, object], **extra: object) -> WorkloadConfig:
    return WorkloadConfig.model_validate({"sessions": sessions, "output_tokens": 5, **extra})


def test_a_file_conversation_sends_its_turns_with_the_history_and_its_answer_lengths(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chats.json"
    path.write_text(json.dumps(SHAREGPT))
    scripts = load_conversations(path)
    workload = _workload({"file": str(path), "think_time": "2s"})
    user = Conversations(workload, 0, PromptSource(VOCABULARY), scripts)
    first = user.next_turn()
    assert (first.turn, first.think_s) == (0, 0.0)
    assert first.request.messages == (("system", "be brief"), ("user", "one two three"))
    assert first.request.max_tokens == 2  # the file's answer: "four five"
    assert first.request.prompt_tokens == 5
    user.answered(2)
    second = user.next_turn()
    assert (second.turn, second.think_s, second.session) == (1, 2.0, first.session)
    assert second.request.messages == (
        ("system", "be brief"), ("user", "one two three"), ("assistant", "four five"),
        ("user", "six"),
    )  # fmt: skip
    assert second.request.max_tokens == 4
    user.answered(4)  # the last turn: the next is a new conversation, without a think time
    third = user.next_turn()
    assert (third.turn, third.think_s) == (0, 0.0) and third.session != first.session


def test_a_synthetic_answer_in_the_history_is_as_long_as_the_server_made_it() -> None:
    workload = _workload({"turns": 3, "user_tokens": 10, "think_time": "1s"})
    prompts = PromptSource(VOCABULARY)
    user = Conversations(workload, "u", prompts)
    first = user.next_turn()
    assert first.request.prompt_tokens == 10 and first.request.max_tokens == 5
    user.answered(7)  # the server stopped at 7 tokens
    second = user.next_turn()
    (_, answer) = second.request.messages[1]
    assert prompts.count(answer) == 7 and second.request.prompt_tokens == 10 + 7 + 10
    again = Conversations(workload, "u", prompts).next_turn()
    assert again.request.messages == first.request.messages, "seeded by workload seed and user"


def test_a_failed_turn_ends_its_conversation() -> None:
    user = Conversations(_workload({"turns": 5}), 0, PromptSource(VOCABULARY))
    first = user.next_turn()
    user.answered(None)
    after = user.next_turn()
    assert after.turn == 0 and after.session != first.session and after.think_s == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not valid JSON"),
        ('{"a": 1}', "expected a JSON list of conversations (ShareGPT)"),
        ('[{"nope": 1}]', "entry 0 has no `conversations` list (ShareGPT)"),
        ('[{"conversations": [{"from": "gpt", "value": "hi"}]}]', "no conversation with a user"),
    ],
)
def test_a_bad_sharegpt_file_is_one_error_naming_it(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "chats.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=re.escape(expected)) as caught:
        load_conversations(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_think_times_follow_their_distribution_within_bounds() -> None:
    rng = random.Random(0)
    draw = lambda spec: [sample_seconds(SecondsDist.model_validate(spec), rng) for _ in range(4000)]  # noqa: E731
    assert set(draw("1.5s")) == {1.5}
    uniform = draw({"dist": "uniform", "mean": 1, "min": 0.5, "max": 2})
    assert min(uniform) >= 0.5 and max(uniform) <= 2
    exponential = draw({"dist": "exponential", "mean": 2})
    assert sum(exponential) / len(exponential) == pytest.approx(2, rel=0.1)
    clipped = draw({"dist": "lognormal", "mean": 3, "std": 2, "max": 4})
    assert max(clipped) == 4 and sum(clipped) / len(clipped) < 3
