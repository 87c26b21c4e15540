"""Extending rlexp from the user's own package, with no edit to rlexp: a package written to a
temporary directory holds an agent (an Agent subclass with its Config), an env config, a
preset and a tuned file, added with ``hydra.searchpath=[pkg://their_pkg.conf]``; ``--help``, a
sweep of populations, resume, ``rlexp.evaluate`` and ``load_agent`` all use them."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import rlexp
from rlexp import evaluate, rundir
from rlexp.checkpoint import load_training_state
from rlexp.config import ConfigError, compose
from rlexp.metrics import read_metrics
from tests.conftest import run_cli, run_in_process

FILES = {
    "their_pkg/__init__.py": "",
    "their_pkg/agents.py": '''
        import dataclasses
        from dataclasses import dataclass

        from rlexp.agents.dqn import DQNAgent, DQNConfig


        @dataclass
        class ScaledDQNConfig(DQNConfig):
            """DQN that learns from scaled rewards."""

            name: str = "scaled_dqn"
            #: Rewards are multiplied by this before the agent learns from them.
            reward_scale: float = 1.0


        class ScaledDQN(DQNAgent):
            Config = ScaledDQNConfig

            def learn(self, batch, should_stop=None):
                scaled = dataclasses.replace(batch, reward=batch.reward * self.cfg.reward_scale)
                return super().learn(scaled, should_stop)
        ''',
    "their_pkg/envs.py": '''
        from dataclasses import dataclass

        import gymnasium as gym
        import numpy as np

        from rlexp.envs import EnvConfig


        class Corridor(gym.Env):
            """Walk right along ``length`` cells to the reward; observations are the position
            as a float64 vector (converted at rlexp's env boundary)."""

            def __init__(self, length: int = 5):
                self.length = length
                self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float64)
                self.action_space = gym.spaces.Discrete(2)
                self.position = 0

            def _obs(self):
                return np.array([self.position / (self.length - 1)])

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.position = 0
                return self._obs(), {}

            def step(self, action):
                self.position = min(max(self.position + (1 if action else -1), 0),
                                    self.length - 1)
                done = self.position == self.length - 1
                return self._obs(), float(done), done, False, {}


        gym.register("their_pkg/Corridor-v0", entry_point=Corridor, max_episode_steps=30)


        @dataclass
        class CorridorConfig(EnvConfig):
            """A corridor of ``length`` cells."""

            name: str = "corridor"
            id: str = "their_pkg.envs:their_pkg/Corridor-v0"
            #: Cells from the start to the reward.
            length: int = 5

            def __post_init__(self):
                super().__post_init__()
                if self.length < 2:
                    raise ValueError(f"env.length={self.length} must be at least 2")
        ''',
    "their_pkg/conf/__init__.py": "",
    "their_pkg/conf/agent/scaled_dqn.yaml": '''
        # DQN on scaled rewards, from their_pkg.
        _target_: their_pkg.agents.ScaledDQN
        reward_scale: 2.0
        ''',
    "their_pkg/conf/env/corridor.yaml": '''
        # A corridor, from their_pkg.
        _target_: their_pkg.envs.CorridorConfig
        length: 6
        ''',
    "their_pkg/conf/experiment/corridor_quick.yaml": '''
        # @package _global_
        # A quick corridor run of their_pkg's agent.
        defaults:
          - override /agent: scaled_dqn
          - override /env: corridor
        total_steps: 400
        log:
          every_steps: 100
        eval:
          every_steps: 200
          episodes: 2
        checkpoint:
          every_steps: 200
        device:
          threads: 1
        agent:
          network:
            hidden: [16]
          train_freq: 4
          batch_size: 16
        ''',
    "their_pkg/conf/tuned/scaled_dqn_corridor.yaml": '''
        # @package _global_
        # their_pkg's tuned settings of scaled_dqn on the corridor.
        agent:
          learning_starts: 64
        ''',
}
SEARCH = "hydra.searchpath=[pkg://their_pkg.conf]"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m.split(".")[0] == "their_pkg"]:
        del sys.modules[name]


def cli(package: Path, args: list[str], cwd: Path):
    return run_cli(args, cwd=cwd, env={"PYTHONPATH": str(package)})


def test_help_lists_the_users_options_and_fields(package, tmp_path):
    result = cli(package, ["--help", SEARCH], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    from rlexp.agents import AGENTS

    assert f"agent: {', '.join(sorted([*AGENTS, 'scaled_dqn']))}" in lines
    assert any(ln.startswith("env: ") and "corridor" in ln for ln in lines)
    assert "== agent=scaled_dqn (ScaledDQNConfig) ==" in lines
    assert any("agent.reward_scale = 1.0: Rewards are multiplied by this" in ln for ln in lines)
    assert any("env.length = 5: Cells from the start to the reward." in ln for ln in lines)
    assert "    corridor_quick: A quick corridor run of their_pkg's agent" in lines


def test_a_sweep_of_populations_resume_evaluate_and_load_agent(package, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(package, ["-m", "experiment=corridor_quick", SEARCH, "seeds=2",
                           "agent.reward_scale=1.0,2.0", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = sorted(sweep.glob("*/seed*"))
    assert len(runs) == 4 and all(read_metrics(r)["status"] == "completed" for r in runs)
    assert all(read_metrics(r)["population"] == 2 for r in runs)
    assert (sweep / "summary.md").is_file()
    # The user's classes and values, and their tuned file, made the runs.
    cfg = read_config(runs[0])
    assert cfg["agent"]["_target_"] == "their_pkg.agents.ScaledDQN"
    assert cfg["env"]["_target_"] == "their_pkg.envs.CorridorConfig"
    assert cfg["env"]["length"] == 6 and cfg["agent"]["learning_starts"] == 64

    # reward_scale 1.0 learns exactly as rlexp's DQN with the same settings; 2.0 does not.
    by_scale = {read_config(r)["agent"]["reward_scale"]: r for r in runs
                if read_config(r)["seed"] == 0}
    plain = run_in_process(["experiment=corridor_quick", SEARCH, "agent=dqn",
                            "agent.learning_starts=64"], tmp_path / "plain")
    assert plain.status == "completed"
    assert weights_equal(by_scale[1.0], tmp_path / "plain")
    assert not weights_equal(by_scale[2.0], tmp_path / "plain")

    # Resume through the CLI, with the run directory alone and a larger budget.
    run = by_scale[2.0]
    resumed = cli(package, [f"resume='{run}'", "total_steps=600"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    metrics = read_metrics(run)
    assert metrics["status"] == "completed" and metrics["env_steps"] == 600
    assert metrics["extended_from_steps"] == 400

    # rlexp.evaluate plays the run's final evaluation again (greedy: the same returns).
    evaluate.main([str(run)])
    again = json.loads((run / rundir.EVAL_JSON).read_text())
    assert again["return_mean"] == pytest.approx(metrics["eval_return_mean"])

    # load_agent: the user's agent, on observations as the user's env gives them.
    agent = rlexp.load_agent(run)
    assert type(agent.agent).__name__ == "ScaledDQN"
    obs = np.array([[0.0], [0.4]])  # float64, as the env gives them
    q = agent.q_values(obs)
    assert q.shape == (2, 2) and np.isfinite(q).all()
    assert agent.act(obs).shape == (2,)


def test_bad_targets_are_refused_in_one_line(package):
    with pytest.raises(ConfigError, match=r"agent._target_: 'their_pkg.nope.X' cannot be imported: "
                       r"No module named 'their_pkg.nope'"):
        compose([SEARCH, "agent=scaled_dqn", "agent._target_=their_pkg.nope.X"])
    with pytest.raises(ConfigError, match=r"is not an rlexp Agent subclass"):
        compose([SEARCH, "agent=scaled_dqn", "agent._target_=their_pkg.envs.Corridor"])
    with pytest.raises(ConfigError, match=r"env.length=1 must be at least 2"):
        compose([SEARCH, "env=corridor", "env.length=1"])
    with pytest.raises(ConfigError, match=r"agent.reward_scale: Value 'lots' of type 'str' could "
                       r"not be converted to Float"):
        compose([SEARCH, "agent=scaled_dqn", "agent.reward_scale=lots"])


def read_config(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / rundir.CONFIG).read_text())


def weights_equal(a: Path, b: Path) -> bool:
    ours, theirs = (load_training_state(d / rundir.FINAL)["agent"]["q_net"] for d in (a, b))
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
