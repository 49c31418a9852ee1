"""The real adapter, without a GPU: result conversion, pre-load behaviour, and its use of the
async generator's API (`jobs`, `cancel`, `put_result`, `close`) against a stand-in."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from services.exllamav2 import EngineError, Exl2Config, Exl2ConfigError, Exl2Engine, JobStats
from services.exllamav2.exl2_engine import Exl2Job, convert_result, model_max_seq_len
from services.exllamav2.model_files import compile_chat_template


class _Ids:
    """Stands in for a torch tensor of shape (1, n)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.shape = (1, len(ids))

    def __getitem__(self, row: int) -> _Ids:
        return self

    def tolist(self) -> list[int]:
        return self.ids


def test_convert_result_follows_iterate_docstring() -> None:
    assert convert_result({"stage": "started", "eos": False, "serial": 0}).stage == "started"
    prefill = convert_result({"stage": "prefill", "curr_progress": 5, "max_progress": 9})
    assert (prefill.curr_progress, prefill.max_progress) == (5, 9)
    held = convert_result({"stage": "streaming", "eos": False, "serial": 0})
    assert (held.text, held.token_count, held.eos) == ("", 0, False)
    out = convert_result(
        {"stage": "streaming", "eos": False, "text": " hi", "token_ids": _Ids([7, 8])}
    )
    assert (out.text, out.token_count) == (" hi", 2)
    eos = convert_result(
        {
            "stage": "streaming", "eos": True, "eos_reason": "stop_string",
            "eos_triggering_string": "###", "text": "end", "token_ids": _Ids([9]),
            "new_tokens": 12, "prompt_tokens": 30, "cached_tokens": 256,
            "time_enqueued": 0.5, "time_prefill": 0.25, "time_generate": 1.0,
            "full_completion": "...",
        }
    )  # fmt: skip
    assert eos.end == JobStats("stop_string", 12, 30, 256, 0.5, 0.25, 1.0, "###")
    assert (eos.text, eos.token_count) == ("end", 1)


def _model_dir(tmp_path: Path, **config: Any) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_model_max_seq_len_reads_config_json_like_exllamav2(tmp_path: Path) -> None:
    assert model_max_seq_len(tmp_path) == 2048, "no config.json: exllamav2's default"
    d = _model_dir(tmp_path, max_position_embeddings=131072, n_positions=1)
    assert model_max_seq_len(d) == 131072


def test_before_load_the_engine_is_not_loaded_and_gauges_are_zero(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, max_position_embeddings=8192)
    engine = Exl2Engine(Exl2Config(model_dir=d, served_model_name="llama-exl2"))
    assert (engine.model_name, engine.max_seq_len, engine.is_loaded) == ("llama-exl2", 8192, False)
    assert (engine.num_running_jobs(), engine.num_pending_jobs(), engine.kv_cache_usage()) == (
        0,
        0,
        0.0,
    )
    assert engine.engine_version.startswith("exllamav2")
    with pytest.raises(EngineError):
        engine.encode("hi")
    with pytest.raises(Exl2ConfigError, match="cache_size"):
        Exl2Engine(Exl2Config(model_dir=d, cache_size=4096))  # < the model's 8192


class _AsyncJob:
    def __init__(self, generator: _AsyncGenerator) -> None:
        self.job = object()  # the wrapped ExLlamaV2DynamicJob
        self.generator = generator
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = 0
        generator.jobs[self.job] = self

    async def put_result(self, result: Any) -> None:
        await self.queue.put(result)

    async def __aiter__(self) -> Any:
        while True:
            result = await self.queue.get()
            if isinstance(result, Exception):
                raise result
            yield result
            if result["eos"]:
                break

    async def cancel(self) -> None:
        self.cancelled += 1
        await self.generator.cancel(self)


class _AsyncGenerator:
    """The attributes of `ExLlamaV2DynamicGeneratorAsync` the adapter relies on."""

    def __init__(self) -> None:
        self.jobs: dict[object, _AsyncJob] = {}
        self.closed = False

    async def cancel(self, job: _AsyncJob) -> None:
        assert job.job in self.jobs  # as dynamic_async.py asserts
        del self.jobs[job.job]

    async def close(self) -> None:
        self.closed = True


