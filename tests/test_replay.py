"""The replay buffer: packing, ring overwrite, uniform sampling, terminations vs truncations."""

import numpy as np
import pytest
import torch

from rlexp.replay import MemberReplay, ReplayBuffer


def add_steps(buffer, start, n, n_envs=1):
    """Transitions whose every field encodes its index i, so rows can be checked exactly."""
    for i in range(start, start + n, n_envs):
        idx = np.arange(i, i + n_envs)
        buffer.add(obs=np.stack([idx, -idx], axis=1).astype(np.float32), action=idx % 3,
                   reward=idx * 0.5, next_obs=np.stack([idx + 1, -idx - 1], axis=1),
                   terminated=idx % 4 == 0, truncated=idx % 4 == 1)


def test_sample_returns_consistent_rows_and_dtypes():
    buffer = ReplayBuffer(100, (2,), "cpu", seed=0)
    add_steps(buffer, 0, 50)
    b = buffer.sample(256)
    i = b.obs[:, 0]
    assert b.obs.shape == (256, 2) and b.next_obs.shape == (256, 2)
    assert b.action.dtype == torch.long
    torch.testing.assert_close(b.obs[:, 1], -i)
    torch.testing.assert_close(b.next_obs[:, 0], i + 1)
    torch.testing.assert_close(b.action, (i % 3).long())
    torch.testing.assert_close(b.reward, i * 0.5)
    # Terminations and truncations are stored apart (a truncated step must still bootstrap).
    torch.testing.assert_close(b.terminated, (i % 4 == 0).float())
    torch.testing.assert_close(b.truncated, (i % 4 == 1).float())
    assert i.max() < 50  # only filled rows are sampled


@pytest.mark.parametrize("n_envs", [1, 3])
def test_ring_overwrites_the_oldest(n_envs):
    buffer = ReplayBuffer(10, (2,), "cpu")
    add_steps(buffer, 0, 24, n_envs)  # 24 transitions into 10 rows
    assert len(buffer) == 10
    stored = sorted(buffer.table.data[:, 0].tolist())
    assert stored == list(range(14, 24))  # exactly the newest ten
    assert buffer.pos == 24 % 10


def test_sampling_is_uniform():
    buffer = ReplayBuffer(8, (2,), "cpu", seed=1)
    add_steps(buffer, 0, 8)
    counts = np.bincount(buffer.sample(80_000).obs[:, 0].long().numpy(), minlength=8)
    # Each row expected 10,000 times; 5 binomial standard deviations is about 470.
    assert np.all(np.abs(counts - 10_000) < 470), counts


def test_same_seed_same_samples_and_state_round_trip():
    a, b = ReplayBuffer(50, (2,), "cpu", seed=3), ReplayBuffer(50, (2,), "cpu", seed=3)
    add_steps(a, 0, 30)
    add_steps(b, 0, 30)
    torch.testing.assert_close(a.sample(16).obs, b.sample(16).obs)
    c = ReplayBuffer(50, (2,), "cpu", seed=99)
    c.load_state_dict(a.state_dict())
    assert (len(c), c.pos) == (len(a), a.pos)
    torch.testing.assert_close(c.sample(16).obs, a.sample(16).obs)


def test_memory_is_the_raw_size_of_what_it_stores():
    buffer = ReplayBuffer(100_000, (4,), "cpu")
    # obs + next_obs (4 floats each) + discount, action, reward, terminated, truncated: 13
    # float32s a row.
    assert buffer.nbytes == 100_000 * 13 * 4


def test_discrete_observations_are_stored_exactly():
    buffer = ReplayBuffer(10, (), "cpu")
    buffer.add(np.array([6]), np.array([1]), np.array([0.0]), np.array([7]), np.array([False]),
               np.array([False]))
    b = buffer.sample(4)
    assert b.obs.shape == (4,) and b.obs.tolist() == [6.0] * 4 and b.next_obs[0] == 7


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_populations_memories_sample_together_what_each_samples_alone(prioritized):
    """Members' memories sampled as one (one gather from their joint table) give each member
    the batch its memory alone gives, for rows written before and after they were joined,
    and each member's writes stay its own."""
    def memories(joined):
        made = []
        for seed in range(3):
            memory = ReplayBuffer(40, (2,), "cpu", seed=seed, n_step=1 + seed)
            if prioritized:
                memory.prioritize(0.6, 1e-6, seed)
            add_steps(memory, 100 * seed, 30)  # each member's rows tell it apart
            made.append(memory)
        return MemberReplay(made) if joined else made

    together, alone = memories(True), memories(False)
    assert together._joint is not None
    for start in (30, 60):  # then more rows, wrapping around the ring
        for k, memory in enumerate(alone):
            add_steps(memory, 100 * k + start, 30)
            add_steps(together.memories[k], 100 * k + start, 30)
        batch = together.sample(64, [0.4, 0.7, 1.0])
        for k, memory in enumerate(alone):
            own = memory.sample(64, [0.4, 0.7, 1.0][k], member_axis=True)
            for name in ("obs", "next_obs", "action", "reward", "discount", "terminated",
                         "truncated", "index", "weight"):
                mine, theirs = getattr(batch, name), getattr(own, name)
                assert (mine is None) == (theirs is None) == (name == "weight" and
                                                             not prioritized)
                if mine is not None:
                    assert torch.equal(mine[k:k + 1], theirs), name
        assert [int(batch.obs[k, :, 0].min()) // 100 for k in range(3)] == [0, 1, 2]
