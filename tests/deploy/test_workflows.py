"""The CI workflows: they parse, satisfy GitHub's workflow schema (check-jsonschema's vendored
copy, offline), and the nightly job does what docs/nightly.md says, in that order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantbench.cli import build_parser
from quantbench.compare_cli import load_thresholds

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def steps(name: str) -> list[dict[str, Any]]:
    (job,) = workflow(name)["jobs"].values()
    return job["steps"]


def step(name: str, title: str) -> tuple[int, dict[str, Any]]:
    found = [(i, s) for i, s in enumerate(steps(name)) if s.get("name", "").startswith(title)]
    assert len(found) == 1, f"{name}: one step named {title!r}"
    return found[0]


def test_the_workflows_satisfy_the_github_actions_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "nightly-gpu.yml"]
    done = subprocess.run([*CHECK, *map(str, files)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = workflow("nightly-gpu.yml")
    (job,) = broken["jobs"].values()
    job["step"] = job.pop("steps")  # a typo
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run([*CHECK, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "step" in done.stdout


def test_ci_runs_make_test() -> None:
    runs = [s.get("run", "") for s in steps("ci.yml")]
    assert "make test" in runs
    assert workflow("ci.yml")["jobs"]["test"]["runs-on"] == "ubuntu-latest"


def test_nightly_runs_on_a_self_hosted_gpu_runner_one_night_at_a_time() -> None:
    data = workflow("nightly-gpu.yml")
    (job,) = data["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert data["concurrency"]["cancel-in-progress"] is False
    assert data["permissions"] == {"contents": "read", "actions": "read"}
    on = data[True] if True in data else data["on"]  # YAML 1.1 reads `on` as a boolean
    assert "schedule" in on and "workflow_dispatch" in on


def test_nightly_steps_in_order() -> None:
    name = "nightly-gpu.yml"
    doctor, _ = step(name, "Doctor")
    run, run_step = step(name, "Run profiles/nightly.yaml")
    download, download_step = step(name, "Download the baseline")
    compare, compare_step = step(name, "Compare with the baseline")
    upload, upload_step = step(name, "Upload tonight's run")
    fail, fail_step = step(name, "Fail on a regression")
    promote, promote_step = step(name, "Promote tonight's run")
    assert doctor < run < download < compare < upload < fail < promote
    assert "profiles/nightly.yaml" in run_step["run"]
    assert download_step["uses"].startswith("actions/download-artifact@")
    assert download_step["with"]["name"] == promote_step["with"]["name"] == "nightly-baseline"
    assert "run-id" in download_step["with"]
    script = compare_step["run"]
    for flag in ("--markdown verdict.md", "--junit compare.xml", "--thresholds profiles/"):
        assert flag in script
    assert 'cat verdict.md >> "$GITHUB_STEP_SUMMARY"' in script
    assert "always()" in upload_step["if"]
    assert "compare.outputs.code != '0'" in fail_step["if"]
    assert promote_step["if"] == "${{ success() }}"  # only a night that passed


def test_nightly_uses_only_commands_and_files_that_exist() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for s in steps("nightly-gpu.yml"):
        for line in str(s.get("run", "")).splitlines():
            if line.strip().startswith("$QB "):
                assert line.split()[1] in commands, line
    assert (ROOT / "profiles" / "nightly.yaml").exists()
    load_thresholds(ROOT / "profiles" / "thresholds.yaml")  # valid, or a ConfigError
    for s in steps("nightly-gpu.yml") + steps("ci.yml"):
        if "uses" in s:
            action, _, version = s["uses"].partition("@")
            assert version.startswith("v"), f"{action} pinned to a release"


@pytest.mark.parametrize("name", ["ci.yml", "nightly-gpu.yml"])
def test_no_secret_value_in_a_workflow(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    for line in text.splitlines():
        if "secrets." in line:
            assert "${{ secrets." in line
