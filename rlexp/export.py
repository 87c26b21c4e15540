"""``python -m rlexp.export RUN_OR_SWEEP_DIR --to mlflow|wandb``: finished runs sent to a
tracker after the fact (runs made before it was set up, or offline on a cluster).

Each run is replayed from its own files as it would have been sent live: its config (params),
every TensorBoard scalar at its step, its final metrics and status (``metrics.json``), its
evaluation video; a sweep's runs nest under a parent run that gets the report (MLflow) or share
the sweep's group (W&B). A run already sent to that tracker (its id in ``trackers.json``) is
left as it is, so exporting twice sends nothing twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlexp import rundir
from rlexp.config import (
    Config,
    ConfigError,
    MlflowConfig,
    WandbConfig,
    config_from_dict,
    dumped,
)
from rlexp.metrics import read_metrics, summary_of
from rlexp.trackers import (
    SWEEP_IDS_FILE,
    TrackedRun,
    saved_ids,
    tracker_classes,
)


def _scalars(run_dir: Path) -> list[tuple[str, float, int]]:
    """Every scalar point of the run's event files, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    points = [(tag, e.value, e.step) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    return sorted(points, key=lambda p: p[2])


def _run_dirs(path: Path) -> list[Path]:
    """The run itself, or a sweep's runs (their directories with a config and metrics)."""
    if (path / rundir.CONFIG).is_file():
        return [path]
    return sorted(p.parent for p in path.rglob(rundir.METRICS)
                  if (p.parent / rundir.CONFIG).is_file() and rundir.ATTEMPTS not in p.parts)


def export_run(run_dir: Path, tracker: str, settings) -> tuple[bool, str]:
    """One run into the tracker: whether nothing failed, and a line saying what was done."""
    import yaml

    data = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    cfg: Config = config_from_dict(data)
    if saved_ids(run_dir).get(tracker):
        return True, f"{run_dir}: already sent to {tracker}, left as it is"
    yaml_text, flat_config = dumped(cfg)
    cls = tracker_classes()[tracker]
    tracked = TrackedRun(cls(settings, run_dir, flat_config, yaml_text, cfg.run_name))
    points = _scalars(run_dir)
    for tag, value, step in points:
        tracked.scalar(tag, value, step)
    metrics = read_metrics(run_dir)
    status = metrics.get("status", "unfinished")
    summary = summary_of(metrics)
    video = run_dir / rundir.EVAL_GIF
    tracked.finish(status, summary, [*tracked.tracker.files_at_end(status),
                                     *([video] if video.is_file() else [])], resumable=False)
    if tracked.failure:
        return False, f"{run_dir}: not sent: {tracked.failure}"
    return True, f"{run_dir}: sent to {tracker} ({len(points)} scalar points, status {status})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlexp.export", description=__doc__.split(
        "\n\n")[0].split(": ", 1)[1])
    parser.add_argument("path", type=Path, metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument("--to", required=True, choices=sorted(tracker_classes()))
    parser.add_argument("--tracking-uri", help="mlflow: the tracking server or database "
                        "(default: outputs/mlflow.db)")
    parser.add_argument("--experiment", help="mlflow: the experiment (default: the sweep's or "
                        "the run's name)")
    parser.add_argument("--project", default="rlexp", help="wandb: the project")
    parser.add_argument("--entity", help="wandb: the entity")
    parser.add_argument("--mode", choices=("online", "offline"),
                        help="wandb: online or offline (default: online with an API key)")
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        parser.exit(2, f"rlexp: error: {args.path} is not a directory\n")
    runs = _run_dirs(args.path)
    if not runs:
        parser.exit(2, f"rlexp: error: no runs under {args.path} (no config.yaml with a "
                       "metrics.json)\n")
    try:
        settings = MlflowConfig(tracking_uri=args.tracking_uri, experiment=args.experiment) \
            if args.to == "mlflow" else WandbConfig(project=args.project, entity=args.entity,
                                                    mode=args.mode)
    except ConfigError as e:
        parser.exit(2, f"rlexp: error: {e}\n")
    sweep = args.path if runs != [args.path] else None
    if sweep is not None and args.to == "mlflow":
        from rlexp.trackers.mlflow import end_sweep, start_sweep

        rundir.write_swept_keys(sweep, sorted(rundir.swept_keys(sweep)))  # marks the sweep
        start_sweep(settings, sweep)
    failed = 0
    for run_dir in runs:
        sent, line = export_run(run_dir, args.to, settings)
        failed += not sent
        print(line, flush=True)
    if sweep is not None and args.to == "mlflow" and saved_ids(sweep, SWEEP_IDS_FILE):
        report = [p for p in (*sweep.glob("*.png"), *sweep.glob("curves/*.png"),
                              sweep / rundir.SUMMARY_MD) if p.is_file()]
        end_sweep(settings, sweep, report, "completed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
