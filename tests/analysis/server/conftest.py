"""A real Prometheus scraping three simulators (vLLM, TGI, ExLlamaV2) every second, with a
`MetricsRecorder` scraping the same targets into a run directory; one set for the session.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from analysis.server import MetricsRecorder, PrometheusClient, PrometheusError, sample_filter
from tests.analysis.server.live import (
    PROMETHEUS,
    RESTART_TARGET,
    SIM_ARGS,
    STACKS,
    PromEnv,
    Sim,
    free_port,
    wait_for,
    write_config,
)
from tests.procs import start_sim, stop_sim


@pytest.fixture(scope="session")
def prom_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    if not PROMETHEUS.exists():
        pytest.fail("Debian's prometheus is not installed (make prometheus)")
    root = tmp_path_factory.mktemp("prometheus")
    sims: dict[str, Sim] = {}
    procs: list[subprocess.Popen[str]] = []
    recorders: dict[str, MetricsRecorder] = {}
    prom: subprocess.Popen[bytes] | None = None
    log = (root / "prometheus.log").open("wb")
    client: PrometheusClient | None = None
    try:
        for stack, quant in STACKS.items():
            proc, url = start_sim("--stack", stack, "--quant", quant, "--port", "0", *SIM_ARGS)
            procs.append(proc)
            sims[stack] = Sim(stack, stack, url, proc)
        restart_port = free_port()  # the restart test starts its simulator here later
        config = root / "prometheus.yml"
        hostports = {n: s.hostport for n, s in sims.items()}
        write_config(config, {**hostports, RESTART_TARGET: f"127.0.0.1:{restart_port}"})
        port = free_port()
        prom = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        run_dir = root / "run"
        for name, sim in sims.items():
            keep = sample_filter(sim.stack)  # what the orchestrator is advised to pass
            recorder = MetricsRecorder(run_dir, name, sim.url + "/metrics", keep=keep)
            recorders[name] = recorder.start()
        base_url = f"http://127.0.0.1:{port}"
        client = PrometheusClient(base_url)
        env = PromEnv(client, base_url, run_dir, sims, recorders, restart_port)

        def all_up() -> bool:
            try:
                return all(env.prom_last_ok(name) > 0 for name in sims)
            except PrometheusError:  # not listening yet
                return False

        wait_for(all_up, "Prometheus' first samples of every simulator", 40.0)
        yield env
    finally:
        for recorder in recorders.values():
            recorder.stop()
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=10)
        log.close()
        if client is not None:
            client.close()
        for proc in procs:
            stop_sim(proc)
