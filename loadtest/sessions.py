"""Multi-turn conversations for closed-loop users (`workload.sessions`), as pure objects.

A user holds one conversation at a time. Each turn's request carries the whole conversation so
far as chat messages (an optional system prompt shared by every conversation, then each user
message and the answer to it), so its context grows turn by turn, as a chat client's does;
the next turn is sent `think_time` after the previous answer arrived. A turn that fails ends
its conversation (its user saw no answer to go on from).

The history's answers are text of the length the server generated: from the file's own
answers (ShareGPT `gpt` turns) where it has them, else synthetic text of that many tokens.
The client does not keep the streamed text, so the history repeats a server's prompt tokens
exactly but not the KV of its own answers (a real client sends back the text it received).

Every draw is seeded by the workload's seed and the user: the same seed gives the same
conversations, turn lengths and think times.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.config import SecondsDist, SessionsConfig, WorkloadConfig
from loadtest.prompts import DatasetError, PromptSource
from loadtest.workload import GenRequest, length_bound, lognormal, sample_length

__all__ = [
    "Conversations",
    "Script",
    "Turn",
    "load_conversations",
    "longest_turn",
    "sample_seconds",
]

Message = tuple[str, str]  # (role, text)
_USER_ROLES = ("human", "user")
_ANSWER_ROLES = ("gpt", "assistant", "chatgpt", "bard", "bing", "model")


@dataclass(frozen=True)
class Script:
    """One conversation of a file: its system prompt, and each user message with the answer
    that followed it (None where the file has none)."""

    system: str | None
    turns: tuple[tuple[str, str | None], ...]


def _value(turn: Any) -> tuple[str, str] | None:
    if not isinstance(turn, dict):
        return None
    role, text = turn.get("from", turn.get("role")), turn.get("value", turn.get("content"))
    if not isinstance(role, str) or not isinstance(text, str):
        return None
    return role.lower(), text


def _script(entry: Any, index: int, path: Path) -> Script | None:
    turns = entry.get("conversations") if isinstance(entry, dict) else None
    if not isinstance(turns, list):
        raise DatasetError(f"{path}: entry {index} has no `conversations` list (ShareGPT)")
    system: str | None = None
    pairs: list[tuple[str, str | None]] = []
    for raw in turns:
        found = _value(raw)
        if found is None:
            raise DatasetError(
                f"{path}: entry {index}: a turn without `from` and `value` text (ShareGPT)"
            )
        role, text = found
        if role == "system" and not pairs:
            system = text
        elif role in _USER_ROLES and text.strip():
            pairs.append((text, None))
        elif role in _ANSWER_ROLES and pairs and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], text)
    return Script(system, tuple(pairs)) if pairs else None


def load_conversations(path: Path) -> list[Script]:
    """ShareGPT-style JSON (`[{"conversations": [{"from": "human", "value": ...}, {"from":
    "gpt", ...}, ...]}]`; `role`/`content` keys are read too); one clear error if unusable.
    Conversations without a user message are skipped; answers before the first are ignored."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of conversations (ShareGPT)")
    scripts = [s for i, entry in enumerate(data) if (s := _script(entry, i, path)) is not None]
    if not scripts:
        raise DatasetError(f"{path}: no conversation with a user message")
    return scripts


def sample_seconds(dist: SecondsDist, rng: random.Random) -> float:
    """One draw of a think time, clipped to [min, max]."""
    if dist.dist == "fixed":
        value = dist.mean
    elif dist.dist == "uniform":
        value = rng.uniform(dist.min, float(dist.max or dist.min))
    elif dist.dist == "exponential":
        value = rng.expovariate(1.0 / dist.mean) if dist.mean > 0 else 0.0
    else:
        value = lognormal(rng, dist.mean, dist.std)
    return min(max(value, dist.min), dist.max if dist.max is not None else math.inf)


@dataclass(frozen=True)
class Turn:
    """The next request of a user's conversation: `think_s` to wait before sending it (0 for
    a conversation's first turn), the conversation's id and the turn's index (0 = first)."""

    request: GenRequest
    session: int
    turn: int
    think_s: float


@dataclass
class _Open:
    session: int
    script: Script | None  # None: synthetic
    turns: int
    history: list[Message]
    asked: int = 0  # user turns sent so far
    pending_answer: str | None = None  # the file's answer to the turn in flight


