"""What a user sees in TensorBoard: a real server over a small sweep, read through its HTTP API."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from rlexp.metrics import read_metrics
from tests.conftest import read_scalars, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(params=["basic", "population"])
def sweep(tmp_path, request):
    # A population sweep's runs read as a sweep of single runs' (in one process: split over
    # worker processes it writes the same runs, tests/test_population.py checks).
    launcher = {"basic": [], "population": ["hydra.launcher.processes=1"]}[request.param]
    result = run_cli(["-m", f"hydra/launcher={request.param}", *launcher, "agent=qnet", "env=toy",
                      "optimizer.lr=0.01,0.002", "seed=0,1",
                      "total_steps=300", "log.every_steps=100", "eval.every_steps=150",
                      "eval.episodes=2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("outputs/multirun/*/*")
    return path


@pytest.fixture
def tensorboard(sweep):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while True:  # until it serves, and has loaded all four runs and the sweep's summary
            try:
                if len(get(base, "/data/runs")) == 5:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, "tensorboard did not start"
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_lists_the_sweep_with_scalars_and_hparams(sweep, tensorboard):
    runs = {p.name: p for p in sweep.iterdir() if (p / ".hydra").is_dir()}
    # Named by their overrides; "." is the sweep dir's own experiment summary.
    assert sorted(get(tensorboard, "/data/runs")) == sorted([*runs, "."])

    name = next(n for n in runs if "optimizer.lr=0.01," in n and ",seed=1," in n)
    query = urllib.parse.urlencode({"run": name, "tag": "eval/return_mean"})
    served = get(tensorboard, f"/data/plugin/scalars/scalars?{query}")
    assert [(step, value) for _, step, value in served] == \
        read_scalars(runs[name])["eval/return_mean"]

    # The sweep's experiment summary: the HParams tab shows the first five hyperparameters
    # (those that differ first) and the first five metrics; the swept ones lead.
    experiment = get(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = experiment["hparamInfos"]
    assert [(h["name"], h.get("differs", False)) for h in infos[:3]] == [
        ("optimizer.lr", True), ("seed", True), ("agent.epsilon.end", False)]
    assert {h["name"] for h in infos} >= {"agent.gamma", "env.variant", "total_steps"}
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert metrics[:5] == ["eval/return_mean", "eval/return_std", "train/episode_return",
                           "train/loss", "train/q_mean"]
    assert "time/sps" in metrics

    groups = get(tensorboard, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                            "STATUS_RUNNING"]})
    assert groups["totalSize"] == 4
    for group in groups["sessionGroups"]:
        run = runs[group["name"]]
        lr = float(run.name.split("optimizer.lr=")[1].split(",")[0])
        seed = int(run.name.split("seed=")[1].split(",")[0])
        assert group["hparams"]["optimizer.lr"] == lr and group["hparams"]["seed"] == seed
        values = {m["name"]["tag"]: m for m in group["metricValues"]}
        final = values["eval/return_mean"]
        assert final["trainingStep"] == 300
        assert final["value"] == pytest.approx(read_metrics(run)["eval_return_mean"])
