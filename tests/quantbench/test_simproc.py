from quantbench.simproc import sim_arguments
from services.sim.__main__ import build_parser, settings_from_args
from services.sim.config import SimSettings


def test_sim_command_line_round_trips_every_setting() -> None:
    settings = SimSettings(
        quant="gptq", gpu="l4", model="m", timing="fixed", ttft_ms=12.5, itl_ms=3.0,
        max_model_len=2048, seed=9, host="127.0.0.2", port=0,
    )  # fmt: skip
    command = sim_arguments(settings)
    assert command[1:3] == ["-m", "services.sim"]
    assert settings_from_args(build_parser().parse_args(command[3:])) == settings
