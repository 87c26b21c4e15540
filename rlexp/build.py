"""Config -> the objects of a run: envs, optimizer and agent. Knows nothing of Hydra."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics
from omegaconf import OmegaConf

from rlexp import rundir
from rlexp.agents import Agent, AgentSpec, Member, agent_class
from rlexp.checkpoint import load_training_state
from rlexp.config import (
    EVAL_MAX_EPISODE_STEPS,
    Config,
    ConfigError,
    EnvConfig,
    EvalConfig,
    OptimizerConfig,
    config_from_dict,
    optimizer_class,
)
from rlexp.envs import boundary, snapshot
from rlexp.envs.cartpole import CartPoleTrainingEnvs, batched_eval_envs, batched_training_envs
from rlexp.members import eager_optimizer_class


def make_env(cfg: EnvConfig, max_episode_steps: int | None = None, evaluation: bool = False,
             **extra) -> gym.Env:
    """One env instance, with a clear error for an unknown id or bad kwargs.
    ``max_episode_steps`` replaces the env's time limit (gymnasium's TimeLimit); ``evaluation``
    makes the greedy-evaluation variant; ``extra``: more ``gymnasium.make`` arguments.

    The env is wrapped by ``env.wrappers``, then where its spaces need it
    (:func:`rlexp.envs.boundary.adapt`). A training env's finished episodes have their return
    and length in the step's ``info["episode"]`` (gymnasium's RecordEpisodeStatistics,
    outermost unless the env records its own, as Atari records full games' raw scores). An
    evaluation sums its rewards itself, so its envs go without the wrapper (a sixth of a
    CartPole evaluation step)."""
    kwargs = {**cfg.make_kwargs(evaluation), **extra}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        env = gym.make(cfg.make_id, **kwargs)
    except (gym.error.Error, ImportError, TypeError, ValueError) as e:
        raise ConfigError(f"env.id={cfg.id!r} could not be made: {e}") from e
    if not evaluation:  # a resumed run continues its episodes (rlexp.envs.snapshot)
        env = snapshot.replayable(env)
    try:
        env = boundary.adapt(boundary.apply_wrappers(env, cfg.wrappers), cfg.id, cfg.channels)
    except ValueError as e:  # a wrapper that fails, a space the agents cannot take
        env.close()
        raise ConfigError(str(e)) from e
    if evaluation:
        return env
    layer = env
    while isinstance(layer, gym.Wrapper) and not isinstance(layer, RecordEpisodeStatistics):
        layer = layer.env
    return env if isinstance(layer, RecordEpisodeStatistics) else RecordEpisodeStatistics(env)


def make_vector_env(cfg: EnvConfig, num_envs: int, max_episode_steps: int | None = None,
                    evaluation: bool = False) -> gym.vector.VectorEnv:
    """``num_envs`` copies stepped together. Sub-envs reset in the same step they end, and the
    observation they ended on is in ``info["final_obs"]``, so a reset observation is never
    mistaken for a next state. Finished episodes' return and length are in
    ``info["final_info"]["episode"]`` (see :func:`make_env`).

    A SyncVectorEnv of :func:`make_env`'s envs, or for training CartPoles their batched form
    (:mod:`rlexp.envs.cartpole`: the same episodes, stepped as one). The observations returned
    may be the vector env's own buffer (``copy=False`` saves a deepcopy per step): the next
    ``step`` overwrites them, so copy what must outlive it.
    """
    batched = None if evaluation or max_episode_steps is not None or cfg.wrappers else \
        batched_training_envs(cfg.make_id, cfg.make_kwargs(), num_envs)
    if batched is not None:
        return batched
    make = partial(make_env, cfg, max_episode_steps, evaluation)
    first = make()  # fails early and clearly; reused as sub-env 0
    return SyncVectorEnv([lambda: first] + [make] * (num_envs - 1), copy=False,
                         autoreset_mode=AutoresetMode.SAME_STEP)


def time_limit(envs: gym.vector.VectorEnv) -> int | None:
    """The episode step limit of a vector env's sub-envs; None when episodes are unbounded."""
    if isinstance(envs, CartPoleTrainingEnvs):
        return envs.max_episode_steps
    return envs.unwrapped.envs[0].spec.max_episode_steps


