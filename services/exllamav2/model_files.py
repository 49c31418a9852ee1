"""What the server reads from a model directory itself, without importing exllamav2: the
context length, whether completion prompts start with BOS, and the chat template.

exllamav2 0.3.2 leaves all three to the caller: `ExLlamaV2Tokenizer.encode(add_bos=...)` adds a
BOS only when told to (and takes one from config.json even where the tokenizer never adds one,
as with Qwen2), and it does not read `chat_template.jinja`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from services.exllamav2.engine import EngineError

__all__ = ["chat_template_source", "compile_chat_template", "model_max_seq_len", "wants_bos"]

# exllamav2 config.py ExLlamaV2Config.prepare(): where max_seq_len is read from, default 2048.
_MAX_LEN_KEYS = (
    "max_sequence_length", "model_max_length", "max_position_embeddings", "max_seq_len",
    "n_positions",
)  # fmt: skip
_PROBE = "a"


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_max_seq_len(model_dir: Path) -> int:
    """The context length exllamav2 will read from `config.json`."""
    data = _json_file(model_dir / "config.json") or {}
    for key in _MAX_LEN_KEYS:
        if isinstance(data.get(key), int):
            return int(data[key])
    return 2048


def wants_bos(model_dir: Path, tokenizer_config: Mapping[str, Any] | None) -> bool:
    """Whether the model's own tokenizer starts an encoded text with BOS.

    `add_bos_token` in tokenizer_config.json when it says; else what `tokenizer.json` does
    with special tokens (its post-processor's template, as transformers' fast tokenizers apply
    it); else True, the default of SentencePiece Llama tokenizers (`LlamaTokenizer`).
    """
    flag = (tokenizer_config or {}).get("add_bos_token")
    if isinstance(flag, bool):
        return flag
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return True
    tokenizer = Tokenizer.from_file(str(path))
    plain = tokenizer.encode(_PROBE, add_special_tokens=False).ids
    full = tokenizer.encode(_PROBE, add_special_tokens=True).ids
    # A special token put in front of the text: a BOS (Llama 3's TemplateProcessing does).
    return len(full) > len(plain) and full[len(full) - len(plain) :] == plain


def chat_template_source(model_dir: Path, tokenizer_config: Mapping[str, Any] | None) -> str | None:
    """The chat template: `chat_template.jinja` if the model ships one (transformers >= 4.47
    prefers it over the inline field, `tokenization_utils_base.py` CHAT_TEMPLATE_FILE), else
    tokenizer_config.json's `chat_template` (the `default` of named templates), else None."""
    path = model_dir / "chat_template.jinja"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    template = (tokenizer_config or {}).get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def compile_chat_template(source: str) -> Template:
    """A template compiled as transformers does (sandboxed, with its two helper globals)."""

    def raise_exception(message: str) -> None:
        raise EngineError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)
