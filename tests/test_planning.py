"""Value iteration against solutions known in closed form, and the Bellman optimality equation."""

import gymnasium as gym
import numpy as np
import pytest

import rlexp  # noqa: F401
from rlexp.envs.planning import value_iteration
from rlexp.envs.toy import chain_model, random_model


def bellman_residual(P, q, gamma):
    worst = 0.0
    for s in P:
        for a in P[s]:
            backup = sum(p * (r + (0 if done else gamma * q[s2].max()))
                         for p, s2, r, done in P[s][a])
            worst = max(worst, abs(backup - q[s, a]))
    return worst


def test_chain_closed_form():
    n, gamma = 6, 0.9
    q = value_iteration(chain_model(n), gamma)
    goal = n - 1
    for s in range(goal):
        assert q[s, 1] == pytest.approx(gamma ** (goal - 1 - s))  # walk right to the +1
    assert q[0, 0] == pytest.approx(0.1)  # the cheap exit
    for s in range(1, goal):
        assert q[s, 0] == pytest.approx(gamma * q[s - 1].max())
    assert np.all(q[goal] == 0)  # terminal
    assert np.all(q[:goal].argmax(axis=1) == 1)


def test_random_variant_closed_form():
    # Q* is the same for every pair: Q = E[r] + gamma * P(r >= 0) * Q, E[r] = -0.5, P = 1/2.
    gamma = 0.9
    q = value_iteration(random_model(4), gamma)
    np.testing.assert_allclose(q, -0.5 / (1 - gamma / 2))


def test_cliff_walking_shortest_safe_path():
    # Deterministic, -1 per step; from the start the optimal path is 13 steps long.
    gamma = 0.9
    P = gym.make("CliffWalking-v1").unwrapped.P
    q = value_iteration(P, gamma)
    start = 36
    assert q[start].max() == pytest.approx(-(1 - gamma**13) / (1 - gamma))


@pytest.mark.parametrize("slippery", [True, False])
def test_frozen_lake_satisfies_bellman_optimality(slippery):
    P = gym.make("FrozenLake-v1", is_slippery=slippery).unwrapped.P
    q = value_iteration(P, 0.95)
    assert bellman_residual(P, q, 0.95) < 1e-8
    assert 0 < q[0].max() < 1


def test_undiscounted_non_terminating_model_is_reported():
    P = {0: {0: [(1.0, 0, 1.0, False)]}}
    with pytest.raises(RuntimeError, match="did not converge"):
        value_iteration(P, 1.0, max_iters=100)
