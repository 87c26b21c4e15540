"""The HParams tab of a sweep: an experiment summary that opens on what the user swept.

Each run logs its own hparams session (rlexp.logger). TensorBoard's HParams tab shows five
hyperparameters at first: those marked ``differs`` first, by name (its server sorts them so,
whatever order the experiment gives). Inferred from the sessions, every field that differs
between runs is marked, so for ``agent=qnet,dqn optimizer=sgd,adam`` the tab opened on
``agent.batch_size``, ``agent.buffer_size``, ... (fields one agent has and the other lacks), not on
the swept ``agent.name``, ``optimizer.name`` and ``seed``. At the end of a sweep,
:func:`write_sweep_experiment` writes the experiment into the sweep dir itself (TensorBoard's
run ``.`` when its logdir is the sweep dir) with only the swept hyperparameters (named in the
overrides, and varying) marked, so they are the columns it opens on; every other field is still
listed, to tick; and the evaluation metrics lead the metrics. TensorBoard takes one experiment
summary per logdir, so a logdir above several sweeps shows one of theirs: open a sweep's own dir
to compare its runs.
"""

from __future__ import annotations

from pathlib import Path

from rlexp import rundir

#: The metrics shown first (the HParams tab shows five by default), then every other tag.
FIRST_METRICS = ("eval/return_mean", "eval/return_std", "train/episode_return", "train/loss",
                 "train/q_mean")
#: The suffix of the sweep dir's event file that holds the experiment (replaced on a resume).
SUFFIX = ".rlexp-experiment"


def ordered_hparams(runs: list[tuple[list[str], dict]]) -> list[tuple[str, bool]]:
    """(name, swept) for every hyperparameter of ``runs`` (each: its launch overrides and
    flattened config): first those the overrides name and that differ between runs (a config
    group, ``agent=dqn``, stands for its ``agent.name``), then the rest by name."""
    names = sorted({name for _, hp in runs for name in hp})
    differs = {name: len({repr(hp.get(name)) for _, hp in runs}) > 1 for name in names}
    swept: list[str] = []
    for overrides, hp in runs:
        for override in overrides:
            key = rundir.override_key(override)
            name = key if key in hp else f"{key}.name" if f"{key}.name" in hp else None
            if name is not None and differs[name] and name not in swept:
                swept.append(name)
    return [(n, True) for n in swept] + [(n, False) for n in names if n not in swept]


def write_sweep_experiment(sweep_dir: Path, runs: list[tuple[list[str], dict]],
                           tags: list[str]) -> None:
    """Write the experiment summary of a sweep's ``runs`` (each: its launch overrides and
    flattened config) and its scalar ``tags`` into ``sweep_dir``, replacing an earlier one;
    nothing when no run has a config."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter

    if not runs:
        return
    types = {}
    for _, hp in runs:
        for name, value in hp.items():
            kind = (api_pb2.DATA_TYPE_BOOL if isinstance(value, bool) else
                    api_pb2.DATA_TYPE_FLOAT64 if isinstance(value, int | float) else
                    api_pb2.DATA_TYPE_STRING)
            types[name] = kind if types.get(name, kind) == kind else api_pb2.DATA_TYPE_STRING
    hparam_infos = [api_pb2.HParamInfo(name=name, type=types[name], differs=swept)
                    for name, swept in ordered_hparams(runs)]
    metrics = [t for t in FIRST_METRICS if t in tags] + sorted(t for t in tags
                                                                if t not in FIRST_METRICS)
    metric_infos = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metrics]
    for old in Path(sweep_dir).glob(f"events.out.tfevents.*{SUFFIX}"):
        old.unlink()
    writer = SummaryWriter(log_dir=str(sweep_dir), filename_suffix=SUFFIX)
    content = plugin_data_pb2.HParamsPluginData(experiment=api_pb2.Experiment(
        hparam_infos=hparam_infos, metric_infos=metric_infos))
    writer.file_writer.add_summary(Summary(value=[Summary.Value(
        tag=metadata.EXPERIMENT_TAG, metadata=metadata.create_summary_metadata(content))]))
    writer.close()
