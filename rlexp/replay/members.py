"""A population's replay: one memory per member (:func:`make_replay` picks its kind), sampled
together.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from gymnasium import spaces

from rlexp.replay.memories import FrameReplayBuffer, ReplayBuffer, ReplayMemory, ReplaySample


def make_replay(capacity: int, observation_space: spaces.Space, frame_stack: int,
                device: torch.device | str, seed: int = 0, n_step: int = 1,
                gamma: float = 0.99) -> ReplayBuffer | FrameReplayBuffer:
    """The memory for ``observation_space``: frames for pixels (uint8 or bool Box
    observations, kept in their dtype), the float32 table for everything else; returning
    ``n_step`` transitions discounted by ``gamma``."""
    if isinstance(observation_space, spaces.Box) and observation_space.dtype in (np.uint8,
                                                                                 np.bool_):
        return FrameReplayBuffer(capacity, observation_space.shape, observation_space.dtype,
                                 frame_stack, device, seed, n_step, gamma)
    return ReplayBuffer(capacity, observation_space.shape, device, seed, n_step, gamma)


class MemberReplay:
    """The replay memories of a population's members, one each (own capacity, seed, n-step
    returns, discount and priorities), sampled together as ``[members, batch]`` tensors."""

    def __init__(self, memories: list[ReplayMemory]):
        self.memories = memories
        prioritized = {m.sampler is not None for m in memories}
        if len(prioritized) != 1:
            raise ValueError("the members of a population all use prioritized replay or none")
        self.prioritized = prioritized.pop()
        #: The members' tables as one ``[members * capacity, width]`` tensor, each member's
        #: table a block of it, when they are alike: a sample is then one gather for all of
        #: them (per member, a gather, seven column views and a dtype conversion, then a
        #: concatenation per field: a tenth of an 8-member gradient step). None otherwise.
        self._joint: torch.Tensor | None = None
        self._offsets: torch.Tensor | None = None  # each member's first row in it
        tables = [m.table for m in memories if isinstance(m, ReplayBuffer)]
        if 1 < len(tables) == len(memories) and len(
                {(t.capacity, t.width, t.device) for t in tables}) == 1:
            first = tables[0]
            joint = torch.empty((len(tables), first.capacity, first.width),
                                dtype=first.data.dtype, device=first.device)
            for table, part in zip(tables, joint, strict=True):
                table.place(part)
            self._joint = joint.flatten(0, 1)
            self._offsets = torch.arange(len(tables), device=first.device)[:, None] \
                * first.capacity

    def __len__(self) -> int:
        """Transitions every member can sample."""
        return min(len(m) for m in self.memories)

    @property
    def added(self) -> int:
        """Transitions added to each member's memory (the same for all of them)."""
        return self.memories[0].added

    def describe(self) -> str:
        each = self.memories[0].describe()
        return each if len(self.memories) == 1 else f"{len(self.memories)} x {each}"

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Each member's batch of transitions (``[members, envs, ...]`` numpy arrays)."""
        for i, memory in enumerate(self.memories):
            memory.add(obs[i], action[i], reward[i], next_obs[i], terminated[i], truncated[i])

    def sample(self, batch_size: int, betas: list[float] | None = None) -> ReplaySample:
        """A batch from each member's memory (``betas``: each member's importance-sampling
        exponent, for prioritized memories), stacked along a leading member axis."""
        betas = betas or [1.0] * len(self.memories)
        if self._joint is not None:  # each member's own draws, then one gather
            draws = [m.draw(batch_size, beta) for m, beta in zip(self.memories, betas,
                                                                  strict=True)]
            rows = torch.stack([r for r, _ in draws])
            weight = None if draws[0][1] is None else torch.stack([w for _, w in draws])
            gathered = self._joint[rows + self._offsets]
            return ReplaySample.of(self.memories[0].table.columns(gathered), rows, weight)
        samples = [m.sample(batch_size, beta, member_axis=True)
                   for m, beta in zip(self.memories, betas, strict=True)]
        if len(samples) == 1:
            return samples[0]
        return ReplaySample(**{
            f.name: None if getattr(samples[0], f.name) is None
            else torch.cat([getattr(s, f.name) for s in samples])
            for f in dataclasses.fields(ReplaySample)})

    def update_priorities(self, index: torch.Tensor, errors: torch.Tensor) -> None:
        """New priorities from a sample's ``[members, batch]`` rows and errors."""
        for memory, rows, member_errors in zip(self.memories, index, errors, strict=True):
            memory.sampler.update(rows, member_errors)

    def state_dict(self, i: int) -> dict:
        return self.memories[i].state_dict()

    def load_state_dict(self, i: int, state: dict) -> None:
        self.memories[i].load_state_dict(state)
