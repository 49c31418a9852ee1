from pathlib import Path

import pytest

from quantbench.config import load_config
from quantbench.errors import ConfigError

GOOD = """
name: t
targets:
  - name: a
    sim: {stack: vllm, quant: awq}
  - name: b
    url: http://127.0.0.1:8000
    stack: vllm
    quant: gptq
    api_key_env: MY_KEY
workload:
  endpoint: completions
  prompt_tokens: 64
  output_tokens: {dist: uniform, mean: 32, min: 8, max: 64}
load: {stages: [1, 2], stage_duration: 1m, warmup: 5s}
slo: {ttft_ms: 500, tpot_ms: 50}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def test_good_config_resolves_durations_and_stacks(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.load.stage_duration == 60 and config.load.warmup == 5
    assert [t.resolved_stack for t in config.targets] == ["vllm", "vllm"]
    assert [t.resolved_quant for t in config.targets] == ["awq", "gptq"]
    assert [t.simulated for t in config.targets] == [True, False]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("stage_duration: 1m", "stage_duraton: 1m"),
            r"bench.yaml: load.stage_duraton: unknown key",
        ),
        (
            ("stages: [1, 2]", "stages: [0, 2]"),
            r"load.stages\[0\]: Input should be greater than 0",
        ),
        (
            ("endpoint: completions", "endpoint: embeddings"),
            r"workload.endpoint: Input should be 'completions' or 'chat'",
        ),
        (("quant: awq}", "quant: awq, colour: red}"), r"targets\[0\].sim.colour: unknown key"),
        (
            ("url: http://127.0.0.1:8000", "url: 127.0.0.1:8000"),
            r"targets\[1\].url: String should match pattern",
        ),
        (
            ("    sim: {stack: vllm, quant: awq}\n", ""),
            r"targets\[0\]: give exactly one of `url`",
        ),
        (("name: b", "name: a"), r"target name 'a' is used twice"),
        (
            ("stage_duration: 1m", "stage_duration: soon"),
            r"load.stage_duration: 'soon' is not a duration",
        ),
        (
            ("slo: {ttft_ms: 500", "slo: {ttft_ms: -1"),
            r"slo.ttft_ms: Input should be greater than 0",
        ),
        (
            ("stage_duration: 1m", "stage_duration: 0s"),
            r"load.stage_duration: Input should be greater than 0",
        ),
        (
            ("stage_duration: 1m", "stage_duration: .inf"),
            r"load.stage_duration: Input should be a finite number",
        ),
        (("stages: [1, 2]", "stages: [true]"), r"load.stages\[0\]: true is not a number"),
        (("stages: [1, 2]", "stages: [.nan]"), r"load.stages\[0\]: Input should be a finite"),
        (
            ("stages: [1, 2]", "stages: [1e9]"),
            r"bench.yaml: load: 1 generator process\(es\) with up to 1,000,000,000 requests in "
            r"flight each need about .* GiB, more than half of this host's available memory",
        ),
        (
            ("stages: [1, 2]", "stages: [1, 2], processes: 100000"),
            r"bench.yaml: load: 100,000 generator process\(es\) .*: lower load.processes",
        ),
        (
            ("stages: [1, 2]", "stages: [1, 2], mode: search, search: {min_rate: 5, max_rate: 2}"),
            r"bench.yaml: load.search: min_rate \(5\) must be below max_rate \(2\)",
        ),
        (
            ("stages: [1, 2]", "stages: [1, 2], mode: search, search: {precision: 0.7}"),
            r"bench.yaml: load.search.precision: Input should be less than 0.5",
        ),
        (
            ("stages: [1, 2]", "stages: [1, 2], search: {start: 2}"),
            r"load.search is set but load.mode is concurrency; use mode: search",
        ),
        (
            (
                "warmup: 5s}\nslo: {ttft_ms: 500, tpot_ms: 50}",
                "warmup: 5s, mode: search}\nslo: {ttft_ms: null, tpot_ms: null}",
            ),
            r"load.mode: search looks for the rate that meets the slo; set one",
        ),
        (
            ("stages: [1, 2]", "stages: [1, 2], mode: sweep, sweep: {rates: 0}"),
            r"load.sweep.rates: Input should be greater than or equal to 1",
        ),
        (
            ("stages: [1, 2]", "stages: [300]"),
            r"bench.yaml: load.stages: 300 concurrent requests is 300 streams per generator "
            r"process, more than one times accurately \(256\); set load.processes to at least 2 "
            r".*, or set load.allow_overload: true to run it anyway",
        ),
    ],
)
def test_bad_config_is_one_line_naming_file_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))


def test_overload_runs_when_the_user_says_so_but_memory_still_bounds_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.replace("[1, 2]", "[300], allow_overload: true")))
    assert config.load.stages == [300] and config.load.allow_overload
    with pytest.raises(ConfigError, match="more than half of this host's available memory"):
        load_config(write(tmp_path, GOOD.replace("[1, 2]", "[1e9], allow_overload: true")))


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bench.yaml"
    path.write_bytes(GOOD.replace("name: t", "name: caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 10); save it as UTF-8"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "targets:\n  - name: a\n    sim: {stack: vllm\n")
    with pytest.raises(ConfigError, match=r"bench.yaml:\d+: YAML syntax error"):
        load_config(path)


def test_missing_file_and_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="targets: required but missing"):
        load_config(write(tmp_path, "name: x\n"))


def test_dataset_paths_are_relative_to_the_config_and_checked_up_front(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.jsonl").write_text('{"prompt": "hello"}\n')
    config = load_config(
        write(tmp_path, GOOD.replace("workload:\n", "workload:\n  dataset: data/prompts.jsonl\n"))
    )
    assert config.workload.dataset == (tmp_path / "data" / "prompts.jsonl").resolve()
    (tmp_path / "data" / "prompts.jsonl").write_text('{"prompt": "hello"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bench.yaml: workload: .*prompts.jsonl:2: not JSON"):
        load_config(
            write(
                tmp_path, GOOD.replace("workload:\n", "workload:\n  dataset: data/prompts.jsonl\n")
            )
        )
