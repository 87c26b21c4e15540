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
from rlexp.envs import TOY_ID
from rlexp.envs.atari import ATARI_ID
from rlexp.envs.boundary import CHANNELS, resolve_wrapper
from rlexp.envs.minatar import GAMES as MINATAR_GAMES
from rlexp.envs.minatar import MINATAR_ID
from rlexp.envs.toy import VARIANTS
from rlexp.locate import locate


class ConfigError(ValueError):
    """A config value that composes but is not allowed; the message names the key and the rule."""


# ---------------------------------------------------------------------------------------- env


@dataclass
class EnvConfig:
    """Any gymnasium env with a Discrete action space (``env=gym env.id=...``)."""

    #: Which env schema this is: gym (any registered id) or toy (rlexp's toy MDP).
    name: str = "gym"
    #: The gymnasium id, e.g. CartPole-v1; ``module:Id`` imports ``module`` first.
    id: str = MISSING
    #: Extra keyword arguments for ``gymnasium.make``.
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Truncate episodes after this many steps; null keeps the env's registered limit.
    max_steps: int | None = None
    #: Envs stepped together (gymnasium's synchronous vector env).
    num_envs: int = 1
    #: The mean return at which the env counts as solved (gymnasium's reward_threshold, e.g.
    #: 475 for CartPole-v1); null: none. Sweep reports count the runs that reach it.
    solved_return: float | None = None
    #: gymnasium wrappers applied in order after ``gymnasium.make`` (the first innermost), in
    #: training and evaluation alike: each an import path
    #: (``gymnasium.wrappers.FlattenObservation``) or a mapping with ``_target_`` and keyword
    #: arguments (``{_target_: gymnasium.wrappers.ResizeObservation, shape: [64, 64]}``).
    wrappers: list[Any] = field(default_factory=list)
    #: Where an image observation's channels are: first ([C, H, W]), last ([H, W, C]), none
    #: (the observation is not an image: an MLP reads it); null: a 2-D or 3-D uint8 or bool
    #: observation is an image with its channels on its shorter end axis (rlexp.envs.boundary).
    channels: str | None = None
    #: The env config class as an import path, for an env from the user's own package (an
    #: EnvConfig subclass, whose fields and make_id/make_kwargs say how to make its env; its
    #: YAML sets it); null: rlexp's env schema named ``name``.
    _target_: str | None = None

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"env.max_steps={self.max_steps} must be positive or null")
        if self.num_envs <= 0:
            raise ConfigError(f"env.num_envs={self.num_envs} must be positive")
        if self.channels is not None and self.channels not in CHANNELS:
            raise ConfigError(f"env.channels={self.channels!r} is not one of "
                              f"{', '.join(CHANNELS)} or null (auto)")
        for item in self.wrappers:
            try:
                resolve_wrapper(item)
            except ValueError as e:
                raise ConfigError(str(e)) from e

    @property
    def make_id(self) -> str:
        """The id given to ``gymnasium.make``."""
        return self.id

    @property
    def frame_stack(self) -> int:
        """How many frames each observation stacks along its first axis (1: none); a replay
        memory stores each frame once."""
        return 1

    def make_kwargs(self, evaluation: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make(self.make_id, ...)``: ``kwargs``, the time
        limit, and every field an env's own schema adds (``env=toy``'s variant, ...), so that a
        field declared there reaches the env. ``evaluation``: for the greedy-evaluation envs
        (which may differ, e.g. Atari's full games)."""
        kwargs = dict(self.kwargs)
        if self.max_steps is not None:
            kwargs["max_episode_steps"] = self.max_steps
        common = {f.name for f in dataclasses.fields(EnvConfig)}
        return {**kwargs, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                             if f.name not in common}}


@dataclass
class ToyEnvConfig(EnvConfig):
    """rlexp's toy MDP (:mod:`rlexp.envs.toy`), which exposes its model as ``P``."""

    name: str = "toy"
    id: str = TOY_ID
    #: chain (the action matters; needs exploration) or random (the original blog MDP).
    variant: str = "chain"
    #: Number of states; null: the variant's default (chain 7, random 4).
    n_states: int | None = None
    max_steps: int | None = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ConfigError(f"env.variant={self.variant!r} is not one of {', '.join(VARIANTS)}")
        if self.n_states is not None and self.n_states < 2:
            raise ConfigError(f"env.n_states={self.n_states} must be at least 2")