class Conversations:
    """One user's endless run of conversations (see the module docstring)."""

    def __init__(
        self,
        workload: WorkloadConfig,
        user: int | str,
        prompts: PromptSource,
        scripts: Sequence[Script] | None = None,
    ) -> None:
        if workload.sessions is None:
            raise ValueError("Conversations needs workload.sessions")
        self._workload = workload
        self._config: SessionsConfig = workload.sessions
        self._prompts = prompts
        self._scripts = scripts
        self._rng = random.Random(f"{workload.seed}:sessions:{user}")
        self._system = _system_prompt(workload, prompts)
        self._user = user
        self._started = 0
        self._open: _Open | None = None
        self._think_s = 0.0

    def _start(self) -> _Open:
        config = self._config
        script = self._rng.choice(self._scripts) if self._scripts else None
        if script is not None:
            turns = len(script.turns)
            system = script.system if script.system is not None else self._system
        else:
            turns = sample_length(config.turns, self._rng)
            system = self._system
        if config.max_turns is not None:
            turns = min(turns, config.max_turns)
        session = _session_id(self._workload.seed, self._user, self._started)
        self._started += 1
        history: list[Message] = [("system", system)] if system else []
        return _Open(session, script, turns, history)

    def next_turn(self) -> Turn:
        """The conversation's next request (a new conversation when the last one ended)."""
        think_s = self._think_s
        if self._open is None:
            self._open, think_s = self._start(), 0.0
        conversation = self._open
        if conversation.script is not None:
            text, answer = conversation.script.turns[conversation.asked]
            output = self._prompts.count(answer) if answer else 0
            output = output or sample_length(self._workload.output_tokens, self._rng)
        else:
            tokens = sample_length(self._config.user_tokens, self._rng)
            text, answer = self._prompts.make(tokens, self._rng), None
            output = sample_length(self._workload.output_tokens, self._rng)
        conversation.history.append(("user", text))
        conversation.pending_answer = answer
        messages = tuple(conversation.history)
        counted = sum(self._prompts.count(content) for _, content in messages)
        turn = Turn(
            GenRequest(prompt=text, prompt_tokens=counted, max_tokens=output, messages=messages),
            conversation.session,
            conversation.asked,
            think_s,
        )
        conversation.asked += 1
        return turn

    def answered(self, output_tokens: int | None) -> None:
        """The turn in flight ended: with `output_tokens` generated, or None if it failed
        (which ends the conversation). Draws the think time before the next turn."""
        conversation = self._open
        if conversation is None:
            return
        if output_tokens is None or conversation.asked >= conversation.turns:
            self._open = None
            self._think_s = 0.0
            return
        answer = conversation.pending_answer
        if answer is None:
            answer = self._prompts.make(max(output_tokens, 1), self._rng)
        conversation.history.append(("assistant", answer))
        self._think_s = sample_seconds(self._config.think_time, self._rng)


def _system_prompt(workload: WorkloadConfig, prompts: PromptSource) -> str | None:
    assert workload.sessions is not None
    tokens = workload.sessions.system_prompt_tokens
    if tokens <= 0:
        return None
    return prompts.make(tokens, random.Random(f"{workload.seed}:system"))


def _session_id(seed: int, user: int | str, number: int) -> int:
    """A stable 63-bit id of a user's `number`-th conversation."""
    digest = hashlib.blake2b(f"{seed}:{user}:{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) >> 1


def _script_tokens(script: Script, prompts: PromptSource) -> int:
    return sum(prompts.count(user) + prompts.count(answer or "") for user, answer in script.turns)


def longest_turn(
    workload: WorkloadConfig, prompts: PromptSource, scripts: Sequence[Script] | None = None
) -> GenRequest:
    """The longest turn a conversation can send (its whole history at its last turn, with the
    longest lengths), for the readiness probe: a target that cannot hold it fails first."""
    config = workload.sessions
    if config is None:
        raise ValueError("longest_turn needs workload.sessions")
    rng = random.Random(f"{workload.seed}:longest")
    system = _system_prompt(workload, prompts)
    history: list[Message] = [("system", system)] if system else []
    output = length_bound(workload.output_tokens)[0]
    if scripts:
        script = max(
            scripts, key=lambda s: sum(prompts.count(f"{u} {a or ''}") for u, a in s.turns)
        )
        pairs = list(script.turns)[: config.max_turns]
        if script.system is not None:
            history = [("system", script.system)]
    else:
        turns = length_bound(config.turns)[0]
        if config.max_turns is not None:
            turns = min(turns, config.max_turns)
        user = length_bound(config.user_tokens)[0]
        pairs = [(prompts.make(user, rng), prompts.make(output, rng)) for _ in range(turns)]
    for index, (text, answer) in enumerate(pairs):
        history.append(("user", text))
        if index < len(pairs) - 1:
            history.append(("assistant", answer or prompts.make(output, rng)))
    messages = tuple(history)
    counted = sum(prompts.count(content) for _, content in messages)
    last_answer = pairs[-1][1]
    max_tokens = (prompts.count(last_answer) if last_answer else 0) or output
    return GenRequest(pairs[-1][0], counted, max_tokens, messages=messages)
