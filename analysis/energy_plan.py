"""Energy at a target's SLO limit, for the capacity plan (pure): the GPU's mean power there,
joules per output token, output tokens per joule, and what a million output tokens cost in
electricity at a price per kWh, beside their GPU-hour cost.

The power at the limit is interpolated linearly in load between the valid stages around it,
as the limit's rate is (analysis/capacity.py); joules per token = that power ÷ the output
tok/s at the limit. Board energy only: the GPU and its memory, not the host or cooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.capacity import Capacity

__all__ = ["JOULES_PER_KWH", "EnergyAtLimit", "energy_at_limit", "energy_cost_per_million_tokens"]

JOULES_PER_KWH = 3.6e6


def energy_cost_per_million_tokens(j_per_output_token: float, kwh_cost: float) -> float:
    """Electricity for a million output tokens at `kwh_cost` per kWh."""
    return j_per_output_token * 1e6 / JOULES_PER_KWH * kwh_cost


@dataclass(frozen=True)
class EnergyAtLimit:
    mean_power_w: float
    j_per_output_token: float
    kwh_cost: float | None

    @property
    def output_tokens_per_j(self) -> float:
        return 1.0 / self.j_per_output_token

    @property
    def kwh_per_million_tokens(self) -> float:
        return self.j_per_output_token * 1e6 / JOULES_PER_KWH

    @property
    def cost_per_million_tokens(self) -> float | None:
        if self.kwh_cost is None:
            return None
        return energy_cost_per_million_tokens(self.j_per_output_token, self.kwh_cost)

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_power_w": self.mean_power_w,
            "j_per_output_token": self.j_per_output_token,
            "output_tokens_per_j": self.output_tokens_per_j,
            "kwh_per_million_output_tokens": self.kwh_per_million_tokens,
            "kwh_cost": self.kwh_cost,
            "energy_cost_per_million_output_tokens": self.cost_per_million_tokens,
        }


def energy_at_limit(
    rows: pd.DataFrame, capacity: Capacity, kwh_cost: float | None = None
) -> EnergyAtLimit | None:
    """The energy figures of one target at its SLO limit, from its summary rows (one per
    load); None where it sustains no load or no valid stage has a GPU power figure."""
    if not capacity.sustains or capacity.load is None or not capacity.output_tok_per_s:
        return None
    if "gpu_mean_power_w" not in rows:
        return None
    power = pd.to_numeric(rows["gpu_mean_power_w"], errors="coerce")
    usable = rows[rows["valid"].astype(bool) & power.notna()]
    if usable.empty:
        return None
    ordered = usable.assign(_w=power[usable.index]).sort_values("load", kind="stable")
    loads = ordered["load"].to_numpy(float)
    watts = ordered["_w"].to_numpy(float)
    if not loads.min() <= capacity.load <= loads.max():
        return None  # the limit lies outside the loads whose power is known
    mean_power = float(np.interp(capacity.load, loads, watts))
    return EnergyAtLimit(mean_power, mean_power / capacity.output_tok_per_s, kwh_cost)
