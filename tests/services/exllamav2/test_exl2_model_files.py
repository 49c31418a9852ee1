"""What the server reads from a model directory: the BOS rule and the chat template, with
tokenizers built here (no model hub)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors

from services.exllamav2.model_files import chat_template_source, model_max_seq_len, wants_bos

VOCAB = {"<s>": 0, "</s>": 1, "a": 2, "b": 3}


def _tokenizer_json(model_dir: Path, *, prepend_bos: bool) -> Path:
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="a"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if prepend_bos:  # as Llama 3's tokenizer.json does
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 0)]
        )
    tokenizer.save(str(model_dir / "tokenizer.json"))
    return model_dir


def test_bos_follows_the_tokenizers_own_template(tmp_path: Path) -> None:
    (llama := tmp_path / "llama").mkdir()
    (qwen := tmp_path / "qwen").mkdir()
    assert wants_bos(_tokenizer_json(llama, prepend_bos=True), {}) is True
    assert wants_bos(_tokenizer_json(qwen, prepend_bos=False), {}) is False


def test_tokenizer_config_add_bos_token_decides_when_present(tmp_path: Path) -> None:
    model = _tokenizer_json(tmp_path, prepend_bos=True)
    assert wants_bos(model, {"add_bos_token": False}) is False  # Qwen2's tokenizer_config
    assert wants_bos(model, {"add_bos_token": True, "bos_token": None}) is True


def test_no_tokenizer_json_means_a_sentencepiece_llama_which_adds_bos(tmp_path: Path) -> None:
    assert wants_bos(tmp_path, None) is True


def test_chat_template_jinja_is_preferred_to_the_inline_one(tmp_path: Path) -> None:
    inline = {"chat_template": "inline {{ messages }}"}
    assert chat_template_source(tmp_path, inline) == "inline {{ messages }}"
    named = {"chat_template": [{"name": "tool_use", "template": "t"}, {"name": "default",
             "template": "d"}]}  # fmt: skip
    assert chat_template_source(tmp_path, named) == "d"
    assert chat_template_source(tmp_path, {}) is None
    (tmp_path / "chat_template.jinja").write_text("file {{ messages }}")
    assert chat_template_source(tmp_path, inline) == "file {{ messages }}"


def test_model_max_seq_len_reads_config_json(tmp_path: Path) -> None:
    assert model_max_seq_len(tmp_path) == 2048, "no config.json: exllamav2's default"
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 32768}))
    assert model_max_seq_len(tmp_path) == 32768
