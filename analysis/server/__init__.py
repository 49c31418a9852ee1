"""Server-side metrics: direct `/metrics` scrapes or a Prometheus server, mapped per stack to
common measures, turned into per-stage figures and reconciled with the client's.
"""

from analysis.server.figures import QUANTILE_METHOD, STAGE_COLUMNS
from analysis.server.mapping import (
    MEASURES,
    STACK_MAPPINGS,
    UnknownStackError,
    mapping_for,
    sample_filter,
)
from analysis.server.prom_client import PrometheusClient, PrometheusError
from analysis.server.promql import PromTarget, selector_for_url, stage_metrics_from_prometheus
from analysis.server.reconcile import (
    CLIENT_COLUMNS,
    RECONCILE_COLUMNS,
    client_figures,
    reconcile,
)
from analysis.server.samples import (
    SERVER_METRICS_FILE,
    load_samples,
    load_scrapes,
    parse_exposition,
)
from analysis.server.scrape import MetricsRecorder
from analysis.server.stage_metrics import load_stage_metrics, stage_metrics_from_scrapes

__all__ = [
    "CLIENT_COLUMNS",
    "MEASURES",
    "QUANTILE_METHOD",
    "RECONCILE_COLUMNS",
    "SERVER_METRICS_FILE",
    "STACK_MAPPINGS",
    "STAGE_COLUMNS",
    "MetricsRecorder",
    "PromTarget",
    "PrometheusClient",
    "PrometheusError",
    "UnknownStackError",
    "client_figures",
    "load_samples",
    "load_scrapes",
    "load_stage_metrics",
    "mapping_for",
    "parse_exposition",
    "reconcile",
    "sample_filter",
    "selector_for_url",
    "stage_metrics_from_prometheus",
    "stage_metrics_from_scrapes",
]
