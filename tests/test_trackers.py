"""Experiment trackers (rlexp.trackers): MLflow against a real server, W&B offline read back with
wandb's own reader; the same scalars as TensorBoard, resumes that continue the same tracker run,
and trackers that fail without costing the run anything."""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from rlexp import evaluate, export, rundir, runner
from rlexp.agents.dqn import DQNAgent
from rlexp.metrics import read_metrics
from rlexp.stop import StopSignals
from tests.conftest import (
    TINY,
    TINY_DQN,
    compose_config,
    options,
    read_scalars,
    run_cli,
    run_in_process,
)

RUN = ["agent=dqn", "env=cartpole", *TINY, *TINY_DQN, "total_steps=800", "log.every_steps=100",
       "eval.every_steps=400", "checkpoint.every_steps=200", "device=cpu"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` with a SQLite backend on 127.0.0.1 at a free port."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{root / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def _tb_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    return {tag: sorted(points) for tag, points in read_scalars(run_dir).items()}


def _mlflow_series(client, run_id: str, tags) -> dict[str, list[tuple[int, float]]]:
    return {tag: sorted((m.step, m.value) for m in client.get_metric_history(run_id, tag))
            for tag in tags}


def _assert_same_series(tracked: dict, tensorboard: dict) -> None:
    assert tracked.keys() == tensorboard.keys()
    for tag, points in tensorboard.items():  # TensorBoard keeps float32
        assert [s for s, _ in tracked[tag]] == [s for s, _ in points], tag
        assert [v for _, v in tracked[tag]] == pytest.approx([v for _, v in points], rel=1e-6,
                                                             abs=1e-6), tag


def _mlflow_run_id(run_dir: Path) -> str:
    return json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]


def _check_mlflow_run(client, run_dir: Path, parent_id: str):
    """The run's MLflow run: finished, nested under the sweep's, its params the flattened
    config and its metric histories TensorBoard's."""
    run = client.get_run(_mlflow_run_id(run_dir))
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent_id
    flat = rundir.flatten(yaml.safe_load((run_dir / rundir.CONFIG).read_text()))
    assert run.data.params == {k: str(v) for k, v in flat.items()}
    tensorboard = _tb_series(run_dir)
    _assert_same_series(_mlflow_series(client, run.info.run_id, tensorboard), tensorboard)
    return run


def _stop_and_resume(args: list[str], run_dir: Path, monkeypatch, read=lambda run_dir: None):
    """Train ``args`` until a SIGTERM at step 530 (between two log points) stops it, then
    resume it to the end; returns ``read(run_dir)`` from before the resume."""
    learn = DQNAgent.learn

    def sigterm_at_530(self, batch, should_stop=None):
        if self.env_steps == 530:
            os.kill(os.getpid(), signal.SIGTERM)
        return learn(self, batch, should_stop)

    monkeypatch.setattr(DQNAgent, "learn", sigterm_at_530)
    with StopSignals() as stop:
        assert run_in_process(args, run_dir, stop).status == "interrupted"
    monkeypatch.undo()
    before = read(run_dir)
    resumed = runner.run(compose_config([*args, f"resume={run_dir}"]), run_dir)
    assert resumed.status == "completed" and resumed.resumed_from_step == 531  # its step done
    return before


# ------------------------------------------------------------------------------------ MLflow


def test_a_sweep_sends_params_metrics_nested_runs_and_its_report_to_mlflow(mlflow_server,
                                                                          tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *RUN, "seed=0", "logger=mlflow",
                      f"logger.mlflow.tracking_uri={mlflow_server.uri}",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow_server.client()
    parent_id = json.loads((sweep / ".trackers.json").read_text())["mlflow"]["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED", result.stdout[-2000:] + result.stderr[-2000:]
    assert {a.path for a in client.list_artifacts(parent_id)} >= {
        "summary.md", "curves.png", "aggregate.png"}
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 1
    for job in jobs:
        run = _check_mlflow_run(client, job, parent_id)
        final = read_metrics(job)["eval_return_mean"]
        assert run.data.metrics["final/eval_return_mean"] == pytest.approx(final)


def test_a_stopped_and_resumed_run_is_one_mlflow_run_without_gap_or_duplicate(
        mlflow_server, tmp_path, monkeypatch):
    args = [*RUN, "logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_server.uri}",
            "logger.mlflow.experiment=resume", "logger.mlflow.log_checkpoints=true"]
    run_dir = tmp_path / "run"
    first_id = _stop_and_resume(args, run_dir, monkeypatch, _mlflow_run_id)
    assert _mlflow_run_id(run_dir) == first_id
    client = mlflow_server.client()
    experiment = client.get_experiment_by_name("resume").experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [first_id]
    tensorboard = _tb_series(run_dir)
    assert [s for s, _ in tensorboard["train/loss"]] == list(range(100, 801, 100))
    _assert_same_series(_mlflow_series(client, first_id, tensorboard), tensorboard)
    # log_checkpoints: the final checkpoint is an artifact, byte for byte.
    copy = Path(client.download_artifacts(first_id, "final.pt", str(tmp_path)))
    assert copy.read_bytes() == (run_dir / rundir.FINAL).read_bytes()


def test_a_server_killed_mid_run_costs_one_warning_and_nothing_else(tmp_path, monkeypatch,
                                                                    caplog):
    server = MlflowServer(tmp_path / "server")
    learn = DQNAgent.learn
    run_dir = tmp_path / "run"

    def kill_server_at_500(self, batch, should_stop=None):
        if self.env_steps == 500:  # once the server has the points up to step 400's checkpoint
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                    (run_dir / "trackers.json").is_file() and len(server.client().
                    get_metric_history(_mlflow_run_id(run_dir), "train/loss")) >= 3):
                time.sleep(0.1)
            server.stop()
        return learn(self, batch, should_stop)

    monkeypatch.setattr(DQNAgent, "learn", kill_server_at_500)
    caplog.set_level(logging.WARNING, logger="rlexp")
    try:
        metrics = run_in_process([*RUN, "logger=mlflow", "logger.mlflow.timeout_s=2",
                                  f"logger.mlflow.tracking_uri={server.uri}"], run_dir)
    finally:
        server.stop()
    assert metrics.status == "completed" and metrics.env_steps == 800
    assert [s for s, _ in _tb_series(run_dir)["train/loss"]] == list(range(100, 801, 100))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("mlflow: ") and "not sent: " in \
        warnings[0] and "final metrics" in warnings[0], warnings


def test_a_tracking_uri_nothing_listens_on_costs_one_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="rlexp")
    metrics = run_in_process([*RUN, "logger=mlflow", "logger.mlflow.timeout_s=1",
                              f"logger.mlflow.tracking_uri=http://127.0.0.1:{_free_port()}"],
                             tmp_path / "run")
    assert metrics.status == "completed"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("mlflow: ") and "not sent: " in \
        warnings[0] and "scalar points" in warnings[0], warnings


# ------------------------------------------------------------------------------------- W&B


def _wandb_records(run_dir: Path) -> list[tuple[str, dict, dict]]:
    """Each offline W&B run under ``run_dir`` (in the order made): its id, its history by step
    and its config, read with wandb's own reader of its transaction log."""
    import wandb
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    # wandb's service writes an offline run's file after run.finish() returns; at a process's
    # exit, as here, it shuts down once everything is written.
    wandb.teardown()
    runs = []
    made = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb")),
                  key=lambda p: os.stat(Path(p).parent).st_ctime_ns)
    for path in made:
        store = datastore.DataStore()
        store.open_for_scan(path)
        run_id, history, config = None, {}, {}
        while (data := store.scan_data()) is not None:
            record = pb.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run_id = record.run.run_id
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in record.config.update})
            elif kind == "history":
                items: dict = {}
                for item in record.history.item:  # a media value's fields are nested keys
                    keys = [item.key] if item.key else list(item.nested_key)
                    parent = items
                    for key in keys[:-1]:
                        parent = parent.setdefault(key, {})
                    parent[keys[-1]] = json.loads(item.value_json)
                history[int(items.pop("_step"))] = {k: v for k, v in items.items()
                                                    if not k.startswith("_")}
        runs.append((run_id, history, config))
    return runs


def _as_series(history: dict[int, dict]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(history):
        for tag, value in history[step].items():
            series.setdefault(tag, []).append((step, value))
    return series


@pytest.fixture
def no_wandb_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings of the machine


def test_wandb_without_a_key_runs_offline_and_a_resumed_run_appends_to_it(
        tmp_path, monkeypatch, no_wandb_key):
    args = [*RUN, "logger=wandb", "logger.wandb.project=rlexp-test"]
    run_dir = tmp_path / "run"
    _stop_and_resume(args, run_dir, monkeypatch)
    runs = _wandb_records(run_dir)
    assert len(runs) == 2 and runs[0][0] == runs[1][0]  # the same run id, appended
    first, second = runs[0][1], runs[1][1]
    assert max(first) < min(second)  # no step twice
    assert runs[0][2]["agent"]["name"] == "dqn" and runs[0][2]["total_steps"] == 800
    _assert_same_series(_as_series({**first, **second}), _tb_series(run_dir))
    # An evaluation's video goes to the same W&B run, as a wandb.Video.
    evaluate.main([str(run_dir), "episodes=1", "video=true"])
    runs = _wandb_records(run_dir)
    assert len(runs) == 3 and runs[2][0] == runs[0][0]
    (video,) = [v for step in runs[2][1].values() for v in step.values()]
    assert video["_type"] == "video-file" and video["path"].endswith(".gif"), video


def test_wandb_disabled_writes_nothing_and_no_credential_is_ever_written(tmp_path, monkeypatch,
                                                                          no_wandb_key):
    disabled = tmp_path / "disabled"
    assert run_in_process([*RUN, "logger=wandb", "logger.wandb.mode=disabled"],
                          disabled).status == "completed"
    assert not (disabled / "wandb").exists() and not (disabled / "trackers.json").exists()
    key = "rlexp-fake-key-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", key)
    offline = tmp_path / "offline"
    assert run_in_process([*RUN, "logger=wandb", "logger.wandb.mode=offline"],
                          offline).status == "completed"
    assert glob.glob(str(offline / "wandb" / "offline-run-*"))
    for path in offline.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------------------------ export


def test_export_sends_finished_runs_as_they_would_have_been_sent_live(mlflow_server, tmp_path,
                                                                      no_wandb_key, capsys):
    # A sweep (of one run) trained with TensorBoard alone, then exported to MLflow and to W&B
    # (offline).
    sweep = tmp_path / "sweep"
    run_in_process(RUN, sweep / "seed=0")
    (sweep / "summary.md").write_text("# the sweep's report\n")
    assert export.main([str(sweep), "--to", "mlflow", "--tracking-uri", mlflow_server.uri,
                        "--experiment", "exported"]) == 0
    client = mlflow_server.client()
    parent_id = json.loads((sweep / ".trackers.json").read_text())["mlflow"]["run_id"]
    assert [a.path for a in client.list_artifacts(parent_id)] == ["summary.md"]
    _check_mlflow_run(client, sweep / "seed=0", parent_id)
    capsys.readouterr()
    assert export.main([str(sweep), "--to", "mlflow", "--tracking-uri", mlflow_server.uri]) == 0
    assert capsys.readouterr().out.count("already sent to mlflow, left as it is") == 1
    assert export.main([str(sweep / "seed=0"), "--to", "wandb"]) == 0
    ((run_id, history, config),) = _wandb_records(sweep / "seed=0")
    assert config["seed"] == 0
    _assert_same_series(_as_series(history), _tb_series(sweep / "seed=0"))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "population", "local_cluster"])
def test_every_launcher_finishes_every_tracker_run(tmp_path, launcher):
    # Two configurations x two seeds: a population launcher trains each pair as one population,
    # whose members are each their own W&B and MLflow run.
    sweep, store = tmp_path / "sweep", tmp_path / "mlflow.db"
    result = run_cli(["-m", f"hydra/launcher={launcher}", *RUN, "seed=0,1",
                      "optimizer.lr=0.001,0.002", "logger=[mlflow,wandb]",
                      f"logger.mlflow.tracking_uri=sqlite:///{store}",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                     env={"HOME": str(tmp_path), "WANDB_API_KEY": ""}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    jobs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(jobs) == 4
    for job in jobs:
        assert client.get_run(_mlflow_run_id(job)).info.status == "FINISHED", job
        ((run_id, history, _),) = _wandb_records(job)
        assert run_id == json.loads((job / "trackers.json").read_text())["wandb"]["id"]
        assert max(history) == 800  # every point sent, to the last


def test_a_tracker_whose_package_is_missing_is_refused_before_training(tmp_path, monkeypatch):
    import importlib.util

    from rlexp.config import ConfigError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "wandb" else find_spec(name, *args))
    with pytest.raises(ConfigError, match=r"^logger=wandb needs the wandb package: "
                                          r"pip install -e '\.\[wandb\]'$"):
        run_in_process([*RUN, "logger=wandb"], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_tracking_uri_with_credentials_is_refused_before_they_are_saved():
    from rlexp.config import ConfigError

    with pytest.raises(ConfigError, match="holds credentials.*MLFLOW_TRACKING_PASSWORD"):
        compose_config(["logger=mlflow", "logger.mlflow.tracking_uri=http://bob:pw@host:5000"])


@pytest.mark.parametrize("option", options("logger"))
def test_every_logger_option_composes_to_trackers_rlexp_has(option):
    from rlexp.trackers import tracker_classes

    logger = compose_config([f"logger={option}"]).logger
    selected = {name for name in ("tensorboard", *tracker_classes())
                if getattr(logger, name) is not None}
    assert selected and selected <= {"tensorboard", *tracker_classes()}
    assert (option in selected) or option == "many" and selected == {"tensorboard",
                                                                      *tracker_classes()}


def test_a_local_mlflow_store_leaves_the_runs_logging_as_it_was(tmp_path, caplog, monkeypatch):
    # MLflow runs alembic on every local database it opens, whose logging config replaces the
    # root logger's handlers and level: rlexp's console and train.log lines went silent.
    monkeypatch.chdir(tmp_path)  # the default store, outputs/mlflow.db
    caplog.set_level(logging.INFO)
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    for run in ("new", "existing"):  # a new database, then one that exists
        assert run_in_process([*RUN, "logger=mlflow"], tmp_path / run).status == "completed"
    assert (root.level, list(root.handlers)) == before
    assert sum(r.getMessage().startswith("done ") for r in caplog.records) == 2
