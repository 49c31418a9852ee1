"""The quality probe inside `quantbench run`: after each target's load stages, while it is still
up and no stage is being measured, probe it as `quantbench quality` would.

Targets run one at a time, so the probe's plan (the text cut into token windows, the prompts)
is made once, at the first target probed, with `quality.tokenizer` / `workload.tokenizer` or
else that target's own tokenize route, and saved in `quality/plan.json`: every later target,
and a resumed run, is asked exactly the same windows. Output token ids (for the first
divergence) come from the local tokenizer, or from each target's own route while it is up.

Each target's raw probe is saved in `quality/<target>.json` as soon as it ends, and
`quality.json` / `quality.md` are rebuilt from those files after every probe. Resuming: a
target whose probe file exists is not probed again; one killed during its probe (stages
finished, no probe file) is brought up again for the probe alone (`probe_alone`).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import AbstractContextManager, closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from analysis.rundir import write_text_atomic
from loadtest.quality import (
    Endpoint,
    LocalTokenizer,
    NotMeasurable,
    ProbePlan,
    QualityConfig,
    QualityInputError,
    TargetClient,
    TargetMeasurement,
    build_plan,
    check_inputs,
    client_for,
    measure_target,
)
from quantbench.config import BenchConfig, TargetConfig
from quantbench.errors import ConfigError
from quantbench.probe import TINY_PROBE, discover_model, wait_until_serving
from quantbench.quality import pick_reference, target_info
from quantbench.quality_result import build_result, write_result
from quantbench.quality_view import quality_markdown
from quantbench.rundir import now_iso

__all__ = ["PROBES_DIR", "QualityStep"]

PROBES_DIR = "quality"
_PLAN_FILE = "plan.json"
_NOT_YET = "not probed (the probe runs after the target's load stages, which did not finish)"


class QualityStep:
    """The probe of every selected target of one run (see the module docstring)."""

    def __init__(
        self, config: BenchConfig, targets: list[TargetConfig], run_dir: Path, console: Console
    ) -> None:
        assert config.quality is not None
        self._quality: QualityConfig = config.quality
        self._config = config
        self._targets = targets
        self._run_dir = run_dir
        self._dir = run_dir / PROBES_DIR
        self._console = console
        self.reference = pick_reference(config, self._quality)
        local = self._quality.tokenizer or config.workload.tokenizer
        try:
            self._local = LocalTokenizer(local) if local is not None else None
        except QualityInputError as exc:
            raise ConfigError(f"quality: {exc}") from exc
        self._plan: ProbePlan | None = None

    @classmethod
    def for_run(
        cls, config: BenchConfig, targets: list[TargetConfig], run_dir: Path, console: Console
    ) -> QualityStep | None:
        """The step for a run whose config has `quality:` (None otherwise). Its input files
        are read now, before any target starts; a resumed run's quality.json is rebuilt."""
        if config.quality is None:
            return None
        try:
            check_inputs(config.quality)
        except QualityInputError as exc:
            raise ConfigError(f"quality: {exc}") from exc
        step = cls(config, targets, run_dir, console)
        names = [t.name for t in targets]
        if step.reference is None:
            console.print("quality: no FP16 target (quant fp16, or quality.reference): "
                          "perplexity changes will not be measurable")  # fmt: skip
        elif step.reference not in names:
            console.print(f"quality: the reference {step.reference} is not in this run "
                          "(--target): perplexity changes will not be measurable")  # fmt: skip
        step._dir.mkdir(exist_ok=True)
        if any(not step.pending(name) for name in names):
            step.write()
        return step

    def pending(self, name: str) -> bool:
        """Whether `name` still needs its probe (no probe file saved yet)."""
        return not (self._dir / f"{name}.json").exists()

    def _saved(self) -> dict[str, Any] | None:
        path = self._dir / _PLAN_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _plan_for(self, client: TargetClient) -> ProbePlan:
        """The run's plan, made (and saved) at the first probe; its tokenizer for output ids
        is the local one, or this target's own route (the first target's is gone by now)."""
        tokenizer = self._local or client
        saved = self._saved() if self._plan is None else None
        if saved is not None:
            self._plan = ProbePlan.from_json(saved, self._quality, tokenizer)
        if self._plan is None:
            try:
                plan = build_plan(self._quality, tokenizer)
            except QualityInputError as exc:
                raise ConfigError(f"quality: {exc}") from exc
            saved = {"describe": plan.describe(), **plan.to_json()}
            write_text_atomic(self._dir / _PLAN_FILE, json.dumps(saved) + "\n")
            self._plan = plan
        return replace(self._plan, tokenizer=tokenizer)

    def after_stages(self, target: TargetConfig, url: str, model: str | None) -> None:
        """Probe `target` (up at `url`) once its stages have ended; save and rebuild."""
        if not self.pending(target.name):
            self._console.print(f"  {target.name}: quality probe already done")
            return
        key = os.environ.get(target.api_key_env) if target.api_key_env else None
        endpoint = Endpoint(target.name, url, target.api, target.resolved_stack, model, key)
        self._console.print(f"  {target.name}: quality probe (its load stages are over)")
        record: dict[str, Any] = {"target": target.name, "started_at": now_iso(),
                                  "started_wall_s": time.time()}  # fmt: skip
        with closing(client_for(endpoint, self._quality.timeout)) as client:
            try:
                plan = self._plan_for(client)
            except NotMeasurable as exc:
                record["not_probed"] = (
                    f"no tokenizer: {target.name} cannot cut the text into tokens ({exc}) and "
                    "no target probed before it could; set quality.tokenizer to a local "
                    "tokenizer.json"
                )
            else:
                measured = measure_target(client, plan, self._console.print)
                if self._local is None and measured.windows is None and measured.output_ids:
                    # Its own tokenizer was never checked against the text's: no positions.
                    measured.output_ids = None
                    measured.divergence_error = (
                        "its tokenizer could not be checked against the text's (no prompt "
                        "log-probs): set quality.tokenizer for token positions"
                    )
                record["measurement"] = measured.to_json()
        record |= {"ended_at": now_iso(), "ended_wall_s": time.time()}
        write_text_atomic(self._dir / f"{target.name}.json", json.dumps(record) + "\n")
        result = self.write()
        seconds = record["ended_wall_s"] - record["started_wall_s"]
        self._console.print(f"{_summary(result, target.name)} (probe {seconds:.1f} s)")

    def probe_alone(self, target: TargetConfig, endpoint: AbstractContextManager[str]) -> None:
        """A resumed run whose target was stopped during its probe: bring it up for the probe
        alone (`endpoint` is the runner's bring-up of the target)."""
        self._console.print(f"{target.name}: stages finished, quality probe not: probing it")
        with endpoint as url:
            default = "tgi" if target.resolved_stack == "tgi" else None  # STACKS.md 2.3
            model = target.model or default or discover_model(url, target.endpoint())
            spec = target.endpoint(model)
            wait_until_serving(url, spec, self._config.workload, self._config.timeouts, TINY_PROBE)
            self.after_stages(target, url, model)

    def write(self) -> dict[str, Any]:
        """quality.json and quality.md from the probe files saved so far."""
        measured: dict[str, TargetMeasurement] = {}
        not_run: dict[str, str] = {}
        stamps: dict[str, dict[str, Any]] = {}
        for target in self._targets:
            path = self._dir / f"{target.name}.json"
            if not path.exists():
                not_run[target.name] = _NOT_YET
                continue
            record = json.loads(path.read_text())
            stamps[target.name] = {k: record.get(k) for k in ("started_at", "ended_at",
                                   "started_wall_s", "ended_wall_s")}  # fmt: skip
            if record.get("measurement") is None:
                not_run[target.name] = record.get("not_probed") or "not probed"
            else:
                measured[target.name] = TargetMeasurement.from_json(record["measurement"])
        saved = self._saved() if self._plan is None else None
        text = self._plan.describe() if self._plan is not None else (saved or {}).get("describe")
        infos = [target_info(t) for t in self._targets]
        result = build_result(text, infos, measured, not_run, self.reference,
                              self._quality.max_ppl_increase)  # fmt: skip
        for entry in result["targets"]:
            entry["probe"] = stamps.get(entry["name"])
            if self.reference not in measured and entry["name"] in measured:
                why = self._no_reference()
                entry["ppl_delta_not_measurable"] = why
                if entry["verdict"] == "not measurable":
                    entry["verdict_reason"] = why
        write_result(self._run_dir, result)
        if text is not None:  # None: no target could cut the text into tokens yet
            write_text_atomic(self._run_dir / "quality.md", quality_markdown(result))
        return result

    def _no_reference(self) -> str:
        if self.reference is None:
            return "no FP16 reference target (give one quant fp16, or set quality.reference)"
        if self.reference not in [t.name for t in self._targets]:
            return f"the reference {self.reference} is not in this run (--target)"
        return f"the reference {self.reference} has not been probed"


def _summary(result: dict[str, Any], name: str) -> str:
    entry = next(t for t in result["targets"] if t["name"] == name)
    ppl, delta = entry.get("perplexity"), entry.get("ppl_delta")
    if ppl is None:
        return f"  {name}: perplexity not measurable ({entry['perplexity_not_measurable']})"
    text = f"  {name}: perplexity {ppl['value']:.3f}"
    if entry.get("reference"):
        return text + " (the FP16 reference)"
    if delta is not None:
        return text + f", {delta['value']:+.2%} vs FP16"
    return text + f" (vs FP16: {entry['ppl_delta_not_measurable']})"
