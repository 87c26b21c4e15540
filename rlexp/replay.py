"""A uniform replay buffer held in one preallocated float32 table on the run's device.

Each row is one transition, packed as ``[obs | next_obs | action | reward | terminated |
truncated]``. Packing makes sampling one gather (one op) instead of six, which matters for the
small networks RL uses, whose cost is the number of torch ops, not their arithmetic. The memory
is exactly ``capacity * (2 * obs_size + 4) * 4`` bytes, allocated up front. Discrete observations
and actions are stored as float32, exact for values below 2**24.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ReplaySample:
    """A sampled batch, as tensors on the buffer's device (views into one gathered table)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions; the oldest are overwritten when full."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], device: torch.device | str,
                 seed: int = 0):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.obs_shape = tuple(obs_shape)
        self.device = torch.device(device)
        d = int(np.prod(self.obs_shape))
        self._obs, self._next = slice(0, d), slice(d, 2 * d)
        self._action, self._reward, self._term, self._trunc = 2 * d, 2 * d + 1, 2 * d + 2, 2 * d + 3
        self.table = torch.zeros((capacity, 2 * d + 4), dtype=torch.float32, device=self.device)
        # On the CPU, rows are written through a numpy view of the same memory: a numpy copy
        # costs a microsecond, a torch indexing op ten.
        self._rows = self.table.numpy() if self.device.type == "cpu" else self.table
        self.pos = 0  # next row to write
        self.size = 0  # rows filled so far
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Append a batch of transitions (numpy arrays, one row per env)."""
        n = len(obs)
        rows = np.empty((n, self.table.shape[1]), dtype=np.float32)
        rows[:, self._obs] = np.reshape(obs, (n, -1))
        rows[:, self._next] = np.reshape(next_obs, (n, -1))
        rows[:, self._action] = action
        rows[:, self._reward] = reward
        rows[:, self._term] = terminated
        rows[:, self._trunc] = truncated
        if n > self.capacity:  # only the newest `capacity` rows can survive
            rows, n = rows[-self.capacity:], self.capacity
        if self._rows is self.table:  # on an accelerator: one host-to-device copy
            rows = torch.from_numpy(rows).to(self.device)
        end = self.pos + n
        if end <= self.capacity:
            self._rows[self.pos:end] = rows
        else:  # wrap around the end of the ring
            first = self.capacity - self.pos
            self._rows[self.pos:] = rows[:first]
            self._rows[: n - first] = rows[first:]
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> ReplaySample:
        """A batch drawn uniformly with replacement from the stored transitions."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (batch_size,), device=self.device, generator=self.generator)
        rows = self.table[idx]
        return ReplaySample(
            obs=rows[:, self._obs].reshape(batch_size, *self.obs_shape),
            action=rows[:, self._action].long(),
            reward=rows[:, self._reward],
            next_obs=rows[:, self._next].reshape(batch_size, *self.obs_shape),
            terminated=rows[:, self._term],
            truncated=rows[:, self._trunc],
        )

    def state_dict(self) -> dict:
        return {"table": self.table[: self.size].clone(), "pos": self.pos, "size": self.size,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        self.table[:size] = state["table"].to(self.device)
        self.pos, self.size = int(state["pos"]), size
        self.generator.set_state(state["generator"])
