"""The typed config schema: structured-config dataclasses registered with Hydra's ConfigStore.

Each YAML file under ``conf/`` starts from one of these schemas (``defaults: [/schema/...]``), so
an unknown key or a value of the wrong type fails while Hydra composes the config. Value checks
(ranges, allowed names) live in each dataclass's ``__post_init__`` and run in :func:`validate`,
which turns the composed ``DictConfig`` into typed objects before anything is built.

The agents' own fields are declared next to each algorithm (``rlexp/agents/*.py``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rlexp import rundir
from rlexp.agents import AGENTS, target_class
from rlexp.envs import ENVS, EnvConfig
from rlexp.locate import locate


class ConfigError(ValueError):
    """A config value that composes but is not allowed; the message names the key and the rule."""


# ---------------------------------------------------------------------------------------- env


# ---------------------------------------------------------------------------------- optimizer


def optimizer_class(target: str) -> type[torch.optim.Optimizer]:
    """The torch.optim class that ``target`` names; anything else is refused."""
    prefix = "torch.optim."
    cls = getattr(torch.optim, target[len(prefix):], None) if target.startswith(prefix) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(
            f"optimizer._target_={target!r} is not allowed: name a torch.optim optimizer, "
            "e.g. torch.optim.Adam or torch.optim.SGD"
        )
    return cls


@dataclass
class OptimizerConfig:
    """A torch.optim optimizer: ``_target_`` names the class, the other fields are its keyword
    arguments (:func:`rlexp.build.build_optimizer` makes the partial)."""

    #: Which optimizer schema this is (fixed by the optimizer's YAML).
    name: str = ""
    #: The optimizer class; only ``torch.optim.*`` optimizers are accepted.
    _target_: str = MISSING
    #: Always true: the Q-network's parameters are passed in when the agent is built.
    _partial_: bool = True
    #: Learning rate.
    lr: float = 1e-3
    #: L2 penalty (decoupled for AdamW).
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        optimizer_class(self._target_)
        if not self._partial_:
            raise ConfigError("optimizer._partial_=false is not allowed: it must stay true")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"optimizer.lr={self.lr} must be > 0 and finite")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"optimizer.weight_decay={self.weight_decay} must be >= 0 and finite")


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    _target_: str = "torch.optim.SGD"
    lr: float = 0.001
    #: Momentum factor (0: plain SGD).
    momentum: float = 0.0
    #: Nesterov momentum (needs momentum > 0).
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"optimizer.momentum={self.momentum} must be in [0, 1)")


@dataclass
class MomentsConfig(OptimizerConfig):
    """The fields of Adam and its kin: running estimates of the gradient's first and second
    moments."""

    #: Decay rates of the first and second moment estimates.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: Added to the denominator for numerical stability.
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optimizer.betas={list(self.betas)} must be two values in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"optimizer.eps={self.eps} must be > 0")


@dataclass
class AdamConfig(MomentsConfig):
    name: str = "adam"
    _target_: str = "torch.optim.Adam"
    #: Tuned with the DQN defaults on CartPole-v1 (docs/tuning.md).
    lr: float = 0.0035
    #: torch's fused implementation: the whole update in one kernel per device (the same
    #: arithmetic, rounded differently). 17% off a Nature-DQN gradient step on one CPU thread.
    fused: bool = True


@dataclass
class RAdamConfig(MomentsConfig):
    """torch.optim.RAdam (Liu et al. 2020: Adam with its early steps' variance rectified), as
    PQN trains (Gallici et al. 2024; purejaxql's optax.radam)."""

    name: str = "radam"
    _target_: str = "torch.optim.RAdam"


@dataclass
class RMSpropConfig(OptimizerConfig):
    """torch.optim.RMSprop, as the Nature DQN (Mnih et al. 2015) and MinAtar (Young & Tian
    2019) train. The defaults are theirs: lr 0.00025, squared-gradient decay 0.95, min squared
    gradient 0.01, centered. (torch adds ``eps`` outside the square root, DeepMind's code inside:
    the same role, not the same number.)"""

    name: str = "rmsprop"
    _target_: str = "torch.optim.RMSprop"
    lr: float = 0.00025
    #: Decay of the running average of squared gradients.
    alpha: float = 0.95
    #: Added to the denominator for numerical stability.
    eps: float = 0.01
    #: Momentum factor (0: none).
    momentum: float = 0.0
    #: Normalise by the gradient's estimated variance instead of its second moment.
    centered: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"optimizer.alpha={self.alpha} must be in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"optimizer.eps={self.eps} must be > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"optimizer.momentum={self.momentum} must be in [0, 1)")


OPTIMIZERS: dict[str, type[OptimizerConfig]] = {"sgd": SGDConfig, "adam": AdamConfig,
                                                 "rmsprop": RMSpropConfig, "radam": RAdamConfig}

# ------------------------------------------------------------------------------------- device

DEVICE_TYPES = ("auto", "cpu", "cuda")


@dataclass
class DeviceConfig:
    """Where the networks and the replay buffer live."""

    #: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.
    type: str = "auto"
    #: torch CPU threads; 1 is fastest for RL-sized networks. 0 keeps torch's default.
    threads: int = 1
    #: Flush float values below the normal range (float32: |x| < 1.2e-38) to zero in CPU
    #: arithmetic (FTZ/DAZ). Adam's moments of a parameter whose gradient is exactly zero (a
    #: dead ReLU unit's) decay through that range, where each operation on them is a slow
    #: microcode path: a fifth of a trained CartPole population's moments were there, and its
    #: optimizer step took 6x as long. False: IEEE subnormals, at that cost. The mode is the
    #: main thread's: with ``threads`` other than 1, torch's worker threads keep subnormals
    #: (their share of an op is still computed the same way every run).
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.type):
            raise ConfigError(f"device.type={self.type!r} is not one of auto, cpu, cuda, cuda:N")
        if self.threads < 0:
            raise ConfigError(f"device.threads={self.threads} must be >= 0")