def test_cancel_after_eos_is_a_no_op_and_close_fails_live_jobs(tmp_path: Path) -> None:
    async def main() -> tuple[int, bool, str, bool]:
        generator = _AsyncGenerator()
        done, live = _AsyncJob(generator), _AsyncJob(generator)
        del generator.jobs[done.job]  # `_run_iteration` removed it after its eos result
        await Exl2Job(generator, done).cancel()
        engine = Exl2Engine(Exl2Config(model_dir=_model_dir(tmp_path)))
        engine._gen = generator  # as `load` leaves it
        consumer = Exl2Job(generator, live)
        await live.put_result({"stage": "streaming", "eos": False, "text": "a"})
        await engine.close()
        with pytest.raises(EngineError, match="shutting down") as caught:
            async for _ in consumer:
                pass
        still_queued = live.job in generator.jobs
        return done.cancelled, still_queued, str(caught.value), generator.closed

    assert asyncio.run(main()) == (0, False, "the server is shutting down", True)


def test_chat_template_renders_like_transformers(tmp_path: Path) -> None:
    class Tokenizer:
        bos_token, eos_token = "<s>", "</s>"

        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, Any]]] = []

        def encode(self, text: str, **kwargs: Any) -> _Ids:
            self.calls.append((text, kwargs))
            return _Ids(list(range(len(text))))

    tokenizer = Tokenizer()
    engine = Exl2Engine(Exl2Config(model_dir=_model_dir(tmp_path)))
    engine._tokenizer = tokenizer
    engine._template = compile_chat_template(
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}"
        "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    ids = engine.encode_chat([("user", "hi")])
    [(text, kwargs)] = tokenizer.calls
    assert text == "<s>[user]hi[assistant]" and len(ids) == len(text)
    assert kwargs == {"add_bos": False, "encode_special_tokens": True}
    engine._add_bos = False  # a Qwen-like tokenizer: completion prompts get no BOS either
    engine.encode("plain")
    assert tokenizer.calls[-1] == ("plain", {"add_bos": False})


def test_a_stop_token_finish_emits_the_held_text_but_not_the_stop_token() -> None:
    """dynamic.py `emit(eos_reason="stop_token")`: text still held back (here a partial match
    of the stop string "\n\n") goes under `held`, with the stop token's piece at its end."""
    result = convert_result(
        {
            "stage": "streaming", "eos": True, "eos_reason": "stop_token",
            "eos_triggering_token_id": 2, "eos_triggering_token_str": "</s>",
            "held": {"text": " end\n</s>", "token_ids": _Ids([5, 6, 2])},
            "new_tokens": 9, "prompt_tokens": 3, "cached_tokens": 0,
            "time_enqueued": 0.0, "time_prefill": 0.1, "time_generate": 0.2,
        }
    )  # fmt: skip
    assert (result.text, result.token_count) == (" end\n", 2)
    assert result.end is not None and result.end.eos_reason == "stop_token"
    nothing_held = convert_result(
        {
            "stage": "streaming", "eos": True, "eos_reason": "stop_token",
            "eos_triggering_token_str": "</s>", "new_tokens": 1, "prompt_tokens": 3,
            "time_enqueued": 0.0, "time_prefill": 0.1, "time_generate": 0.0,
        }
    )  # fmt: skip
    assert (nothing_held.text, nothing_held.token_count) == ("", 0)


def test_info_before_loading_has_no_cache_size_yet(tmp_path: Path) -> None:
    engine = Exl2Engine(Exl2Config(model_dir=_model_dir(tmp_path, max_position_embeddings=4096)))
    info = engine.info()
    assert (info["max_seq_len"], info["cache_size_tokens"], info["cache_size_source"]) == (
        4096,
        None,
        "auto",
    )
    fixed = Exl2Engine(Exl2Config(model_dir=tmp_path, cache_size=65536)).info()
    assert fixed["cache_size_source"] == "flag"
