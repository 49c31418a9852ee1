"""What `run` prints while a target's stages run: one line as each stage starts and, on a
terminal, a live status line under it — its ok samples against the count it needs, requests,
errors and time — that rich redraws in place and clears before anything else is printed, so
no fragment of it is ever left on screen. In a pipe only the stage lines are printed.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtest.config import LoadConfig, SampleGoal, load_unit
from quantbench.locustproc import LocustProgress

__all__ = ["StageProgress"]


class StageProgress:
    """Follows one target's Locust run (one repeat of its stages); a context manager."""

    def __init__(
        self,
        console: Console,
        target: str,
        load: LoadConfig,
        goal: SampleGoal,
        first_stage: int = 0,
        repeat: tuple[int, int] = (0, 1),
        lengths_s: list[float] | None = None,
    ) -> None:
        """`lengths_s`: each stage's fixed length (a replay's), else they run on for samples."""
        self._console = console
        self._lengths = lengths_s
        self._load = load
        self._goal = goal
        self._first = first_stage
        number, repeats = repeat
        self._label = f"{target} (repeat {number + 1}/{repeats})" if repeats > 1 else target
        self._shown = -1
        self._live: Live | None = None

    def __enter__(self) -> StageProgress:
        if self._console.is_terminal:
            self._live = Live(console=self._console, transient=True, auto_refresh=False)
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()  # transient: the status line is erased
            self._live = None

    def __call__(self, progress: LocustProgress) -> None:
        load = self._load
        position = self._first + progress.stages_done
        count = len(load.stages)
        if position >= count:
            self._status(f"    {progress.requests} requests · {progress.errors} errors · "
                         "letting requests in flight finish")  # fmt: skip
            return
        if position != self._shown:
            self._shown = position
            length = (
                f"{self._lengths[position]:.3g} s (the whole trace)"
                if self._lengths is not None
                else f"{load.stage_duration:g} s (longer until {self._goal.min_ok} ok samples, "
                f"at most {load.stage_cap_s:g} s)"
            )
            self._console.print(
                f"  {self._label}: stage {position + 1}/{count} · "
                f"{load_unit(load.mode, load.stages[position])} · {length}",
                highlight=False,
            )
        measured_s = max(progress.elapsed_s - progress.stage_started_s - load.warmup, 0.0)
        extended = self._lengths is None and measured_s > load.stage_duration
        phase = "warm-up" if progress.elapsed_s - progress.stage_started_s < load.warmup else (
            f"{measured_s:.0f} s" + (" · extended for samples" if extended else "")
        )  # fmt: skip
        self._status(
            f"    {progress.stage_ok}/{self._goal.min_ok} ok samples · {progress.requests} "
            f"requests · {progress.errors} errors · {phase}"
        )

    def _status(self, text: str) -> None:
        if self._live is not None:
            self._live.update(Text(text, no_wrap=True, overflow="ellipsis"), refresh=True)