# --------------------------------------------------------------------------------------- root


@dataclass
class EvalConfig:
    """Greedy evaluation on a separate env instance."""

    #: Evaluate every this many env steps, from step 0 (the untrained agent) on; 0: only at the
    #: end of training. Null: ``total_steps / EVAL_POINTS``, a curve of the same number of
    #: points for any budget (2,500 for the default 50k steps).
    every_steps: int | None = None
    #: Episodes per evaluation, run side by side in a vector env.
    episodes: int = 20
    #: Cut evaluation episodes after this many steps, so an evaluation always ends (a greedy
    #: policy can walk into a wall forever). Null: the env's own time limit, or
    #: ``EVAL_MAX_EPISODE_STEPS`` for an env without one. Cut episodes count as truncated
    #: (``eval/truncated``, ``eval_truncated`` in metrics.json).
    max_episode_steps: int | None = None
    #: Probability of a uniformly random action instead of the greedy one (0: greedy). The
    #: Atari literature evaluates with a small epsilon (0.05 in CleanRL, 0.001 in Dopamine) so
    #: that a policy stuck on one screen moves on.
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"eval.epsilon={self.epsilon} must be in [0, 1]")
        if self.every_steps is not None and self.every_steps < 0:
            raise ConfigError(f"eval.every_steps={self.every_steps} must be >= 0 or null")
        if self.episodes <= 0:
            raise ConfigError(f"eval.episodes={self.episodes} must be positive")
        if self.max_episode_steps is not None and self.max_episode_steps <= 0:
            raise ConfigError(f"eval.max_episode_steps={self.max_episode_steps} must be "
                              "positive or null")


    def interval(self, total_steps: int) -> int:
        """Env steps between evaluations for a run of ``total_steps``."""
        if self.every_steps is not None:
            return self.every_steps
        return max(1, total_steps // EVAL_POINTS)


#: Evaluations over a run when ``eval.every_steps`` is null (besides the one at step 0).
EVAL_POINTS = 20

#: The evaluation cap for an env with no time limit of its own: 27,000 steps, the cap of the
#: Atari evaluation protocol (108,000 frames at frame skip 4; Machado et al. 2018).
EVAL_MAX_EPISODE_STEPS = 27_000


@dataclass
class LogConfig:
    """TensorBoard and console logging."""

    #: Write the train/ and time/ scalars every this many env steps.
    every_steps: int = 1_000

    def __post_init__(self) -> None:
        if self.every_steps <= 0:
            raise ConfigError(f"log.every_steps={self.every_steps} must be positive")


@dataclass
class TensorBoardConfig:
    """TensorBoard: always written (the report and HParams read it); its option selects it
    alone."""


@dataclass
class WandbConfig:
    """Weights & Biases (``logger=wandb``; the ``wandb`` extra). The API key is read by wandb
    itself (``WANDB_API_KEY`` or ``wandb login``), never from or into rlexp's files."""

    #: The W&B project.
    project: str = "rlexp"
    #: The W&B entity (team or user); null: the key's default.
    entity: str | None = None
    #: online, offline or disabled; null: online when wandb has an API key, else offline
    #: (``wandb sync`` uploads the run's ``wandb/`` folder later).
    mode: str | None = None
    #: Tags of every run.
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in (None, "online", "offline", "disabled"):
            raise ConfigError(f"logger.wandb.mode={self.mode!r} is not one of online, offline, "
                              "disabled or null")


@dataclass
class MlflowConfig:
    """MLflow (``logger=mlflow``; the ``mlflow`` extra)."""

    #: Where runs go: an ``http(s)://`` tracking server, or a database URI; null: the SQLite
    #: store outputs/mlflow.db (its artifacts in outputs/mlartifacts).
    tracking_uri: str | None = None
    #: The MLflow experiment; null: the sweep's directory name, or the run's name.
    experiment: str | None = None
    #: Also send the final checkpoint as an artifact.
    log_checkpoints: bool = False
    #: Seconds a request may take before MLflow is counted as unreachable.
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"logger.mlflow.timeout_s={self.timeout_s} must be positive")
        # The URI is saved with the run's config: a password in it would be too.
        if self.tracking_uri and "@" in self.tracking_uri.split("://", 1)[-1].split("/", 1)[0]:
            raise ConfigError("logger.mlflow.tracking_uri holds credentials, which would be "
                              "saved with the run's config: give them to MLflow in "
                              "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                              "MLFLOW_TRACKING_TOKEN) instead")


