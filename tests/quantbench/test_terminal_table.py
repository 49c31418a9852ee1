"""The end-of-run stage table: a sweep's stages count users and req/s in one column, so each
cell carries its unit (a bare "16" beside "63" would read as the same kind of load)."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from analysis.config import SloConfig
from quantbench.terminal import summary_table


def _rows(modes_loads: list[tuple[str, float]]) -> pd.DataFrame:
    n = len(modes_loads)
    return pd.DataFrame(
        {
            "target": ["exl"] * n,
            "stage": range(n),
            "mode": [m for m, _ in modes_loads],
            "load": [x for _, x in modes_loads],
            "valid": [True] * n,
            "errors": [0] * n,
            "error_rate": [0.0] * n,
            "req_per_s": [10.0] * n,
            "output_tok_per_s": [100.0] * n,
        }
    )


def _text(summary: pd.DataFrame) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(summary_table(summary, SloConfig()))
    return console.export_text()


def test_a_sweep_s_mixed_loads_carry_their_units() -> None:
    text = _text(_rows([("concurrency", 1), ("concurrency", 16), ("rate", 63.0)]))
    assert "1 user" in text and "16 users" in text and "63 req/s offered" in text


def test_one_mode_keeps_its_unit_in_the_header_and_bare_numbers() -> None:
    text = _text(_rows([("rate", 10.0), ("rate", 20.0)]))
    header = text.splitlines()[1]
    assert "req/s offered" in header
    assert "20 req/s offered" not in text
