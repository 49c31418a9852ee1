"""What the quality probe asks a serving endpoint, per API: tokenize a text, score a window of
tokens (prompt log-probs), generate greedily.

OpenAI-style servers (vLLM, our ExLlamaV2 server) score token ids through completions with
`echo`, `max_tokens: 0`, `logprobs` and `return_tokens_as_token_ids` (vLLM 0.33
`completion/serving.py`: the prompt's logprobs, the first null). TGI scores text through
`/generate` with `decoder_input_details` (router `PrefillToken {id, text, logprob}`, the first
null; refused on streams) and reports the ids it saw. A server that cannot answer raises
`NotMeasurable` with the reason: the probe reports it, never a zero.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import httpx

from loadtest.quality.text import TokenizedText

__all__ = [
    "Endpoint",
    "NotMeasurable",
    "OpenAIQualityClient",
    "Scored",
    "TargetClient",
    "TgiQualityClient",
    "client_for",
]

Scored = list[tuple[int | None, float | None]]  # (token id if reported, log-prob) per token
_ERROR_CHARS = 200


class NotMeasurable(Exception):
    """A measure this target's API cannot give; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    api: str  # openai | tgi
    stack: str  # vllm | tgi | exllamav2 | other
    model: str | None = None
    api_key: str | None = None


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:_ERROR_CHARS]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))[:_ERROR_CHARS]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:_ERROR_CHARS]
    return str(error or data)[:_ERROR_CHARS]


def _split_prefix(full: list[int], bare: list[int]) -> list[int]:
    """The special tokens a tokenizer puts before `bare` (the same text without them)."""
    for k in range(len(full) - len(bare) + 1):
        if full[k : k + len(bare)] == bare:
            return full[:k]
    raise NotMeasurable("the tokenizer's ids with and without special tokens do not line up")