@dataclass
class LoggerConfig:
    """Where a run's scalars go (``logger=...``, conf/logger/): TensorBoard always, and the
    trackers chosen, each null unless selected (``logger=[wandb,mlflow]``)."""

    tensorboard: TensorBoardConfig | None = None
    wandb: WandbConfig | None = None
    mlflow: MlflowConfig | None = None


@dataclass
class CheckpointConfig:
    """``checkpoints/last.pt``: written atomically every ``every_steps`` and at the end."""

    #: Env steps between checkpoints (0: only at the end).
    every_steps: int = 10_000
    #: Include the replay buffer, so a resumed DQN run need not refill it.
    replay: bool = True

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise ConfigError(f"checkpoint.every_steps={self.every_steps} must be >= 0")


@dataclass
class TrainConfig:
    """When training ends (besides ``total_steps``)."""

    #: End the run once a greedy evaluation's mean return reaches this value; null (the
    #: default): never, the run trains its whole budget. The final evaluation is then that
    #: evaluation. ``train.stop_on_return=${env.solved_return}`` stops once the env is solved.
    stop_on_return: float | None = None
    #: The run counts as diverged (status diverged, it stops) when the mean Q-value over a log
    #: interval exceeds this in absolute value; null: only NaN or infinite values count. Far
    #: above any return of the bundled envs (CartPole's are at most 100 with gamma 0.99).
    max_abs_q: float | None = 1e6

    def __post_init__(self) -> None:
        if self.max_abs_q is not None and not self.max_abs_q > 0:
            raise ConfigError(f"train.max_abs_q={self.max_abs_q} must be > 0 or null")


#: More env steps than any run could take (a typo guard: 1e12 steps at 1e6 steps/s is 12 days).
MAX_STEPS = 10**12




# The run-dir resolvers of conf/hydra/rlexp.yaml (rlexp/rundir.py), known before Hydra composes.
OmegaConf.register_new_resolver("run_label", rundir.run_label, replace=True)
OmegaConf.register_new_resolver("seed_label", rundir.seed_label, replace=True)
OmegaConf.register_new_resolver("job_dirname", rundir.job_dirname, replace=True)
OmegaConf.register_new_resolver("lock_run_dir_and_name_launch_record",
                                rundir.lock_run_dir_and_name_launch_record, replace=True)
OmegaConf.register_new_resolver("safe_dirname", rundir.safe_dirname, replace=True)
OmegaConf.register_new_resolver("claim_or_resume_run_dir", rundir.claim_or_resume_run_dir,
                                replace=True)
