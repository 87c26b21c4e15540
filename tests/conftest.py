"""Shared helpers: compose configs with Hydra's compose API, run in-process or through the CLI,
and read scalars back from TensorBoard event files."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from rlexp.config import CONFIG_DIR, compose
from rlexp.runner import run
from tests import zygote

REPO = Path(__file__).resolve().parent.parent

#: Overrides that shrink any run to about a second: learning starts early, few env steps.
TINY = [
    "total_steps=600",
    "log.every_steps=100",
    "eval.every_steps=300",
    "eval.episodes=2",
    "agent.epsilon.start=0.5",
]
TINY_DQN = [
    "agent.learning_starts=100",
    "agent.train_freq=4",
    "agent.gradient_steps=2",
    "agent.batch_size=32",
    "agent.buffer_size=1000",
    "agent.network.hidden=[32]",
]


#: TINY_DQN's settings, PQN's rollouts and the distributional agents' quantiles, shrunk, by
#: field: :func:`shrunk` adds those that an agent's config has.
SHRUNK_OWN = {"rollout_steps": 4, "minibatches": 2, "quantiles": 8, "tau_samples": 8,
              "tau_prime_samples": 8, "quantile_samples": 8}
TINY_AGENT = {"learning_starts": 100, "train_freq": 4, "gradient_steps": 2, "batch_size": 32,
              "buffer_size": 1000, **SHRUNK_OWN}


def shrunk(overrides: list[str], settings: dict | None = None) -> list[str]:
    """``overrides`` with ``settings`` (TINY_AGENT) for the fields the agent's config has, and
    at most 4 envs (a tuned setting may step many: PQN's 32), so that any agent updates and
    checkpoints early."""
    cfg = _composed(tuple(overrides))
    extra = [f"agent.{k}={v}" for k, v in (settings or TINY_AGENT).items()
             if hasattr(cfg.agent, k)]
    return [*overrides, *extra, *(["env.num_envs=4"] if cfg.env.num_envs > 4 else [])]


@functools.lru_cache(maxsize=512)
def _composed(overrides: tuple[str, ...]):
    """A config composed once per set of overrides, to read only (composing takes ~0.2 s)."""
    return compose(list(overrides))


def compose_config(overrides: list[str]):
    """:func:`rlexp.config.compose`: a config of the caller's own, composed once per set of
    overrides in this process (the same overrides compose to the same config)."""
    return copy.deepcopy(_composed(tuple(overrides)))


def solo_agent(agent_cls, cfg, observation_space, action_space, make_optimizer, total_steps,
               seed=0, **kw):
    """A population of one built from plain arguments, as a single run's agent."""
    from rlexp.agents import AgentSpec, Member

    member = Member(cfg, seed=seed, lr=make_optimizer.keywords.get("lr", 1e-3))
    return agent_cls(AgentSpec([member], observation_space, action_space, make_optimizer,
                               torch.device("cpu"), total_steps, **kw))


def solo_state(net, **values) -> dict:
    """A state for a population of one's network: zeros, with the named parameters set
    (``values``: name -> values, by the single network's parameter names, dots as ``__``)."""
    state = {k: torch.zeros_like(v) for k, v in net.member_state_dict(0).items()}
    for name, value in values.items():
        state[name.replace("__", ".")] = torch.as_tensor(value, dtype=torch.float32)
    return state


class NullLogger:
    """Stands in for the TensorBoard logger."""

    latest_step = None
    latest_points: dict = {}

    def scalar(self, *args):
        pass


def train_alone(agent, envs, eval_envs, settings, tb=None, save=lambda state: None,
                state=None, stop=None):
    """The loop for a population of one; returns its result."""
    from rlexp.loop import MemberRun, train

    results = []
    train(agent, envs, eval_envs, [MemberRun(settings, tb or NullLogger(), save, results.append,
                                             state)], stop)
    (result,) = results
    return result


def sigint_when_learning_at(monkeypatch, agent_cls, env_steps: int) -> None:
    """Make ``agent_cls.learn`` send this process a real SIGINT when the agent has seen
    ``env_steps`` env steps (undo with ``monkeypatch.undo()``)."""
    import signal

    learn = agent_cls.learn

    def interrupt(self, batch, should_stop=None):
        if self.env_steps == env_steps:
            os.kill(os.getpid(), signal.SIGINT)
        return learn(self, batch, should_stop)

    monkeypatch.setattr(agent_cls, "learn", interrupt)


def crash_run_at(overrides: list[str], run_dir: Path, agent_cls, env_steps: int) -> None:
    """Train ``overrides`` in this process until the agent has seen ``env_steps`` env steps,
    then die there (a KeyboardInterrupt out of ``learn``, as a killed process would stop)."""
    learn = agent_cls.learn

    def crash(self, batch, should_stop=None):
        if self.env_steps >= env_steps:
            raise KeyboardInterrupt
        return learn(self, batch, should_stop)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(agent_cls, "learn", crash)
        with pytest.raises(KeyboardInterrupt):
            run_in_process(overrides, run_dir)


def options(group: str) -> list[str]:
    """The options of a config group: its YAML files, sorted."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def run_in_process(overrides: list[str], run_dir: Path, stop=None):
    """Train in this process (no Hydra startup); returns the run's metrics. ``stop``: a
    StopSignals that signals sent to this process stop the run through."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return run(compose_config(overrides), run_dir, stop)


def run_cli(args: list[str], cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m rlexp.train ARGS` in a process of its own, as a user types it (forked from
    a process that has imported what it needs: tests/zygote.py)."""
    return zygote.run("rlexp.train", args, cwd or REPO, env, timeout)


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of a run's event file, as {tag: [(step, value), ...]}."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def curves(run_dir: Path) -> dict:
    """Every logged series but the wall-clock ones, by step (event files written by one process
    in the same second are not read back in the order they were written)."""
    return {tag: sorted(points) for tag, points in read_scalars(run_dir).items()
            if not tag.startswith("time/")}


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m rlexp.train ARGS` started in a subprocess (its output in ``stdout``)."""
    return subprocess.Popen([sys.executable, "-m", "rlexp.train", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})


def fake_run(sweep: Path, name: str, overrides: list[str], status: str = "completed",
             final: float | None = None, curve: list[tuple[int, float]] = (),
             target: float | None = 100.0, error: str | None = None) -> Path:
    """A run directory as a sweep's job writes it, with the given outcome and eval curve, for
    the report to read."""
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "config.yaml").write_text(yaml.safe_dump({"env": {"solved_return": target}}))
    (run / "metrics.json").write_text(json.dumps(
        {"status": status, "error": error, "eval_return_mean": final}))
    writer = SummaryWriter(str(run))
    for step, value in curve:
        writer.add_scalar("eval/return_mean", value, step)
    writer.close()
    return run


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The trained Q-network's weights in a run's final checkpoint."""
    from rlexp import rundir
    from rlexp.checkpoint import load_training_state

    return load_training_state(run_dir / rundir.FINAL)["agent"]["q_net"]