class TargetClient(ABC):
    """One target's HTTP API as the probe needs it; `transport` is injectable for tests."""

    def __init__(
        self, endpoint: Endpoint, timeout_s: float, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.endpoint = endpoint
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = httpx.Client(
            base_url=endpoint.url, timeout=timeout_s, headers=headers, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any], what: str) -> Any:
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise NotMeasurable(f"{what}: {path} failed: {exc}") from exc
        if response.status_code == 404:
            raise NotMeasurable(f"{what}: the server has no {path} route (HTTP 404)")
        if response.status_code >= 400:
            raise NotMeasurable(
                f"{what}: {path} answered HTTP {response.status_code}: {_error_text(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise NotMeasurable(f"{what}: {path} answered something that is not JSON") from exc

    @abstractmethod
    def tokenize(self, text: str) -> TokenizedText: ...

    def detokenize(self, ids: list[int]) -> str | None:
        """The text of `ids`, if the server can say (vLLM's `/detokenize`)."""
        return None

    @abstractmethod
    def score(self, prefix: list[int], ids: list[int], text: str | None) -> Scored:
        """Log-probs of `prefix + ids` (or of `text`, for text-only APIs), one per token."""

    @property
    def needs_text(self) -> bool:
        """Whether `score` needs the window's text rather than its ids."""
        return False

    @abstractmethod
    def generate(self, prompt: str, max_tokens: int) -> str:
        """The greedy continuation of `prompt` (temperature 0), at most `max_tokens` tokens."""


class OpenAIQualityClient(TargetClient):
    def _model(self) -> dict[str, Any]:
        return {"model": self.endpoint.model} if self.endpoint.model else {}

    def tokenize(self, text: str) -> TokenizedText:
        if self.endpoint.stack == "exllamav2":  # TabbyAPI-style route; BOS from the empty text
            full = self._post("/v1/token/encode", {"text": text}, "tokenize")["tokens"]
            prefix = self._post("/v1/token/encode", {"text": ""}, "tokenize")["tokens"]
            if full[: len(prefix)] != prefix:
                prefix = []
            ids = full[len(prefix) :]
        else:
            body = {**self._model(), "prompt": text}
            full = self._post("/tokenize", {**body, "add_special_tokens": True}, "tokenize")
            bare = self._post("/tokenize", {**body, "add_special_tokens": False}, "tokenize")
            ids = [int(i) for i in bare["tokens"]]
            prefix = _split_prefix([int(i) for i in full["tokens"]], ids)
        route = "/v1/token/encode" if self.endpoint.stack == "exllamav2" else "/tokenize"
        where = f"{self.endpoint.name} {route}"
        return TokenizedText(text, [int(i) for i in ids], [int(i) for i in prefix], None, where)

    def detokenize(self, ids: list[int]) -> str | None:
        if self.endpoint.stack not in ("vllm", "other"):
            return None
        try:
            data = self._post("/detokenize", {**self._model(), "tokens": ids}, "detokenize")
        except NotMeasurable:
            return None
        return data.get("prompt") if isinstance(data, dict) else None

    def score(self, prefix: list[int], ids: list[int], text: str | None) -> Scored:
        body = {
            **self._model(),
            "prompt": [*prefix, *ids],
            "echo": True,
            "max_tokens": 0,
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
            "temperature": 0,
        }
        data = self._post("/v1/completions", body, "prompt log-probs")
        try:
            logprobs = data["choices"][0]["logprobs"]
            tokens, values = logprobs["tokens"], logprobs["token_logprobs"]
        except (KeyError, IndexError, TypeError) as exc:
            raise NotMeasurable(
                "prompt log-probs: the completions answer has no `logprobs` for an `echo` "
                "request (the server does not return prompt log-probs)"
            ) from exc
        return [
            (_token_id(t), None if v is None else float(v))
            for t, v in zip(tokens, values, strict=True)
        ]

    def generate(self, prompt: str, max_tokens: int) -> str:
        body = {**self._model(), "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        data = self._post("/v1/completions", body, "greedy generation")
        try:
            return str(data["choices"][0]["text"])
        except (KeyError, IndexError, TypeError) as exc:
            raise NotMeasurable("greedy generation: the answer has no choices[0].text") from exc


def _token_id(token: object) -> int | None:
    """vLLM's `return_tokens_as_token_ids` form `token_id:N`, else None (a plain string)."""
    if isinstance(token, str) and token.startswith("token_id:"):
        try:
            return int(token.removeprefix("token_id:"))
        except ValueError:
            return None
    return None


class TgiQualityClient(TargetClient):
    @property
    def needs_text(self) -> bool:
        return True

    def tokenize(self, text: str) -> TokenizedText:
        """TGI's `/tokenize` (always with special tokens): `[{id, text, start, stop}]`, offsets
        in bytes of the UTF-8 text (router `encoding_to_tokens`); special tokens span nothing."""
        tokens = self._post("/tokenize", {"inputs": text}, "tokenize")
        encoded = text.encode()
        char_at = _char_index(text) if len(encoded) != len(text) else None
        prefix: list[int] = []
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for token in tokens:
            start, stop = int(token["start"]), int(token["stop"])
            if start == stop:  # a special token (BOS before the text, EOS after it)
                if not ids:
                    prefix.append(int(token["id"]))
                continue
            ids.append(int(token["id"]))
            if char_at is not None:
                start, stop = char_at[start], char_at[stop]
            offsets.append((start, stop))
        return TokenizedText(text, ids, prefix, offsets, f"{self.endpoint.name} /tokenize")

    def score(self, prefix: list[int], ids: list[int], text: str | None) -> Scored:
        if text is None:
            raise NotMeasurable("prompt log-probs: TGI scores text, and no window text is known")
        parameters = {"max_new_tokens": 1, "details": True, "decoder_input_details": True}
        data = self._post(
            "/generate", {"inputs": text, "parameters": parameters}, "prompt log-probs"
        )
        try:
            prefill = data["details"]["prefill"]
            return [
                (int(t["id"]), None if t.get("logprob") is None else float(t["logprob"]))
                for t in prefill
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise NotMeasurable(
                "prompt log-probs: /generate answered without details.prefill"
            ) from exc

    def generate(self, prompt: str, max_tokens: int) -> str:
        parameters = {"max_new_tokens": max_tokens, "do_sample": False}
        data = self._post(
            "/generate", {"inputs": prompt, "parameters": parameters}, "greedy generation"
        )
        try:
            return str(data["generated_text"])
        except (KeyError, TypeError) as exc:
            raise NotMeasurable(
                "greedy generation: /generate answered without generated_text"
            ) from exc


def _char_index(text: str) -> dict[int, int]:
    """Byte offset in the UTF-8 text -> character offset, at every character boundary."""
    index, position = {}, 0
    for k, char in enumerate(text):
        index[position] = k
        position += len(char.encode())
    index[position] = len(text)
    return index


def client_for(
    endpoint: Endpoint, timeout_s: float, transport: httpx.BaseTransport | None = None
) -> TargetClient:
    cls = TgiQualityClient if endpoint.api == "tgi" else OpenAIQualityClient
    return cls(endpoint, timeout_s, transport)