@dataclass
class AtariEnvConfig(EnvConfig):
    """An Atari 2600 game through ale-py, with the DQN protocol (:mod:`rlexp.envs.atari`).

    The defaults are the protocol of Mnih et al. (2015) with Machado et al.'s (2018) sticky
    actions, as ALE v5 plays by default. Evaluations always play full games with raw scores (no
    life-loss ends, no clipping); ``train/episode_return`` is the raw score of full games too.
    """

    name: str = "atari"
    #: The ALE game id, e.g. ALE/Breakout-v5, ALE/Pong-v5 (any game ale-py ships).
    id: str = "ALE/Breakout-v5"
    #: At most this many no-op actions at the start of each game (a random number >= 1).
    noop_max: int = 30
    #: Each action is repeated for this many frames; the observation is the max of the last two.
    frame_skip: int = 4
    #: Frames are resized to this many pixels square (grayscale).
    screen_size: int = 84
    #: Observations stack the last this many frames: ``[frame_stack, screen, screen]`` uint8.
    frame_stack: int = 4
    channels: str | None = "first"
    #: Probability that the previous action is repeated instead of the chosen one, at every
    #: emulator frame (Machado et al. 2018; 0.25 as ALE v5), by gymnasium's StickyAction so that
    #: a checkpoint holds it. 0: deterministic games (NoFrameskip-v4).
    sticky_actions: float = 0.25
    #: All 18 actions instead of the game's minimal set.
    full_action_space: bool = False
    #: A game is truncated after this many emulator frames (108,000: 30 minutes, 27,000 agent
    #: steps at frame skip 4, the literature's cap). It also caps evaluation episodes.
    max_frames_per_episode: int = 108_000
    #: Press FIRE after each reset in games that wait for it (Breakout, ...).
    fire_on_reset: bool = True
    #: Training only: a lost life ends the learner's episode (the game goes on).
    episodic_life: bool = True
    #: Training only: rewards clipped to [-1, 1].
    clip_rewards: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps is not None:
            raise ConfigError(f"env.max_steps={self.max_steps} is not used by Atari games: "
                              "set env.max_frames_per_episode (emulator frames per game)")
        for key in ("frame_skip", "screen_size", "frame_stack", "max_frames_per_episode"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"env.{key}={getattr(self, key)} must be positive")
        if self.noop_max < 0:
            raise ConfigError(f"env.noop_max={self.noop_max} must be >= 0")
        if not 0.0 <= self.sticky_actions < 1.0:
            raise ConfigError(f"env.sticky_actions={self.sticky_actions} must be in [0, 1)")

    @property
    def make_id(self) -> str:
        return ATARI_ID

    def make_kwargs(self, evaluation: bool = False) -> dict[str, Any]:
        return {**super().make_kwargs(evaluation), "game": self.id, "evaluation": evaluation}


@dataclass
class MinAtarEnvConfig(EnvConfig):
    """A MinAtar game (Young & Tian 2019, :mod:`rlexp.envs.minatar`): ``[10, 10, C]`` boolean
    observations; the defaults are the paper's."""

    name: str = "minatar"
    #: asterix, breakout, freeway, seaquest or space_invaders.
    game: str = "breakout"
    #: Shown in run names and logs; set from ``game``.
    id: str = "MinAtar/${.game}"
    #: Probability that the previous action is repeated instead of the chosen one (paper: 0.1).
    sticky_action_prob: float = 0.1
    #: Games speed up as they go on (the paper's setting).
    difficulty_ramping: bool = True
    #: Only the game's meaningful actions instead of all 6.
    minimal_action_set: bool = False
    channels: str | None = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.game not in MINATAR_GAMES:
            raise ConfigError(f"env.game={self.game!r} is not one of {', '.join(MINATAR_GAMES)}")
        if not 0.0 <= self.sticky_action_prob <= 1.0:
            raise ConfigError(f"env.sticky_action_prob={self.sticky_action_prob} must be in "
                              "[0, 1]")

    @property
    def make_id(self) -> str:
        return MINATAR_ID


ENVS: dict[str, type[EnvConfig]] = {"gym": EnvConfig, "toy": ToyEnvConfig,
                                    "atari": AtariEnvConfig, "minatar": MinAtarEnvConfig}

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
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    _target_: str = "torch.optim.Adam"
    #: Tuned with the DQN defaults on CartPole-v1 (docs/tuning.md).
    lr: float = 0.0035
    #: Decay rates of the first and second moment estimates.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: Added to the denominator for numerical stability.
    eps: float = 1e-8
    #: torch's fused implementation: the whole update in one kernel per device (the same
    #: arithmetic, rounded differently). 17% off a Nature-DQN gradient step on one CPU thread.
    fused: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optimizer.betas={list(self.betas)} must be two values in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"optimizer.eps={self.eps} must be > 0")


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
                                                 "rmsprop": RMSpropConfig}

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
    #: same in a population of any size, so no curve changes): -1 one per core on a CPU, one on
    #: a GPU; 1: in the command's own process. In a sweep the launcher decides instead
    #: (``hydra/launcher=population``'s ``hydra.launcher.processes``).
    processes: int = -1
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

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


#: Top-level settings in which the runs of one population may differ (with the agent's own
#: ``member_fields``); every other setting must be equal, as the members train as one
#: computation on one set of envs.
MEMBER_FIELDS = ("seed", "seeds", "run_name", "resume", "optimizer.lr", "train.stop_on_return",
                 "train.max_abs_q")


def population_key(cfg: Config) -> dict[str, Any]:
    """The settings that runs of one population must share, flattened (``agent.gamma``...)."""
    member = {*MEMBER_FIELDS, *(f"agent.{name}" for name in cfg.agent.member_fields)}
    flat = rundir.flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
    return {key: value for key, value in flat.items()
            if key not in member and not any(key.startswith(f"{m}.") for m in member)}


def check_population(cfgs: list[Config]) -> None:
    """Raise :class:`ConfigError` unless the runs can train as one population."""
    first = population_key(cfgs[0])
    for cfg in cfgs[1:]:
        other = population_key(cfg)
        for key in sorted(first.keys() | other.keys()):
            if first.get(key) != other.get(key):
                allowed = ", ".join([*MEMBER_FIELDS, *(f"agent.{name}" for name in
                                                        cfgs[0].agent.member_fields)])
                raise ConfigError(
                    f"runs of one population differ in {key} ({first.get(key)!r} and "
                    f"{other.get(key)!r}); its members may differ only in: {allowed}")


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
        raise ConfigError(f"env._target_={target!r} is not a subclass of rlexp.config.EnvConfig")
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