# Cached like Hydra's own ${now:}: a sweep's jobs (in other processes too) get the same answer.
OmegaConf.register_new_resolver("claim_new_dir", rundir.claim_new, replace=True, use_cache=True)
OmegaConf.register_new_resolver("launch_time", rundir.launch_time, replace=True)


@dataclass
class SuiteConfig:
    """A benchmark suite (``suite=NAME``, conf/suite/): the tasks a sweep runs, as the values of
    one override in ``hydra.sweeper.params``, and each task's budget, whatever the agent."""

    #: The suite's name (its YAML's).
    name: str = MISSING
    #: The override whose sweep values are the suite's tasks: env (an env option), env.game or
    #: env.id.
    axis: str = MISSING
    #: Env steps of each task's runs, by env.id; the suite sets ``total_steps`` from it.
    budget: dict[str, int] = field(default_factory=dict)


@dataclass
class Config:
    """The root config (``conf/config.yaml``)."""

    # Typed by the option's schema (its YAML's defaults list) or, for a user's own agent or env,
    # by the class its ``_target_`` names (:func:`validate`): any mapping composes.
    agent: Any = MISSING
    env: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    device: DeviceConfig = MISSING
    #: Seeds python, numpy, torch, the env resets and action-space sampling.
    seed: int = 0
    #: Env steps to train for (summed over all envs of a vector env).
    total_steps: int = 50_000
    #: Label of the run, used in its directory name.
    run_name: str = MISSING
    #: Continue a run from its checkpoints/last.pt: a run directory (alone: its own saved
    #: config is used; a larger total_steps trains it for longer), or true for the latest
    #: unfinished run under outputs/runs started with the same overrides. In a sweep (``-m``
    #: with the sweep's ``hydra.sweep.dir``), true continues the whole sweep: completed runs
    #: are kept, unfinished ones resume, those that never began start.
    resume: str | None = None
    #: With ``resume=true`` in a sweep: also start again, from scratch, the runs that failed or
    #: diverged (their earlier files move to ``.attempts/<n>/``). Otherwise they are kept as
    #: they are and reported again.
    retry_failed: bool = False
    #: Runs this job trains together as one population, with seeds seed, seed + 1, ..., each
    #: in a ``seed<N>/`` directory of the job's; the job's result (what an Optuna trial
    #: reports) is their mean final eval return. 1: one run, in the job's directory itself.
    seeds: int = 1
    #: Worker processes a command's ``seeds`` > 1 population is split over (a member is the
    #: same in a population of any size, so no curve changes): -1 one per ``device.threads``
    #: cores on a CPU, one on a GPU; 1: in the command's own process. In a sweep the launcher
    #: decides instead (``hydra/launcher=population``'s ``hydra.launcher.processes``).
    processes: int = -1
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: The benchmark suite this run is a task of (``suite=NAME``), or null.
    suite: SuiteConfig | None = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        if self.seeds < 1:
            raise ConfigError(f"seeds={self.seeds} must be >= 1")
        if self.processes == 0 or self.processes < -1:
            raise ConfigError(f"processes={self.processes} must be -1 (one per core) or >= 1")
        if self.seeds > 1 and self.resume is not None and not rundir.resumes_latest(self.resume):
            raise ConfigError(f"resume= continues one run; with seeds={self.seeds} resume each "
                              "seed<N>/ directory, or rerun the job in its directory")
        if not 0 < self.total_steps <= MAX_STEPS:
            raise ConfigError(
                f"total_steps={self.total_steps} must be between 1 and {MAX_STEPS:.0e}")
        if not rundir.RUN_NAME.fullmatch(self.run_name):
            raise ConfigError(
                f"run_name={self.run_name!r} is not allowed: use up to 100 letters, digits and "
                "._=,+- (starting with a letter or digit; no paths)"
            )


