"""MLflow (``logger=mlflow``): one MLflow run per rlexp run, nested under its sweep's parent run.

- Store: ``logger.mlflow.tracking_uri``, an ``http(s)://`` server or a database URI; by default
  the SQLite store ``outputs/mlflow.db`` (MLflow's file store is deprecated), with artifacts in
  ``outputs/mlartifacts``.
- Experiment: ``logger.mlflow.experiment``, else the sweep's directory name, else the run's
  name. A sweep is a parent run (:func:`start_sweep`), its jobs' runs nested under it, and its
  report's figures and summary.md become the parent's artifacts (:func:`end_sweep`).
- Params: the flattened config; metrics: TensorBoard's scalars, names and steps alike, and the
  final evaluation as ``final/*``; the resolved config as ``config.yaml``; files sent at the end
  (the final checkpoint with ``log_checkpoints``) as artifacts.
- Requests time out after ``timeout_s`` and are retried once: an unreachable server is found
  out in seconds, and (rlexp.trackers) never holds up training.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

from rlexp import rundir
from rlexp.trackers import SWEEP_IDS_FILE, Point, Tracker, bounded, save_id, saved_ids

log = logging.getLogger("rlexp")
#: MLflow's limits per log_batch call.
MAX_METRICS, MAX_PARAMS, MAX_PARAM_LENGTH = 1000, 100, 6000
STATUS = {"completed": "FINISHED", "interrupted": "KILLED"}  # else FAILED


def tracking_uri(settings: Any) -> str:
    if settings.tracking_uri:
        return str(settings.tracking_uri)
    outputs = Path("outputs").resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{outputs / 'mlflow.db'}"


def client(settings: Any):
    # Read by MLflow at each request: a server that does not answer is given up in seconds.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(settings.timeout_s))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Each retry of an unreachable server would be a warning line of its own: rlexp.trackers
    # says once what was not sent.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    uri = tracking_uri(settings)
    if is_server(uri):
        import mlflow

        # A server's proxied artifacts (mlflow-artifacts:/) are uploaded through the
        # process-wide tracking URI, whatever the client's.
        mlflow.set_tracking_uri(uri)
        return MlflowClient(tracking_uri=uri)
    # MLflow brings a local database up to date with alembic each time it opens one, and
    # alembic's logging config replaces the root logger's handlers and level (rlexp's console
    # and train.log lines go through them) with its own, printing every step to stderr: its
    # handlers are made while stderr is this buffer, and the root logger is put back after.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            mlflow_client = MlflowClient(tracking_uri=uri)
            mlflow_client.search_experiments(max_results=1)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return mlflow_client


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def experiment_id(mlflow_client, name: str, uri: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not is_server(uri) and not uri.startswith("databricks"):  # a local database
        location = (Path("outputs") / "mlartifacts").resolve().as_uri()
    return mlflow_client.create_experiment(name, artifact_location=location)


def experiment_name(settings: Any, sweep_dir: Path | None, run_name: str) -> str:
    return settings.experiment or (sweep_dir.name if sweep_dir is not None else run_name)


def run_label(run_dir: Path) -> str:
    """A run's name in MLflow and W&B: its directory's name (with its job's, for a job's
    ``seed<N>/`` run)."""
    run_dir = Path(run_dir)
    return f"{run_dir.parent.name}/{run_dir.name}" if run_dir.name.startswith("seed") and \
        run_dir.name[4:].isdigit() else run_dir.name


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, *args):
        super().__init__(*args)
        #: A local database is opened here, before training logs anything: opening one puts
        #: the root logger back after alembic's config (see client()), and a line another
        #: thread logs meanwhile would be lost. A server is reached in the sender thread.
        self.client = None
        if not is_server(tracking_uri(self.settings)):
            try:
                self.client = client(self.settings)
            except Exception:  # noqa: BLE001 - open() meets it again and reports it
                log.debug("mlflow: the local store did not open", exc_info=True)

    def open(self) -> None:
        self.client = self.client or client(self.settings)
        uri = tracking_uri(self.settings)
        ids = saved_ids(self.run_dir).get(self.name)
        if ids and ids.get("tracking_uri") == uri:  # a resumed run goes on in its MLflow run
            self.run_id = ids["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        parent = saved_ids(self.sweep_dir, SWEEP_IDS_FILE).get(self.name) \
            if self.sweep_dir is not None else None
        tags = {"rlexp.run_dir": str(self.run_dir)}
        if parent and parent.get("tracking_uri") == uri:
            tags["mlflow.parentRunId"] = parent["run_id"]
            experiment = parent["experiment_id"]
        else:
            experiment = experiment_id(self.client, experiment_name(
                self.settings, self.sweep_dir, self.run_name), uri)
        run = self.client.create_run(experiment, run_name=run_label(self.run_dir), tags=tags)
        self.run_id = run.info.run_id
        save_id(self.run_dir, self.name, {"run_id": self.run_id, "tracking_uri": uri})
        from mlflow.entities import Param

        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(
            self.flat_config.items())]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS])
        self.client.log_text(self.run_id, self.yaml_text, "config.yaml")

    def send_scalars(self, points: list[Point]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value, step in points]
        for i in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + MAX_METRICS])

    def send_files(self, files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))

    @property
    def finish_timeout_s(self) -> float:
        return _wait_s(self.settings)

    def files_at_end(self, status: str) -> list[Path]:
        final = self.run_dir / rundir.FINAL
        return [final] if self.settings.log_checkpoints and final.is_file() else []

    def close(self, status: str, summary: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(summary.get("env_steps", 0))
        final = [Metric(f"final/{k}", float(v), now, step) for k, v in summary.items()]
        if final:
            self.client.log_batch(self.run_id, metrics=final)
        self.client.set_tag(self.run_id, "rlexp.status", status)
        self.client.set_terminated(self.run_id, status=STATUS.get(status, "FAILED"))


def start_sweep(settings: Any, sweep_dir: Path) -> None:
    """The sweep's parent run, its id saved in the sweep dir for the jobs to nest under; a
    failure or a silence is one warning line, never the sweep's failure."""
    bounded("mlflow: the sweep's parent run", lambda: _start_sweep(settings, sweep_dir),
            _wait_s(settings))


