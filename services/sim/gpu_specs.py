"""The simulated GPUs and what a simulated model weighs: the constants of the power model.

Board power limits, memory and bandwidth are the vendors' spec-sheet figures (cited per card);
idle, clock-up and memory-interface power are assumptions, SIMULATED magnitudes chosen so the
model lands where public measurements of LLM serving do (idle well below 100 W on a
data-center card, batch-1 decode at roughly half the board limit, compute-bound prefill at
the limit). docs/telemetry.md, "Simulated GPU", derives them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU_SPECS", "KV_BYTES_PER_TOKEN", "WEIGHT_BYTES", "GpuSpec", "gpu_spec", "weight_bytes"]


@dataclass(frozen=True)
class GpuSpec:
    """One card as the simulator draws it.

    `tdp_w`: the board power limit (spec sheet); `idle_w`: nothing running; `active_w`: added
    while kernels run (clocks up, launches, caches); `memory_w`: added with the memory interface
    busy all the time (the DRAM and the data path to the SMs); `power_window_s`: the averaging
    window of the power reading (1 s on Ampere and newer except GA100, instantaneous on GA100:
    NVML nvmlDeviceGetPowerUsage); memory in MiB as nvidia-smi shows it.
    """

    key: str
    model_name: str
    tdp_w: float
    idle_w: float
    active_w: float
    memory_w: float
    memory_bytes_per_s: float
    memory_total_mib: int
    memory_reserved_mib: int
    power_window_s: float
    sm_clock_max_mhz: int
    sm_clock_idle_mhz: int
    mem_clock_mhz: int
    source: str


GPU_SPECS: dict[str, GpuSpec] = {
    "h100": GpuSpec(
        key="h100",
        model_name="NVIDIA H100 80GB HBM3",
        tdp_w=700.0,
        idle_w=80.0,
        active_w=60.0,
        memory_w=250.0,
        memory_bytes_per_s=3.35e12,
        memory_total_mib=81559,
        memory_reserved_mib=519,
        power_window_s=1.0,
        sm_clock_max_mhz=1980,
        sm_clock_idle_mhz=345,
        mem_clock_mhz=2619,
        source="H100 SXM5 80GB: max TDP up to 700 W, 80 GB HBM3 at 3.35 TB/s "
        "(NVIDIA H100 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/h100/)",
    ),
    "a100": GpuSpec(
        key="a100",
        model_name="NVIDIA A100-SXM4-80GB",
        tdp_w=400.0,
        idle_w=70.0,
        active_w=40.0,
        memory_w=150.0,
        memory_bytes_per_s=2.039e12,
        memory_total_mib=81920,
        memory_reserved_mib=543,
        power_window_s=0.0,  # GA100: instantaneous readings
        sm_clock_max_mhz=1410,
        sm_clock_idle_mhz=210,
        mem_clock_mhz=1593,
        source="A100 80GB SXM: max TDP 400 W, 80 GB HBM2e at 2,039 GB/s "
        "(NVIDIA A100 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/a100/)",
    ),
    "l4": GpuSpec(
        key="l4",
        model_name="NVIDIA L4",
        tdp_w=72.0,
        idle_w=16.0,  # a 72 W card cannot idle at 70 W: ~16 W is what an idle L4 reports
        active_w=8.0,
        memory_w=30.0,
        memory_bytes_per_s=300e9,
        memory_total_mib=23034,
        memory_reserved_mib=434,
        power_window_s=1.0,
        sm_clock_max_mhz=2040,
        sm_clock_idle_mhz=210,
        mem_clock_mhz=6251,
        source="L4: max TDP 72 W, 24 GB GDDR6 at 300 GB/s "
        "(NVIDIA L4 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/l4/)",
    ),
}

# Bytes of weights one decode step reads for the 8B Llama-3.1-class model of the profiles
# (services/sim/profiles/*.yaml derive their step times from the same figures): BF16 8.0e9
# parameters x 2 bytes; AWQ/GPTQ 4-bit group-128 bodies with FP16 embeddings and head; EXL2 at
# ~4.65 bits per weight with a ~6-bit head. Any other label is weighed as FP16.
WEIGHT_BYTES: dict[str, float] = {"fp16": 16.0e9, "awq": 5.7e9, "gptq": 5.7e9, "exl2": 4.6e9}

# KV cache per token of that model: 32 layers x 8 KV heads x 128 dims x (K, V) x 2 bytes.
KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2


def gpu_spec(name: str) -> GpuSpec:
    """The card named `name`; a name without a spec (fixed timing accepts any) is drawn as an
    H100."""
    return GPU_SPECS.get(name.lower(), GPU_SPECS["h100"])


def weight_bytes(quant: str) -> float:
    return WEIGHT_BYTES.get(quant.lower(), WEIGHT_BYTES["fp16"])
