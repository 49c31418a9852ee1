"""The server's view of each stage, for the pipeline: per-stage figures from a Prometheus
server when the run names one (else from the scrapes saved in the run directory), their
reconciliation with the client's records, and which stages saw the server restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.server import (
    STACK_MAPPINGS,
    PrometheusClient,
    PrometheusError,
    PromTarget,
    client_figures,
    load_stage_metrics,
    reconcile,
    selector_for_url,
    stage_metrics_from_prometheus,
)
from analysis.server.samples import SERVER_METRICS_FILE
from loadtest.records import StageRecord
from loadtest.run_meta import RunMeta

__all__ = ["SERVER_STAGES_FILE", "ServerView", "load_server_figures", "server_view"]

SERVER_STAGES_FILE = "server_stages.csv"


@dataclass(frozen=True)
class ServerView:
    figures: pd.DataFrame  # analysis.server.STAGE_COLUMNS, one row per target × stage
    reconciliation: pd.DataFrame  # analysis.server.RECONCILE_COLUMNS
    note: str | None = None  # why the Prometheus path was not used, if it was asked for

    def flags(self) -> list[tuple[str, int, str]]:
        rows = self.reconciliation
        if rows.empty:
            return []
        flagged = rows[rows["flagged"].astype(bool)]
        return [(str(r.target), int(r.stage), str(r.reason)) for r in flagged.itertuples()]

    def restarts(self) -> dict[tuple[str, int], str]:
        rows = self.figures
        if rows.empty:
            return {}
        hit = rows[rows["restarted"].astype(bool)]
        return {(str(r.target), int(r.stage)): str(r.restart_reason) for r in hit.itertuples()}


def load_server_figures(
    run_dir: Path, meta: RunMeta, stages: list[StageRecord]
) -> tuple[pd.DataFrame, str | None]:
    """Per-stage server figures (`STAGE_COLUMNS`) and, if Prometheus was asked for but could
    not be used, why. Reads the saved scrapes or queries Prometheus; writes nothing."""
    targets = [t for t in meta.targets if t.stack in STACK_MAPPINGS]
    stacks = {t.name: t.stack for t in targets}
    mine = [s for s in stages if s.target in stacks]
    prometheus = meta.prometheus_url()
    note = None
    if prometheus and mine:
        queried = {
            t.name: PromTarget(t.stack, selector_for_url(t.metrics_url))
            for t in targets
            if t.metrics_url
        }
        try:
            return stage_metrics_from_prometheus(PrometheusClient(prometheus), mine, queried), None
        except PrometheusError as exc:
            note = f"Prometheus at {prometheus} unusable ({exc}); figures from the saved scrapes"
    if not mine or not (run_dir / SERVER_METRICS_FILE).exists():
        return pd.DataFrame(), note
    return load_stage_metrics(run_dir, mine, stacks), note


def server_view(
    figures: pd.DataFrame,
    note: str | None,
    stages: list[StageRecord],
    requests: pd.DataFrame,
) -> ServerView:
    """The server's figures reconciled with the client's (pure)."""
    if figures.empty:
        return ServerView(figures, pd.DataFrame(), note)
    windows = {
        (str(r.target), int(r.stage)): (float(r.window_start_s), float(r.window_end_s))
        for r in figures.itertuples()
        if pd.notna(r.window_start_s) and pd.notna(r.window_end_s)
    }
    client = client_figures(requests, stages, windows)
    return ServerView(figures, reconcile(figures, client), note)
