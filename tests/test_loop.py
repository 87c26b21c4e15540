"""The training loop (rlexp.loop) through the agent contract alone: a minimal agent defined here."""

import numpy as np
import pytest
import torch

from rlexp.agents.base import Agent, AgentConfig, AgentSpec, Member
from tests.conftest import (
    NullLogger,
    train_alone,
)


def test_a_minimal_agent_runs_through_the_real_loop_by_the_contract_alone():
    result, points = run_contract_agent()
    assert result.outcome == "completed" and result.state.step == 400
    # learn()'s scalars, averaged per interval, and log_scalars() at each log point.
    assert [s for s, _ in points["train/count_logged"]] == [100, 200, 300, 400]
    assert points["train/count_logged"][-1][1] == 400
    assert points["train/count"][0] == (100, pytest.approx(np.mean(range(2, 101, 2))))
    assert [s for s, _ in points["eval/return_mean"]] == [0, 200, 400]
    assert "train/epsilon" not in points  # only what the agent reports


def test_a_value_metric_the_agent_does_not_report_is_an_error_not_a_silent_pass():
    with pytest.raises(ValueError, match="reports no 'count'"):
        run_contract_agent(report=False)
    assert run_contract_agent(report=False, max_abs_q=None)[0].outcome == "completed"


class CountingConfig(AgentConfig):
    pass


class CountingAgent(Agent):
    """The smallest agent: always action 0; 'learns' by counting steps. Not registered (it is
    not in rlexp.agents), so it only runs through the loop directly."""

    Config = CountingConfig
    value_metric = "count"

    def __init__(self, spec, report=True):
        super().__init__(spec)
        self.count, self.report = 0, report

    def act(self, obs, explore=True):
        return np.zeros(obs.shape[:2], dtype=np.int64)

    def learn(self, batch, should_stop=None):
        self.count += batch.obs.shape[1]
        if not self.report:
            return {"other": torch.zeros(self.size)}
        return {"count": torch.full((self.size,), float(self.count))}

    def q_values(self, obs):
        return torch.zeros(*obs.shape[:2], self.action_space.n)

    def log_scalars(self):
        return {"count_logged": [float(self.count)] * self.size}

    def state_dict(self, i=0):
        return {"count": self.count}

    def load_state_dicts(self, states):
        self.count = states[0]["count"]


class Recorder(NullLogger):
    def __init__(self):
        self.points = {}

    def scalar(self, tag, value, step):
        self.points.setdefault(tag, []).append((step, value))


def run_contract_agent(report=True, max_abs_q=1e6):
    from rlexp.build import make_vector_env
    from rlexp.envs import EnvConfig
    from rlexp.loop import LoopSettings

    envs = make_vector_env(EnvConfig(id="CartPole-v1"), 2)
    eval_envs = make_vector_env(EnvConfig(id="CartPole-v1"), 2)
    agent = CountingAgent(AgentSpec([Member(CountingConfig(), seed=0, lr=0.0)],
                                    envs.single_observation_space, envs.single_action_space,
                                    None, torch.device("cpu"), 400), report=report)
    tb = Recorder()
    result = train_alone(agent, envs, eval_envs, LoopSettings(
        total_steps=400, seed=0, log_every=100, eval_every=200, max_abs_q=max_abs_q), tb)
    return result, tb.points
