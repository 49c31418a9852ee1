"""`quantbench quality CONFIG`: the quality probe alone, against the config's targets.

Starts `sim:` targets as `quantbench run` does (all at once, so the reference's tokenizer
serves every target), waits until each really generates, cuts the text into windows once,
probes every target, and writes quality.json and quality.md into a new folder under `--out`.
Exit codes: 0 done; 1 `--max-ppl-increase` given and no quantized target meets it; 2 bad input,
or a bar that cannot be decided (no reference).
"""

from __future__ import annotations

import os
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.config import WorkloadConfig
from loadtest.quality import (
    Endpoint,
    LocalTokenizer,
    NotMeasurable,
    QualityConfig,
    QualityInputError,
    TargetClient,
    TargetMeasurement,
    TextTokenizer,
    build_plan,
    check_inputs,
    client_for,
    measure_target,
)
from quantbench.config import BenchConfig, TargetConfig
from quantbench.errors import ConfigError, HarnessError
from quantbench.probe import TINY_PROBE, discover_model, wait_until_serving
from quantbench.quality_result import build_result, write_result
from quantbench.quality_view import print_quality, quality_markdown
from quantbench.rundir import create_run_dir
from quantbench.simproc import simulator

__all__ = ["QualityOutcome", "pick_reference", "run_quality", "target_info"]

QualityOutcome = tuple[Path, dict[str, Any], int]
_REFERENCE_QUANTS = ("fp16", "bf16")


def pick_reference(config: BenchConfig, quality: QualityConfig) -> str | None:
    """The target every other is compared with: `quality.reference`, else the first whose
    quant is fp16 (or bf16); None when there is none."""
    names = [t.name for t in config.targets]
    if quality.reference is not None:
        if quality.reference not in names:
            raise ConfigError(
                f"quality.reference: no target {quality.reference!r} (have: {', '.join(names)})"
            )
        return quality.reference
    for target in config.targets:
        if target.resolved_quant.lower() in _REFERENCE_QUANTS:
            return target.name
    return None


def target_info(target: TargetConfig) -> dict[str, Any]:
    """What quality.json says of a target besides its measures."""
    return {
        "name": target.name,
        "stack": target.resolved_stack,
        "quant": target.resolved_quant,
        "api": target.api,
        "simulated": target.simulated,
    }


def _tokenizer(
    config: BenchConfig, quality: QualityConfig, clients: dict[str, TargetClient], order: list[str]
) -> TextTokenizer:
    """A local tokenizer.json if one is configured, else the first target (reference first)
    whose API tokenizes."""
    local = quality.tokenizer or config.workload.tokenizer
    if local is not None:
        return LocalTokenizer(local)
    problems = []
    for name in order:
        client = clients.get(name)
        if client is None:
            continue
        try:
            client.tokenize("Hello world.")
            return client
        except NotMeasurable as exc:
            problems.append(f"{name}: {exc}")
    raise NotMeasurable("no target can tokenize text (" + "; ".join(problems) + "): set "
                        "quality.tokenizer to a local tokenizer.json")  # fmt: skip


def run_quality(
    config: BenchConfig,
    out_dir: Path,
    only: list[str] | None = None,
    bar: float | None = None,
    console: Console | None = None,
) -> QualityOutcome:
    """Probe the selected targets (plus the reference); returns (folder, result, exit code)."""
    console = console or Console()
    quality = config.quality or QualityConfig()
    bar = quality.max_ppl_increase if bar is None else bar
    names = [t.name for t in config.targets]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ConfigError(
            f"--target {', '.join(unknown)}: no such target (have: {', '.join(names)})"
        )
    reference = pick_reference(config, quality)
    if bar is not None and reference is None:
        raise ConfigError(
            "--max-ppl-increase needs an FP16 reference target (a target with quant fp16, or "
            "quality.reference)"
        )
    selected = [t for t in config.targets if not only or t.name in only or t.name == reference]
    if only and reference is not None and reference not in only:
        console.print(f"reference {reference} added: every target is compared with it")
    for target in selected:
        if target.api_key_env and not os.environ.get(target.api_key_env):
            raise ConfigError(
                f"target {target.name}: api_key_env: environment variable {target.api_key_env} "
                "is not set (export it, or remove api_key_env)"
            )
    try:
        check_inputs(quality)
    except QualityInputError as exc:
        raise ConfigError(f"quality: {exc}") from exc
    folder = create_run_dir(out_dir, f"{config.name}-quality")
    console.print(f"quality folder: {folder}")
    not_run: dict[str, str] = {}
    measured: dict[str, TargetMeasurement] = {}
    with ExitStack() as stack:
        clients: dict[str, TargetClient] = {}
        for target in selected:
            if target.compose is not None:
                not_run[target.name] = (
                    "compose targets are not supported by `quantbench quality` yet: give the "
                    "service's `url` in a copy of the config"
                )
                console.print(f"{target.name}: skipped ({not_run[target.name]})")
                continue
            if target.sim is not None:
                log = folder / "logs" / f"sim-{target.name}.log"
                url = stack.enter_context(simulator(target.name, target.sim, log))
            else:
                url = str(target.url).rstrip("/")
            # TGI's OpenAI routes take any other model name as a LoRA adapter (STACKS.md 2.3).
            default = "tgi" if target.resolved_stack == "tgi" else None
            model = target.model or default or discover_model(url, target.endpoint())
            console.print(
                f"[bold]{target.name}[/] · {url} · model {model} — waiting for a generation"
            )
            workload = WorkloadConfig(endpoint="completions")
            wait_until_serving(url, target.endpoint(model), workload, config.timeouts, TINY_PROBE)
            key = os.environ.get(target.api_key_env) if target.api_key_env else None
            endpoint = Endpoint(target.name, url, target.api, target.resolved_stack, model, key)
            clients[target.name] = stack.enter_context(
                closing(client_for(endpoint, quality.timeout))
            )
        order = ([reference] if reference else []) + [t.name for t in selected]
        try:
            tokenizer = _tokenizer(config, quality, clients, order)
            plan = build_plan(quality, tokenizer)
        except QualityInputError as exc:
            raise ConfigError(f"quality: {exc}") from exc
        except NotMeasurable as exc:
            raise HarnessError(f"quality: cannot cut the text into tokens: {exc}") from exc
        console.print(
            f"text: {plan.text_path.name}, {len(plan.text.ids)} tokens ({plan.text.tokenizer}); "
            f"{len(plan.windows)} windows of {quality.window}, stride {quality.stride}"
        )
        for target in selected:
            if target.name in clients:
                measured[target.name] = measure_target(clients[target.name], plan, console.print)
    result = build_result(
        plan.describe(), [target_info(t) for t in selected], measured, not_run, reference, bar
    )
    write_result(folder, result)
    (folder / "quality.md").write_text(quality_markdown(result))
    print_quality(result, console)
    return folder, result, 1 if bar is not None and not result["meets_bar"] else 0
