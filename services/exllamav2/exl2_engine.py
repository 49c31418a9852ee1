"""The real engine: exllamav2's dynamic async generator behind the `Engine` protocol.

Follows exllamav2 0.3.2 (`generator/dynamic.py`, `generator/dynamic_async.py`,
`examples/inference_async.py`). exllamav2 and torch are imported only inside the load thread and
the job calls: exllamav2 compiles its CUDA extension at first import (minutes), which must not
block the event loop that answers `/health` and `/metrics` meanwhile (TRAPS.md 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

from services.exllamav2.cache_sizing import CachePlan, ModelShape, cache_bytes_per_token, plan_cache
from services.exllamav2.config import PAGE_SIZE, Exl2Config, Exl2ConfigError
from services.exllamav2.engine import EngineError, JobRequest, JobResult, JobStats, TokenLogprob
from services.exllamav2.model_files import (
    chat_template_source,
    compile_chat_template,
    model_max_seq_len,
    wants_bos,
)
from services.exllamav2.scoring import score_prompt

__all__ = ["Exl2Engine", "Exl2Job", "convert_result", "model_max_seq_len"]

_T = TypeVar("_T")
# exllamav2 cache.py: one class per `cache_mode` (TabbyAPI's names).
_CACHE_CLASSES = {
    "FP16": "ExLlamaV2Cache",
    "Q8": "ExLlamaV2Cache_Q8",
    "Q6": "ExLlamaV2Cache_Q6",
    "Q4": "ExLlamaV2Cache_Q4",
}
_log = logging.getLogger("services.exllamav2")


def _count(ids: Any) -> int:
    return int(ids.shape[-1]) if ids is not None else 0  # torch tensor of shape (1, n)


def convert_result(r: Mapping[str, Any]) -> JobResult:
    """One `ExLlamaV2DynamicGenerator.iterate()` result dict as a `JobResult`.

    On a stop-token finish exllamav2 does not emit the text it was still holding back (an
    incomplete character, a partial stop-string match): it puts it, with the stop token, under
    `held` (dynamic.py `emit(... eos_reason="stop_token")`). That text is part of the
    completion, so it goes out with the final result; the stop token's own piece does not.
    """
    stage = r["stage"]
    if stage == "started":
        return JobResult("started")
    if stage == "prefill":
        return JobResult(
            "prefill", curr_progress=int(r["curr_progress"]), max_progress=int(r["max_progress"])
        )
    text = r.get("text", "")
    count = _count(r.get("token_ids"))  # absent when the text is held back
    held = r.get("held")
    if r["eos"] and r.get("eos_reason") == "stop_token" and isinstance(held, Mapping):
        stop_piece = r.get("eos_triggering_token_str") or ""
        held_text = held.get("text", "")
        if stop_piece and held_text.endswith(stop_piece):
            held_text = held_text[: -len(stop_piece)]
        text += held_text
        count += max(_count(held.get("token_ids")) - 1, 0)  # its last token is the stop token
    end = None
    if r["eos"]:
        end = JobStats(
            eos_reason=r["eos_reason"],
            new_tokens=int(r["new_tokens"]),
            prompt_tokens=int(r["prompt_tokens"]),
            cached_tokens=int(r.get("cached_tokens", 0)),
            time_enqueued_s=float(r["time_enqueued"]),
            time_prefill_s=float(r["time_prefill"]),
            time_generate_s=float(r["time_generate"]),
            stop_string=r.get("eos_triggering_string"),
        )
    return JobResult("streaming", text=text, token_count=count, end=end)


async def _in_thread(fn: Callable[[], _T]) -> _T:
    """Run blocking `fn` in a daemon thread, so a SIGTERM during a long load is not held up."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def work() -> None:
        try:
            value: Any = fn()
            setter: Callable[[Any], None] = future.set_result
        except BaseException as exc:
            value, setter = exc, future.set_exception
        with contextlib.suppress(RuntimeError):  # the loop closed while loading (shutdown)
            loop.call_soon_threadsafe(settle, setter, value)

    threading.Thread(target=work, name="exllamav2-load", daemon=True).start()
    return await future


