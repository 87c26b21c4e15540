"""The qnet agent as a Q-table (one-hot inputs, no hidden layer, no bias, SGD) learns Q*."""

import gymnasium as gym
import numpy as np
import pytest

import rlexp
from rlexp.envs.planning import value_iteration
from rlexp.metrics import read_metrics
from tests.conftest import run_in_process

TABLE = ["agent=qnet", "env=toy", "optimizer=sgd", "agent.network.hidden=[]",
         "agent.network.bias=false", "device=cpu", "eval.every_steps=0"]
# Behaviour policy: uniformly random (epsilon 1). Q-learning is off-policy, so it still learns
# Q* of the greedy policy, and every state-action pair keeps being visited.
EXPLORE = ["agent.epsilon.start=1", "agent.epsilon.end=1"]


def learned_and_optimal_q(run_dir, variant, n_states, gamma):
    agent = rlexp.load_agent(run_dir)
    q = agent.q_values(np.arange(n_states))
    env = gym.make("rlexp/Toy-v0", variant=variant, n_states=n_states)
    return q, value_iteration(env.unwrapped.P, gamma)


@pytest.mark.parametrize("seed", [0, 1])
def test_chain_learns_q_star_and_the_optimal_policy(run_dir, seed):
    # Deterministic chain: with step size 0.5 every visited pair's error shrinks geometrically,
    # and 6,000 random steps visit every pair hundreds of times, so Q reaches Q* to float32
    # precision. The tolerance is float32 round-off, not a learning slack.
    gamma, n = 0.9, 6
    run_in_process([*TABLE, *EXPLORE, "env.variant=chain", f"env.n_states={n}",
                    "optimizer.lr=0.5", f"agent.gamma={gamma}", "total_steps=6000",
                    f"seed={seed}"], run_dir)
    q, q_star = learned_and_optimal_q(run_dir, "chain", n, gamma)
    assert np.abs(q - q_star).max() < 1e-5
    np.testing.assert_array_equal(q[:-1].argmax(axis=1), q_star[:-1].argmax(axis=1))
    # And the greedy evaluation walks right to the +1 (discounted return is not logged: raw 1.0).
    assert read_metrics(run_dir)["eval_return_mean"] == 1.0


@pytest.mark.slow  # a learning check: 4,800 updates
def test_random_variant_learns_q_star_within_its_noise(run_dir):
    # Rewards are uniform integers in [-10, 10): each TD target has variance v ~= 35, so a
    # constant step size can only bring Q to within noise of Q*. With B envs stepped together and
    # the mean loss over the batch, the stationary variance of each Q entry is about
    # lr * v / (2 * B) = 0.01 * 35 / 64 ~= 0.0055 (std 0.074), and each entry's mean error
    # decays by (1 - lr * B / 8 / B)**updates = exp(-6) of |Q*| ~= 0.9 after 4,800 updates.
    # 0.3 is 4 standard deviations: the largest of 8 entries exceeds it with probability < 1e-3.
    gamma, n, envs = 0.9, 4, 32
    run_in_process([*TABLE, *EXPLORE, "env.variant=random", f"env.n_states={n}",
                    f"env.num_envs={envs}", "optimizer.lr=0.01", f"agent.gamma={gamma}",
                    f"total_steps={4800 * envs}", "seed=0", "log.every_steps=10000"], run_dir)
    q, q_star = learned_and_optimal_q(run_dir, "random", n, gamma)
    assert np.abs(q - q_star).max() < 0.3
    # Without learning the error would be |Q*| itself (the table starts at 0).
    assert np.abs(q_star).min() > 0.9
