"""PQN's pieces: lambda-returns against a direct recursion (terminations and truncations inside a
rollout, several envs), and an update that a stop cuts short continues where it stopped."""

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlexp.agents.base import Transition
from rlexp.agents.pqn import PQNAgent, PQNConfig, lambda_returns
from rlexp.agents.qlearning import NetworkConfig
from tests.conftest import solo_agent


def direct_lambda_return(rewards, terminated, truncated, values, gamma, lam, t):
    """G_t by its definition: the (1 - lam)-weighted mix of the n-step returns from t, each
    ending at the episode's end (bootstrapping a truncation from the value of its last
    observation) or at the rollout's end, whose remaining weight goes to the longest."""
    steps = len(rewards)
    total, weight_left, discount, reward_sum = 0.0, 1.0, 1.0, 0.0
    for n in range(1, steps - t + 1):
        k = t + n - 1
        reward_sum += discount * rewards[k]
        discount *= gamma
        bootstrap = 0.0 if terminated[k] else discount * values[k]
        ended = terminated[k] or truncated[k] or k == steps - 1
        weight = weight_left if ended else weight_left * (1 - lam)
        total += weight * (reward_sum + bootstrap)
        weight_left -= weight
        if ended:
            return total
    raise AssertionError("unreachable")


@pytest.mark.parametrize("lam", [0.0, 0.65, 0.95, 1.0])
def test_lambda_returns_match_the_direct_definition_across_episode_ends_and_envs(lam):
    rng = np.random.default_rng(0)
    steps, envs, gamma = 12, 3, 0.9
    rewards = rng.standard_normal((steps, envs))
    values = rng.standard_normal((steps, envs))
    terminated = np.zeros((steps, envs), bool)
    truncated = np.zeros((steps, envs), bool)
    terminated[3, 0] = terminated[7, 1] = True  # episodes end inside the rollout
    truncated[5, 0] = truncated[10, 2] = True   # and time limits cut others
    terminated[steps - 1, 1] = True             # the last step ends one too
    got = lambda_returns(*(torch.tensor(x) for x in (rewards, terminated, truncated, values)),
                         gamma, lam)
    for e in range(envs):
        for t in range(steps):
            want = direct_lambda_return(rewards[:, e], terminated[:, e], truncated[:, e],
                                        values[:, e], gamma, lam, t)
            assert got[t, e].item() == pytest.approx(want, abs=1e-9), (lam, t, e)


def test_lambda_zero_is_the_one_step_target_and_one_the_discounted_return():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[10.0], [20.0], [30.0]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    one_step = lambda_returns(rewards, no, no, values, 0.5, 0.0)
    assert one_step[:, 0].tolist() == [1 + 0.5 * 10, 2 + 0.5 * 20, 3 + 0.5 * 30]
    full = lambda_returns(rewards, no, no, values, 0.5, 1.0)
    assert full[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 30)


def make_agent(seed=0) -> PQNAgent:
    cfg = PQNConfig(rollout_steps=4, epochs=2, minibatches=3,
                    network=NetworkConfig(hidden=[16], norm="layer"))
    return solo_agent(PQNAgent, cfg, gym.spaces.Box(-1, 1, (3,), np.float32),
                      gym.spaces.Discrete(2), partial(torch.optim.Adam, lr=1e-2),
                      total_steps=1000, seed=seed)


def rollout_step(rng, envs=5) -> Transition:
    obs = rng.standard_normal((1, envs, 3)).astype(np.float32)
    return Transition(obs, rng.integers(2, size=(1, envs)), rng.standard_normal((1, envs)),
                      rng.standard_normal((1, envs, 3)).astype(np.float32),
                      rng.random((1, envs)) < 0.2, rng.random((1, envs)) < 0.1)


def test_an_update_cut_short_by_a_stop_resumes_from_its_state_dict_exactly():
    straight, stopped = make_agent(), make_agent()
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(3):  # three vector steps of the four-step rollout: no update yet
        assert straight.learn(rollout_step(rng_a)) is None
        assert stopped.learn(rollout_step(rng_b)) is None
    want = straight.learn(rollout_step(rng_a))
    assert want is not None and set(want) == {"loss", "q_mean"}
    asked = iter([False, False, True])  # stop after two of the six gradient steps
    assert stopped.learn(rollout_step(rng_b), lambda: next(asked)) is None
    resumed = make_agent(seed=5)  # other initial weights: everything comes from the state
    resumed.load_state_dicts([stopped.state_dict(0)])
    got = resumed.finish_pending()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    for (name, a), b in zip(straight.state_dict(0)["q_net"].items(),
                            resumed.state_dict(0)["q_net"].values(), strict=True):
        assert torch.equal(a, b), name
