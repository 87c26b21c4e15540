"""The toy MDP: registration, its model P, sampling that follows P, and time-limit truncation."""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlexp  # noqa: F401  (registers rlexp/Toy-v0)
from rlexp.envs.toy import ToyEnv


@pytest.mark.parametrize("variant", ["chain", "random"])
def test_passes_gymnasium_env_checker(variant):
    check_env(ToyEnv(variant=variant), skip_render_check=True)


@pytest.mark.parametrize("variant,n", [("chain", 7), ("chain", 3), ("random", 4), ("random", 6)])
def test_model_is_a_distribution_per_state_action(variant, n):
    P = gym.make("rlexp/Toy-v0", variant=variant, n_states=n).unwrapped.P
    assert sorted(P) == list(range(n))
    for s in range(n):
        assert sorted(P[s]) == [0, 1]
        for a in (0, 1):
            assert sum(p for p, *_ in P[s][a]) == pytest.approx(1.0)


def test_defaults_match_the_blog_version():
    env = gym.make("rlexp/Toy-v0", variant="random")
    assert env.observation_space.n == 4 and env.action_space.n == 2
    rewards = {r for p, s2, r, done in env.unwrapped.P[0][0]}
    assert rewards == set(range(-10, 10))
    assert all(done == (r < 0) for p, s2, r, done in env.unwrapped.P[2][1])
    assert gym.make("rlexp/Toy-v0").observation_space.n == 7  # chain, the default


def test_chain_dynamics():
    env = gym.make("rlexp/Toy-v0", variant="chain", n_states=4)
    assert env.reset(seed=0)[0] == 0
    assert env.step(0)[1:3] == (0.1, True)  # left at the start: the cheap exit
    env.reset()
    assert [env.step(1)[:3] for _ in range(3)] == [(1, 0.0, False), (2, 0.0, False), (3, 1.0, True)]


def test_random_variant_samples_follow_its_model():
    env = ToyEnv(variant="random")  # unwrapped: no time limit, and steps go on past the end
    env.reset(seed=3)
    counts = Counter()
    n = 40_000
    for _ in range(n):
        s2, r, terminated, truncated, _ = env.step(0)
        assert terminated == (r < 0) and not truncated
        counts[s2, r] += 1
    # 80 equally likely (next_state, reward) outcomes: each within 5 binomial std of n/80.
    p = 1 / 80
    assert len(counts) == 80
    assert all(abs(c - n * p) < 5 * np.sqrt(n * p * (1 - p)) for c in counts.values())


def test_episodes_are_truncated_not_terminated_at_max_steps():
    env = gym.make("rlexp/Toy-v0", variant="chain", n_states=5, max_episode_steps=6)
    env.reset(seed=0)
    # right, left, right, left, ...: never reaches either end.
    for t in range(6):
        _, _, terminated, truncated, _ = env.step(1 - t % 2)
        assert not terminated
    assert truncated


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = gym.make("rlexp/Toy-v0", variant="random")
        out = [env.reset(seed=seed)[0]]
        for _ in range(50):
            s, r, term, trunc, _ = env.step(1)
            out.append((s, r))
            if term or trunc:
                out.append(env.reset()[0])
        return out

    assert rollout(5) == rollout(5)
    assert rollout(5) != rollout(6)


def test_bad_variant_is_refused():
    with pytest.raises(ValueError, match="variant='nope' is not one of chain, random"):
        ToyEnv(variant="nope")