#: The schemas of each config group, by the ``name`` field that every one of them carries.
SCHEMAS: dict[str, dict[str, type]] = {
    "agent": {name: agent.Config for name, agent in AGENTS.items()},
    "env": ENVS,
    "optimizer": OPTIMIZERS,
}


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    cs.store(group="schema/device", name="device", node=DeviceConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


_register()

# --------------------------------------------------------------------------------- validation


def _unknown_keys(node: DictConfig, prefix: str = ""):
    """Keys added with ``+key=value`` that the schema does not have (to_object would drop them)."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    fields = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if key not in fields:
            yield f"{prefix}{key}", sorted(fields)
        else:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                yield from _unknown_keys(child, f"{prefix}{key}.")


def schema_of(group: str, node: Any) -> type | None:
    """The schema of a group's config (a mapping or a typed config): for an agent or env, the
    class its ``_target_`` names (an agent's ``Config``; an env config class itself), else the
    schema registered under its ``name``; ConfigError when the target is not one."""
    mapping = isinstance(node, DictConfig | dict)
    target = None if group not in ("agent", "env") else \
        node.get("_target_") if mapping else node._target_
    if target is None:
        name = node.get("name") if mapping else node.name
        return SCHEMAS[group].get(name)
    try:
        if group == "agent":
            return target_class(target).Config
        cls = locate(target)
    except ValueError as e:
        raise ConfigError(f"{group}._target_: {e}" if group == "env" else str(e)) from e
    if not (isinstance(cls, type) and issubclass(cls, EnvConfig)):
        raise ConfigError(f"env._target_={target!r} is not a subclass of rlexp.envs.EnvConfig")
    return cls


def _type_by_target(cfg: DictConfig) -> None:
    """Give the agent or env option of a user's YAML (no schema in its defaults list; a
    ``_target_`` naming its class) the schema of that class, checking its keys and types."""
    for group in ("agent", "env"):
        node = cfg._get_node(group)
        if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is not dict:
            continue
        if "_target_" not in node:
            raise ConfigError(
                f"{group}: the option's YAML has no schema: name its class with _target_ (a "
                f"user's own {group}) or start it with defaults: [/schema/{group}/NAME@_here_]")
        schema = schema_of(group, node)
        try:
            cfg[group] = OmegaConf.merge(OmegaConf.structured(schema), node)
        except OmegaConfBaseException as e:
            where = f"{group}.{e.full_key}" if getattr(e, "full_key", None) else group
            raise ConfigError(f"{where}: {str(e).strip().splitlines()[0]}") from e


def validate(cfg: DictConfig) -> Config:
    """The composed config as typed objects, with every value check run.

    Raises :class:`ConfigError` with a one-line message naming the bad key and what is allowed.
    """
    _type_by_target(cfg)
    for key, allowed in _unknown_keys(cfg):
        raise ConfigError(f"unknown key {key!r}; allowed here: {', '.join(allowed)}")
    try:
        typed = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(f"{e.full_key} is required: set it, e.g. {e.full_key}=VALUE") from e
    except ValueError as e:  # raised by the dataclasses' __post_init__
        raise ConfigError(str(e)) from e
    for group, schemas in SCHEMAS.items():
        node = getattr(typed, group)
        if type(node) is not schema_of(group, node):
            raise ConfigError(
                f"{group}.name={node.name!r} does not match the {group} config; choose the {group} "
                f"with {group}=NAME ({', '.join(schemas)}) and leave {group}.name alone"
            )
    return typed


#: conf/ at the repository root, as an absolute path: Hydra resolves a relative config_path
#: differently when rlexp.train is imported rather than run with -m.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def compose(overrides: list[str] = ()) -> Config:
    """The validated config that ``python -m rlexp.train OVERRIDES`` would run, composed with
    Hydra's compose API (for notebooks, scripts and tests)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        # run_name interpolates Hydra's runtime choices, which only a real run sets.
        cfg = hydra_compose("config", overrides=["run_name=composed", *overrides])
    return validate(cfg)


def dumped(cfg: Config) -> tuple[str, dict[str, Any]]:
    """A config as its run saves it (config.yaml's text) and flattened (``rundir.flatten``:
    how run configs are compared, shown and sent to trackers)."""
    resolved = OmegaConf.structured(cfg)
    return OmegaConf.to_yaml(resolved), rundir.flatten(OmegaConf.to_container(resolved))


def config_from_dict(data: dict[str, Any]) -> Config:
    """A resolved config saved by a run (``config.yaml`` in its run dir), typed and validated."""
    cfg = OmegaConf.structured(Config)
    try:
        for group in SCHEMAS:
            cfg[group] = schema_of(group, data[group])
        cfg.device = DeviceConfig
        cfg = OmegaConf.merge(cfg, data)
    except (KeyError, TypeError, OmegaConfBaseException) as e:
        raise ConfigError(f"not a config saved by rlexp: {e}") from e
    return validate(cfg)