class Exl2Job:
    """An `ExLlamaV2DynamicJobAsync` seen as an `EngineJob`."""

    def __init__(self, generator: Any, job: Any) -> None:
        self._generator = generator  # ExLlamaV2DynamicGeneratorAsync
        self._job = job  # ExLlamaV2DynamicJobAsync

    def __aiter__(self) -> AsyncIterator[JobResult]:
        return self._results()

    async def _results(self) -> AsyncIterator[JobResult]:
        # dynamic_async.py ExLlamaV2DynamicJobAsync.__aiter__: yields until the eos result and
        # raises what the generator pushed (its own exception, or ours from `close`).
        async for result in self._job:
            yield convert_result(result)

    async def cancel(self) -> None:
        # dynamic_async.py ExLlamaV2DynamicGeneratorAsync.cancel asserts the job is still in
        # `jobs`; `_run_iteration` removes it there after its eos result.
        if self._job.job in self._generator.jobs:
            await self._job.cancel()


class Exl2Engine:
    """exllamav2's paged dynamic generator (continuous batching; needs flash-attn >= 2.5.7).

    Note that `ExLlamaV2DynamicGeneratorAsync` runs `iterate()` (one forward pass) on the event
    loop, so HTTP writes and scrapes wait for the current step.
    """

    def __init__(self, config: Exl2Config) -> None:
        self._config = config
        self._max_seq_len = config.max_seq_len or model_max_seq_len(config.model_dir)
        if config.cache_size is not None and config.cache_size < self._max_seq_len:
            raise Exl2ConfigError(
                f"cache_size {config.cache_size} is smaller than max_seq_len {self._max_seq_len}"
            )
        # Prefill chunk = config.max_input_len: whole 256-token pages, at most the context.
        self._chunk = min(config.chunk_size, self._max_seq_len) // PAGE_SIZE * PAGE_SIZE
        if self._chunk < PAGE_SIZE or (config.max_batch_size or 0) > self._chunk // 8:
            raise Exl2ConfigError(
                f"prefill chunk {self._chunk} (chunk_size, max_seq_len) is under {PAGE_SIZE} "
                "tokens or under 8 x max_batch_size (generator/dynamic.py asserts both)"
            )
        self._gen: Any = None  # ExLlamaV2DynamicGeneratorAsync once loaded
        self._model: Any = None  # ExLlamaV2, for prompt scoring
        self._tokenizer: Any = None
        self._template: Any = None
        self._eos_ids: list[int] = []
        self._add_bos = True
        self._cache: CachePlan | None = None

    @property
    def model_name(self) -> str:
        return self._config.name

    @property
    def max_seq_len(self) -> int:
        return self._max_seq_len

    @property
    def engine_version(self) -> str:
        try:
            return f"exllamav2 {importlib.metadata.version('exllamav2')}"
        except importlib.metadata.PackageNotFoundError:
            return "exllamav2 (not installed)"

    @property
    def is_loaded(self) -> bool:
        # dynamic_async.py: `_run_iteration` ends for good when iterate() raises.
        return self._gen is not None and not self._gen.iteration_task.done()

    async def load(self) -> None:
        """Import exllamav2 (compiling its extension the first time), load weights, cache and
        tokenizer, all in a thread; then start the generator and warm it up."""
        model, cache, tokenizer, chunk = await _in_thread(self._load_model)
        from exllamav2.generator import ExLlamaV2DynamicGeneratorAsync  # imported by the thread

        generator = ExLlamaV2DynamicGeneratorAsync(  # creates its task: must run on the loop
            model=model,
            cache=cache,
            tokenizer=tokenizer,
            max_batch_size=self._config.max_batch_size,
            max_seq_len=self._max_seq_len,
            max_chunk_size=chunk,
            paged=True,
        )
        await _in_thread(generator.generator.warmup)  # kernel autotune before the first job
        model_dir, settings = self._config.model_dir, tokenizer.tokenizer_config_dict
        source = chat_template_source(model_dir, settings)
        self._template = None if source is None else compile_chat_template(source)
        self._add_bos = wants_bos(model_dir, settings)
        self._tokenizer = tokenizer
        self._eos_ids = _eos_ids(model.config, tokenizer)
        self._model = model
        self._gen = generator

    def _load_model(self) -> tuple[Any, Any, Any, int]:
        import exllamav2.cache
        import exllamav2.generator  # the heavy first import (JIT build), off the event loop
        import torch
        from exllamav2 import ExLlamaV2, ExLlamaV2Config, ExLlamaV2Tokenizer

        config = ExLlamaV2Config(str(self._config.model_dir))
        config.arch_compat_overrides()
        config.max_seq_len = self._max_seq_len
        chunk = self._chunk
        config.max_input_len = chunk
        config.max_attention_size = chunk**2
        model = ExLlamaV2(config)
        cache_class = getattr(exllamav2.cache, _CACHE_CLASSES[self._config.cache_mode])
        shape = ModelShape(config.num_hidden_layers, config.num_key_value_heads, config.head_dim)
        per_token = cache_bytes_per_token(shape, self._config.cache_mode)
        # The cache's max_seq_len is the token budget shared by all jobs (doc/dynamic.md).
        if self._config.cache_size is not None:  # as asked; may split over several GPUs
            self._cache = plan_cache(
                requested=self._config.cache_size,
                max_seq_len=self._max_seq_len,
                bytes_per_token=per_token,
            )
            cache = cache_class(model, max_seq_len=self._cache.tokens, lazy=True)
            model.load_autosplit(cache, progress=False)
        else:  # weights on the first GPU, then as much cache as its free memory holds
            model.load(progress=False)
            free, total = torch.cuda.mem_get_info(0)
            try:
                self._cache = plan_cache(
                    requested=None,
                    max_seq_len=self._max_seq_len,
                    bytes_per_token=per_token,
                    free_bytes=int(free),
                    total_bytes=int(total),
                    gpu_memory_utilization=self._config.gpu_memory_utilization,
                )
            except ValueError as exc:
                raise EngineError(str(exc)) from exc
            cache = cache_class(model, max_seq_len=self._cache.tokens)
        _log.info("KV cache: %s", self._cache.describe())
        return model, cache, ExLlamaV2Tokenizer(config), chunk

    def info(self) -> dict[str, Any]:
        """Resolved settings for `/info`; the cache size is known once the model is loaded."""
        plan = self._cache
        return {
            "max_seq_len": self._max_seq_len,
            "cache_mode": self._config.cache_mode,
            "cache_size_tokens": None if plan is None else plan.tokens,
            "cache_size_source": "auto" if self._config.cache_size is None else "flag",
            "cache_size": None if plan is None else plan.describe(),
            "gpu_memory_utilization": self._config.gpu_memory_utilization,
            "max_batch_size": self._config.max_batch_size,
            "chunk_size": self._chunk,
            "add_bos": self._add_bos if self._tokenizer is not None else None,
        }

    async def close(self) -> None:
        """Fail every live job with `EngineError`, then stop the generator's task."""
        generator, self._gen = self._gen, None
        if generator is None:
            return
        for job in list(generator.jobs.values()):
            await generator.cancel(job)
            await job.put_result(EngineError("the server is shutting down"))
        await generator.close()

    def encode(self, text: str) -> list[int]:
        """A completion prompt, with BOS only if the model's tokenizer adds one."""
        return self._ids(self._loaded_tokenizer().encode(text, add_bos=self._add_bos))

    def encode_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        tokenizer = self._loaded_tokenizer()
        if self._template is None:  # no chat template shipped: a plain transcript
            text = "".join(f"{role}: {content}\n" for role, content in messages) + "assistant:"
            return self._ids(tokenizer.encode(text, add_bos=self._add_bos))
        text = self._template.render(
            messages=[{"role": role, "content": content} for role, content in messages],
            add_generation_prompt=True,
            bos_token=tokenizer.bos_token,
            eos_token=tokenizer.eos_token,
        )
        return self._ids(tokenizer.encode(text, add_bos=False, encode_special_tokens=True))

    def enqueue(self, request: JobRequest) -> Exl2Job:
        if not self.is_loaded:
            raise EngineError("the model is not loaded")
        import torch
        from exllamav2.generator import ExLlamaV2DynamicJobAsync

        stops: list[int | str] = [*request.stop_strings]
        if not request.ban_eos:
            stops += self._eos_ids
        job = ExLlamaV2DynamicJobAsync(  # enqueues itself
            self._gen,
            input_ids=torch.tensor([request.input_ids], dtype=torch.long),
            max_new_tokens=request.max_new_tokens,
            min_new_tokens=request.min_new_tokens,
            gen_settings=_sampler_settings(request),
            seed=request.seed,
            stop_conditions=stops or None,
        )
        return Exl2Job(self._gen, job)

    def prompt_logprobs(self, input_ids: Sequence[int], top_n: int) -> list[TokenLogprob]:
        """One `ExLlamaV2.forward` over the prompt without a cache (exllamav2 model.py: the
        whole sequence in one chunk, so at most `max_input_len * max_batch_size` tokens), then
        log-softmax of the logits at each position gathered at the next token, as exllamav2's
        own perplexity test does (test_inference.py `ppl`).

        Runs on the event loop thread, as `ExLlamaV2DynamicGeneratorAsync` runs `iterate()`:
        the two forward passes never overlap (they share the model's scratch buffers), and
        generation waits for this one. The quality probe never runs during a load stage.
        """
        if not self.is_loaded or self._model is None:
            raise EngineError("the model is not loaded")
        config = self._model.config
        limit = int(config.max_input_len) * int(config.max_batch_size)
        if len(input_ids) > limit:
            raise EngineError(
                f"prompt log-probs cover at most {limit} tokens per request (exllamav2's "
                f"max_input_len, set from --chunk-size); this prompt has {len(input_ids)}"
            )
        import torch

        def forward(ids: Sequence[int]) -> Any:
            with torch.inference_mode():
                tensor = torch.tensor([list(ids)], dtype=torch.long)
                return self._model.forward(tensor, cache=None)  # (1, n, vocab) logits

        pieces = self._loaded_tokenizer().get_id_to_piece_list(True)
        return score_prompt(forward, input_ids, top_n, pieces)

    def num_running_jobs(self) -> int:
        return len(self._gen.generator.active_jobs) if self._gen is not None else 0

    def num_pending_jobs(self) -> int:
        return len(self._gen.generator.pending_jobs) if self._gen is not None else 0

    def kv_cache_usage(self) -> float:
        """Pages held by jobs / all pages (dynamic.py page table: `referenced_pages` have a
        ref_count > 0; unreferenced ones are free, even if they still hold a reusable prefix,
        as vLLM counts its cached free blocks)."""
        if self._gen is None:
            return 0.0
        generator = self._gen.generator
        return len(generator.referenced_pages) / generator.max_pages if generator.max_pages else 0.0

    def _loaded_tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise EngineError("the model is not loaded")
        return self._tokenizer

    @staticmethod
    def _ids(tensor: Any) -> list[int]:
        return [int(i) for i in tensor[0].tolist()]  # encode() returns shape (1, n)


def _sampler_settings(request: JobRequest) -> Any:
    """OpenAI's sampling defaults in exllamav2 terms (its own defaults differ: 0.8/0.8/50)."""
    from exllamav2.generator import ExLlamaV2Sampler

    temperature = 1.0 if request.temperature is None else request.temperature
    if temperature == 0.0:
        return ExLlamaV2Sampler.Settings.greedy()
    return ExLlamaV2Sampler.Settings(
        temperature=temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=request.top_k or 0,  # 0: disabled
        token_repetition_penalty=1.0,
    )


def _eos_ids(config: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS plus generation_config.json's list (Llama 3.1 ends turns with one)."""
    ids = {tokenizer.eos_token_id} if isinstance(tokenizer.eos_token_id, int) else set()
    generation = getattr(config, "generation_config", None) or {}
    ids.update(i for i in generation.get("eos_token_id") or [] if isinstance(i, int))
    return sorted(ids)
