"""Seeded request generation: token lengths from distributions, prompts from `prompts.py`.

Every request of a run is a deterministic function of the seed and its stream (a closed-loop
user, or an arrival of the open-loop schedule): the same seed gives the same prompts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from loadtest.config import LengthDist, WorkloadConfig
from loadtest.prompts import DatasetItem, PromptSource

__all__ = [
    "VOCABULARY",
    "GenRequest",
    "RequestFactory",
    "length_bound",
    "lognormal",
    "longest_request",
    "prompt_source",
    "sample_length",
]

_VOCABULARY = (
    "the of and to in is was for on are with as by at be this from that have or not but "
    "all were when we there can an your which their if do will each about how up out them "
    "then she many some so these would other into has more her two like him see time could "
    "no make than first been its who now people my made over did down only way find use "
    "may water long little very after words called just where most know get through back "
    "much before go good new write our used me man too any day same right look think also "
    "around another came come work three word must because does part even place well such "
    "here take why things help put years different away again off went old number great "
    "tell men say small every found still between name should home big give air line set "
    "own under read"
)
VOCABULARY = tuple(_VOCABULARY.split())


def sample_length(dist: LengthDist, rng: random.Random) -> int:
    """Draw one token length, clipped to the distribution's [min, max]."""
    if dist.dist == "fixed":
        value = dist.mean
    elif dist.dist == "uniform":
        value = rng.uniform(dist.min, float(dist.max or dist.min))
    elif dist.dist == "normal":
        value = rng.normalvariate(dist.mean, dist.std)
    else:
        value = lognormal(rng, dist.mean, dist.std)
    upper = dist.max if dist.max is not None else float("inf")
    return int(min(max(round(value), dist.min), upper))


def lognormal(rng: random.Random, mean: float, std: float) -> float:
    """A lognormal draw parameterised by the distribution's own mean and std, not the
    underlying normal's (token lengths, think times)."""
    sigma2 = math.log1p((std / mean) ** 2)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, sigma2**0.5)


@dataclass(frozen=True)
class GenRequest:
    """One generation request, independent of the API that will carry it. `messages`: a
    conversation's (role, text) messages for the chat API, else the prompt alone is sent."""

    prompt: str
    prompt_tokens: int
    max_tokens: int
    messages: tuple[tuple[str, str], ...] | None = None


def prompt_source(workload: WorkloadConfig, tokens_per_word: float | None = None) -> PromptSource:
    return PromptSource(
        VOCABULARY,
        tokenizer_path=workload.tokenizer,
        tokens_per_word=tokens_per_word,
        shared_prefix_ratio=workload.shared_prefix_ratio,
        seed=workload.seed,
    )


class RequestFactory:
    """Produces the seeded sequence of requests for one virtual user (or arrival)."""

    def __init__(
        self,
        workload: WorkloadConfig,
        stream_id: int | str = 0,
        prompts: PromptSource | None = None,
        dataset: list[DatasetItem] | None = None,
    ) -> None:
        self._workload = workload
        self._rng = random.Random(f"{workload.seed}:{stream_id}")
        self._prompts = prompts or prompt_source(workload)
        self._dataset = dataset

    def next(self) -> GenRequest:
        if self._dataset:
            item = self._rng.choice(self._dataset)
            max_tokens = item.output_tokens or sample_length(
                self._workload.output_tokens, self._rng
            )
            return GenRequest(item.prompt, self._prompts.count(item.prompt), max_tokens)
        prompt_tokens = sample_length(self._workload.prompt_tokens, self._rng)
        max_tokens = sample_length(self._workload.output_tokens, self._rng)
        prompt = self._prompts.make(prompt_tokens, self._rng)
        return GenRequest(prompt=prompt, prompt_tokens=prompt_tokens, max_tokens=max_tokens)


_Z_999 = 3.09  # the standard normal's 99.9th percentile


def length_bound(dist: LengthDist) -> tuple[int, bool]:
    """(the longest length the workload draws, exact?): `max` or a fixed length exactly, else
    the 99.9th percentile of an unbounded normal or lognormal (as `sample_length` draws)."""
    if dist.max is not None:
        return dist.max, True
    if dist.dist == "fixed":
        return max(round(dist.mean), dist.min), True
    if dist.dist == "normal":
        return max(math.ceil(dist.mean + _Z_999 * dist.std), dist.min), False
    sigma2 = math.log1p((dist.std / dist.mean) ** 2)
    mu = math.log(dist.mean) - sigma2 / 2
    return max(math.ceil(math.exp(mu + _Z_999 * sigma2**0.5)), dist.min), False


def longest_request(
    workload: WorkloadConfig,
    prompts: PromptSource | None = None,
    dataset: list[DatasetItem] | None = None,
) -> GenRequest:
    """The workload's longest request (prompt plus output tokens): a readiness probe sends
    it, so a workload the target cannot serve (a prompt longer than its context, an output
    over its limit) fails before the sweep, with the server's own message."""
    rng = random.Random(f"{workload.seed}:longest")  # the probe prompt's words
    prompts = prompts or prompt_source(workload)
    output = length_bound(workload.output_tokens)[0]
    if dataset:
        item = max(dataset, key=lambda i: prompts.count(i.prompt) + (i.output_tokens or output))
        return GenRequest(item.prompt, prompts.count(item.prompt), item.output_tokens or output)
    prompt_tokens = length_bound(workload.prompt_tokens)[0]
    return GenRequest(prompts.make(prompt_tokens, rng), prompt_tokens, output)