def end_sweep(settings: Any, sweep_dir: Path, files: list[Path], status: str) -> None:
    """The report's files as the parent run's artifacts, and the parent run ended (bounded as
    ``start_sweep``)."""
    bounded("mlflow: the sweep's report",
            lambda: _end_sweep(settings, sweep_dir, files, status), _wait_s(settings))


def _wait_s(settings: Any) -> float:
    """How long a run's or a sweep's end waits for MLflow: a request, its retry and the end's
    own."""
    return 3 * settings.timeout_s


def _start_sweep(settings: Any, sweep_dir: Path) -> None:
    mlflow_client = client(settings)
    uri = tracking_uri(settings)
    ids = saved_ids(sweep_dir, SWEEP_IDS_FILE).get("mlflow")
    if ids and ids.get("tracking_uri") == uri:  # a resumed sweep: the same parent run
        mlflow_client.update_run(ids["run_id"], status="RUNNING")
        return
    experiment = experiment_id(mlflow_client, experiment_name(settings, sweep_dir, ""), uri)
    run = mlflow_client.create_run(experiment, run_name=sweep_dir.name,
                                   tags={"rlexp.sweep_dir": str(sweep_dir)})
    save_id(sweep_dir, "mlflow", {"run_id": run.info.run_id, "tracking_uri": uri,
                                  "experiment_id": experiment}, SWEEP_IDS_FILE)


def _end_sweep(settings: Any, sweep_dir: Path, files: list[Path], status: str) -> None:
    ids = saved_ids(sweep_dir, SWEEP_IDS_FILE).get("mlflow")
    if not ids:
        return
    mlflow_client = client(settings)
    for path in files:
        parent = path.parent.relative_to(sweep_dir)
        mlflow_client.log_artifact(ids["run_id"], str(path),
                                   None if str(parent) == "." else str(parent))
    mlflow_client.set_terminated(ids["run_id"], status=STATUS.get(status, "FAILED"))