def joins_populations(cfg: Config) -> bool:
    """Whether runs like ``cfg`` can train as the members of one population, as their agent
    says (:meth:`rlexp.agents.Agent.joins_populations`). One env instance is made to read its
    observations."""
    env = make_env(cfg.env)
    try:
        space = env.observation_space
        return agent_class(cfg.agent).joins_populations(
            cfg.agent, space, boundary.image_channels(space, cfg.env.channels))
    finally:
        env.close()


def episode_limit(cfg: EnvConfig) -> int | None:
    """The episode step limit of the env ``cfg`` makes (one instance is made to read it)."""
    env = make_env(cfg)
    try:
        return env.spec.max_episode_steps
    finally:
        env.close()


def make_eval_envs(cfg: EnvConfig, eval_cfg: EvalConfig, env_limit: int | None,
                   members: int = 1) -> tuple[gym.vector.VectorEnv, int | None]:
    """The greedy-evaluation envs, one per episode of each of ``members`` members, whose
    episodes always end (see ``eval.max_episode_steps``; ``env_limit``: the env's own limit);
    and the cap on their episodes when it is rlexp's rather than the env's own (None then).

    A SyncVectorEnv of per-episode envs, or for CartPole its batched form
    (:mod:`rlexp.envs.cartpole`: the same episodes, stepped as one)."""
    count = eval_cfg.episodes * members
    own_limit = eval_cfg.max_episode_steps is None and env_limit is not None
    cap = None if own_limit else eval_cfg.max_episode_steps or EVAL_MAX_EPISODE_STEPS
    limit = env_limit if own_limit else cap
    batched = None if cfg.wrappers else batched_eval_envs(
        cfg.make_id, cfg.make_kwargs(evaluation=True), count, limit)
    if batched is not None:
        return batched, cap
    return make_vector_env(cfg, count, limit, evaluation=True), cap


def build_optimizer(cfg: OptimizerConfig) -> partial:
    """A partial ``torch.optim.X(lr=..., ...)`` waiting for the parameters.

    The config's ``_target_`` was checked to be a torch.optim optimizer when the config was
    validated, so no command-line override can make this call anything else.
    """
    kwargs = {k: v for k, v in vars(cfg).items() if k not in ("name", "_target_", "_partial_")}
    factory = partial(eager_optimizer_class(optimizer_class(cfg._target_)), **kwargs)
    try:  # bad keyword arguments fail here, not later (a probe that draws no random numbers)
        factory([torch.zeros(1, requires_grad=True)])
    except Exception as e:
        raise ConfigError(f"optimizer {cfg._target_} rejects its arguments: {e}") from e
    return factory


def make_agent(cfgs: Sequence[Config], observation_space: gym.Space, action_space: gym.Space,
               device: torch.device) -> Agent:
    """The agent ``cfgs`` (one per member of the population; one for a single run) name, for
    envs with these spaces: the one place agents are constructed (for training and for
    :func:`load_run`)."""
    cfg = cfgs[0]
    cls = agent_class(cfg.agent)
    try:
        return cls(AgentSpec(
            [Member(c.agent, seed=c.seed, lr=c.optimizer.lr) for c in cfgs],
            observation_space=observation_space,
            action_space=action_space,
            make_optimizer=build_optimizer(cfg.optimizer),
            device=device,
            total_steps=cfg.total_steps,
            frame_stack=cfg.env.frame_stack,
            channels=boundary.image_channels(observation_space, cfg.env.channels),
        ))
    except ValueError as e:  # a network that does not fit the observations
        raise ConfigError(str(e)) from e
    except (RuntimeError, MemoryError) as e:  # e.g. a replay buffer larger than the memory
        if "alloc" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        sizes = ", ".join(cls.memory_settings(cfg.agent))
        raise ConfigError(f"the {cfg.agent.name} agent does not fit in {device} memory "
                          f"({sizes or 'its network'}): {str(e).splitlines()[0]}") from e


