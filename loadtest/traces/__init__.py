"""Production traces: read them (Mooncake, BurstGPT, Azure, or mapped JSON lines/CSV) into
columns, window, sample and speed them up, build prompts that share prefixes as the trace's
`hash_ids` say, and describe them.
"""

from loadtest.traces.config import ColumnMapping, GrowthStages, TraceConfig, TraceFormat
from loadtest.traces.controls import (
    ReplayStage,
    apply_controls,
    growth_stages,
    sample,
    speedup,
    stage_trace,
    window,
)
from loadtest.traces.formats import FORMATS
from loadtest.traces.model import Trace, TraceError, TraceRequest, iter_requests, requests_at
from loadtest.traces.prefixes import BlockPrompts
from loadtest.traces.readers import read_trace, read_trace_config
from loadtest.traces.stats import (
    TRACE_FILE,
    TraceDescription,
    TraceSummary,
    describe_trace,
    prefix_hits,
    read_trace_summary,
    write_trace_summary,
)

__all__ = [
    "FORMATS",
    "TRACE_FILE",
    "BlockPrompts",
    "ColumnMapping",
    "GrowthStages",
    "ReplayStage",
    "Trace",
    "TraceConfig",
    "TraceDescription",
    "TraceError",
    "TraceFormat",
    "TraceRequest",
    "TraceSummary",
    "apply_controls",
    "describe_trace",
    "growth_stages",
    "iter_requests",
    "prefix_hits",
    "read_trace",
    "read_trace_config",
    "read_trace_summary",
    "requests_at",
    "sample",
    "speedup",
    "stage_trace",
    "window",
    "write_trace_summary",
]
