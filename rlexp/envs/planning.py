"""Exact solutions for envs that expose their model as ``env.unwrapped.P``.

``P[s][a]`` is a list of ``(prob, next_state, reward, terminated)`` tuples, the convention of
gymnasium's toy-text envs (FrozenLake, CliffWalking, Taxi) and of :mod:`rlexp.envs.toy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Model = Mapping[int, Mapping[int, Sequence[tuple]]]


def value_iteration(P: Model, gamma: float, tol: float = 1e-10, max_iters: int = 100_000):
    """Optimal action values Q*[s, a] of the model ``P`` under discount ``gamma``.

    Terminal outcomes do not bootstrap. Iterates the Bellman optimality operator until the
    largest change is below ``tol``; raises if that takes more than ``max_iters`` sweeps (for
    gamma = 1 that happens when some policy never terminates).
    """
    n_states = len(P)
    n_actions = len(P[0])
    # Flatten the model into arrays once: row i is one outcome of pair (s_i, a_i).
    rows = [
        (s, a, prob, s2, reward, done)
        for s in range(n_states)
        for a in range(n_actions)
        for prob, s2, reward, done in P[s][a]
    ]
    s_idx, a_idx, prob, s2, reward, done = (np.array(col) for col in zip(*rows, strict=True))
    s_idx, a_idx, s2 = s_idx.astype(int), a_idx.astype(int), s2.astype(int)
    prob, reward = prob.astype(float), reward.astype(float)
    bootstrap = prob * gamma * (1.0 - done.astype(float))
    expected_reward = np.zeros((n_states, n_actions))
    np.add.at(expected_reward, (s_idx, a_idx), prob * reward)

    q = np.zeros((n_states, n_actions))
    for _ in range(max_iters):
        q_new = expected_reward.copy()
        np.add.at(q_new, (s_idx, a_idx), bootstrap * q.max(axis=1)[s2])
        delta = np.abs(q_new - q).max()
        q = q_new
        if delta < tol:
            return q
    raise RuntimeError(f"value iteration did not converge in {max_iters} sweeps (gamma={gamma})")