class TrainedAgent:
    """A finished run's agent, for use outside training: numpy in, numpy out, for one
    observation or a batch, as the run's env gives them (after ``env.wrappers``), with the
    observation's shape checked against the env's.

    ``q_values(obs)``: ``[n_actions]`` for one observation, ``[batch, n_actions]`` for a batch.
    ``act(obs, explore=False)``: the greedy action (an int) or actions (``[batch]``); with
    ``explore=True``, epsilon-greedy at the agent's final epsilon. Actions are numbered as the
    agent numbers them (``0 .. n-1``). ``agent``: the agent itself (its ``q_net``,
    ``state_dict()``).
    """

    def __init__(self, agent: Agent, env: gym.Env | None = None):
        self.agent = agent
        #: The observations as the env gives them, and the conversion the env boundary makes
        #: of one (None: they reach the agent as they are; see rlexp.envs.boundary).
        self.observation_space = agent.observation_space
        self._convert = None
        if env is not None:
            self.observation_space = boundary.raw_observation_space(env)
            if self.observation_space != agent.observation_space:
                self._convert = boundary.observation_converter(env)

    def _batch(self, obs) -> tuple[np.ndarray, bool]:
        """The observations as a batch the agent takes, and whether a single one was given."""
        x = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
        space = self.observation_space
        shape = tuple(space.shape or ())
        if isinstance(space, gym.spaces.Discrete):
            low, high = int(space.start), int(space.start + space.n)
            if x.ndim > 1 or not np.issubdtype(x.dtype, np.integer) or (
                    x.size and (x.min() < low or x.max() >= high)):
                raise ValueError(f"observations of this env are states, integers in [{low}, "
                                 f"{high}): one, or a 1-D batch; got an array of shape "
                                 f"{x.shape} and dtype {x.dtype}")
            batch, single = x.reshape(-1), x.ndim == 0
        elif x.shape == shape:
            batch, single = x[None], True
        elif x.shape[1:] == shape:
            batch, single = x, False
        else:
            raise ValueError(f"an observation of this env has shape {shape}: pass one, or a "
                             f"batch [n, {', '.join(map(str, shape))}]; got shape {x.shape}")
        if self._convert is not None:
            batch = np.stack([self._convert(o) for o in batch])
        elif isinstance(space, gym.spaces.Box):
            batch = batch.astype(space.dtype, copy=False)
        return batch, single

    def q_values(self, obs) -> np.ndarray:
        batch, single = self._batch(obs)
        q = self.agent.q_values(batch[None])[0].cpu().numpy()
        return q[0] if single else q

    def act(self, obs, explore: bool = False) -> np.ndarray | int:
        batch, single = self._batch(obs)
        actions = self.agent.act(batch[None], explore=explore)[0]
        return int(actions[0]) if single else actions


def load_agent(run_dir: str | Path, device: str | torch.device = "cpu") -> TrainedAgent:
    """The trained agent of a finished run, rebuilt from its saved config and final checkpoint.

    >>> agent = rlexp.load_agent("outputs/runs/2026-11-22/10-00-00_dqn-cartpole_seed0")
    >>> agent.q_values(obs_batch)  # numpy [batch, n_actions]; one observation: [n_actions]
    >>> agent.act(obs)             # the greedy action, an int (a batch: numpy [batch])
    """
    _, agent, env = _load_run(run_dir, device)
    return TrainedAgent(agent, env)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Config, Agent]:
    """A finished run's validated config and its trained agent."""
    return _load_run(run_dir, device)[:2]


def _load_run(run_dir: str | Path, device: str | torch.device
              ) -> tuple[Config, Agent, gym.Env]:
    """:func:`load_run`, with the run's env (closed: its spaces and wrappers only)."""
    run_dir = Path(run_dir)
    config_path = run_dir / rundir.CONFIG
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not an rlexp run directory (no {rundir.CONFIG})")
    cfg = config_from_dict(OmegaConf.to_container(OmegaConf.load(config_path)))
    env = make_env(cfg.env, evaluation=True)  # its spaces, and no episode statistics on top
    agent = make_agent([cfg], env.observation_space, env.action_space, torch.device(device))
    env.close()
    if not (run_dir / rundir.FINAL).is_file() and (run_dir / rundir.LAST).is_file():
        raise ConfigError(f"{run_dir} has no {rundir.FINAL}: the run did not complete "
                          f"({rundir.status(run_dir)}); finish it with python -m rlexp.train "
                          f"resume={run_dir}")
    agent.load_state_dicts([load_training_state(run_dir / rundir.FINAL, device)["agent"]])
    return cfg, agent, env
