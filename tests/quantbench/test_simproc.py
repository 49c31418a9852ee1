from quantbench.simproc import sim_arguments
from services.sim.__main__ import build_parser, settings_from_args
from services.sim.config import SimSettings


def test_sim_command_line_round_trips_every_setting() -> None:
    settings = SimSettings(
        quant="gptq", gpu="l4", model="m", timing="fixed", ttft_ms=12.5, itl_ms=3.0,
        max_model_len=2048, seed=9, host="127.0.0.2", port=0, speed=4.0,
        request_log="/tmp/log.jsonl", max_concurrent_requests=7,
        faults={"stall_at_s": 1.5, "stall_for_s": 2, "errors": [{"status": 429, "rate": 0.02},
                {"status": 503, "rate": 0.01}], "cut_rate": 0.01, "malformed_rate": 0.005,
                "hang_rate": 0.005, "refuse_for_s": 3, "restart_at_s": 4, "restart_down_s": 0.5,
                "slowdown": 1.5, "seed": 3},
    )  # fmt: skip
    command = sim_arguments(settings)
    assert command[1:3] == ["-m", "services.sim"]
    assert settings_from_args(build_parser().parse_args(command[3:])) == settings
