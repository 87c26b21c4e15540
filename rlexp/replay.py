"""Uniform replay memories, preallocated on the run's device; :func:`make_replay` picks one.

- :class:`ReplayBuffer`, for vector (and discrete) observations: one float32 table.
- :class:`FrameReplayBuffer`, for pixel observations (uint8 frames, bool planes): each frame
  stored once, in its own dtype; stacked observations are rebuilt when sampled.

In the float32 table, each row is one transition, packed as ``[obs | next_obs | action | reward
| terminated | truncated]``. Packing makes sampling one gather (one op) instead of six, which
matters for the small networks RL uses, whose cost is the number of torch ops, not their
arithmetic. The memory is exactly ``capacity * (2 * obs_size + 4) * 4`` bytes, allocated up
front. Discrete observations and actions are stored as float32, exact for values below 2**24.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium import spaces


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

    def describe(self) -> str:
        return f"{self.nbytes / 1e9:.3g} GB for {self.capacity} transitions"

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


#: Bytes a pixel transition must keep besides its new frame: action (1), reward (4), two flags.
TRANSITION_EXTRA_BYTES = 1 + 4 + 2


@dataclass
class _Stream:
    """One env's frames in the memory: the rows of its current stack, and the last next
    observation it added (None after an episode ended)."""

    tail: list[int] = field(default_factory=list)
    last: np.ndarray | None = None


class FrameReplayBuffer:
    """Pixel transitions, each new frame stored once, in the observations' own dtype.

    An env step adds one row: the newest frame of its next observation, with the action, reward
    and flags. A stacked observation ``[frame_stack, ...]`` (gymnasium's FrameStackObservation)
    is the frames of its env's last ``frame_stack`` rows, so an observation and its successor
    share all but one frame; with ``frame_stack=1`` (MinAtar) the frame is the whole observation.
    Each row records the absolute row numbers of the ``frame_stack + 1`` frames its transition
    spans (observation, then the next observation's newest), so sampling is one gather.

    Where an env's observation does not continue its last next observation (an episode start, a
    resumed run's new episodes), a new *segment* starts with the observation's own frames, as
    rows that hold no transition. At an episode start the env repeats its first frame (or pads
    with zeros); the leading copies are stored once and the stack clamps to the segment's first
    row, which rebuilds either padding exactly. So stacks never mix two episodes or two envs,
    across the ring's wrap-around too: a row whose oldest frame was overwritten is not sampled.

    Memory: ``capacity`` rows of one frame plus 16 bytes of action, reward and flags and
    ``8 * (frame_stack + 1)`` bytes of row numbers; ``nbytes`` says how much exactly.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype, frame_stack: int,
                 device: torch.device | str, seed: int = 0):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.stack = frame_stack
        self.obs_shape = tuple(obs_shape)
        if frame_stack > 1 and self.obs_shape[0] != frame_stack:
            raise ValueError(f"observations {self.obs_shape} do not stack {frame_stack} frames "
                             "along their first axis")
        self.frame_shape = self.obs_shape[1:] if frame_stack > 1 else self.obs_shape
        self.device = torch.device(device)
        dtype = torch.from_numpy(np.zeros(0, dtype=obs_dtype)).dtype
        self.frames = torch.zeros((capacity, *self.frame_shape), dtype=dtype, device=self.device)
        #: Absolute row numbers of each transition's frames, oldest first; -1: no transition.
        self.refs = torch.full((capacity, frame_stack + 1), -1, dtype=torch.int64,
                               device=self.device)
        #: action, reward, terminated, truncated (one gather samples all four).
        self.scalars = torch.zeros((capacity, 4), dtype=torch.float32, device=self.device)
        on_cpu = self.device.type == "cpu"  # numpy views: a row write costs ~1 us, not ~10
        self._frames = self.frames.numpy() if on_cpu else self.frames
        self._refs = self.refs.numpy() if on_cpu else self.refs
        self._scalars = self.scalars.numpy() if on_cpu else self.scalars
        self.written = 0  # rows written so far (absolute row number of the next one)
        self.transitions = 0  # rows in the ring that hold a transition
        self.streams: list[_Stream] = []
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.transitions

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.frames, self.refs, self.scalars))

    def describe(self) -> str:
        ratio = self.nbytes / self.capacity / self.raw_bytes_per_transition
        return (f"{self.nbytes / 1e9:.3g} GB for {self.capacity} transitions, {ratio:.3f}x "
                "their raw bytes (each frame stored once)")

    @property
    def raw_bytes_per_transition(self) -> int:
        """What a transition must keep: one new frame, its action, reward and two flags."""
        return self.frames[0].numel() * self.frames.element_size() + TRANSITION_EXTRA_BYTES

    def _write(self, frame: np.ndarray, refs: list[int] | None, scalars=None) -> int:
        row = self.written % self.capacity
        if self.written >= self.capacity and self._refs[row, 0] >= 0:
            self.transitions -= 1
        on_cpu = self._frames is not self.frames
        self._frames[row] = frame if on_cpu else torch.as_tensor(frame, device=self.device)
        if refs is None:
            self._refs[row] = -1
        else:
            self._refs[row] = refs if on_cpu else torch.tensor(refs, device=self.device)
            self._scalars[row] = scalars if on_cpu else torch.tensor(scalars, device=self.device)
            self.transitions += 1
        self.written += 1
        return self.written - 1

    def _open_segment(self, stream: _Stream, obs: np.ndarray) -> None:
        """Store ``obs``'s frames as a new segment's first rows (leading repeats once)."""
        frames = list(obs) if self.stack > 1 else [obs]
        first = next((j for j in range(1, len(frames)) if not np.array_equal(frames[j],
                                                                             frames[0])),
                     len(frames))
        rows = [self._write(frame, None) for frame in frames[first - 1:]]
        stream.tail = [rows[0]] * (self.stack - len(rows)) + rows

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Append a batch of transitions (numpy arrays, one row per env, always as many)."""
        n = len(obs)
        if not self.streams:
            self.streams = [_Stream() for _ in range(n)]
        elif n != len(self.streams):
            raise ValueError(f"transitions of {n} envs added to a memory of {len(self.streams)}")
        for i, stream in enumerate(self.streams):
            o, nxt = obs[i], next_obs[i]
            if stream.last is None or not np.array_equal(o, stream.last):
                self._open_segment(stream, o)
            if self.stack > 1 and not np.array_equal(nxt[:-1], o[1:]):
                raise ValueError("a next observation does not continue its observation's frame "
                                 f"stack (frame_stack={self.stack})")
            ended = bool(terminated[i] or truncated[i])
            row = self._write(nxt[-1] if self.stack > 1 else nxt, [*stream.tail, self.written],
                              (action[i], reward[i], terminated[i], truncated[i]))
            stream.tail = [*stream.tail[1:], row]
            # After an episode's end the next observation is a reset: a new segment.
            stream.last = None if ended else nxt.copy()

    def sample(self, batch_size: int) -> ReplaySample:
        """A batch drawn uniformly with replacement from the stored transitions."""
        if self.transitions == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        oldest = max(self.written - self.capacity, 0)
        idx = torch.randint(oldest, self.written, (batch_size,), device=self.device,
                            generator=self.generator)
        for _ in range(1000):  # redraw rows without a transition or with a frame overwritten
            bad = self.refs[idx % self.capacity, 0] < oldest
            if not bad.any():
                break
            idx[bad] = torch.randint(oldest, self.written, (int(bad.sum()),),
                                     device=self.device, generator=self.generator)
        else:
            raise ValueError(f"no complete transition in a replay memory of {self.capacity} "
                             "rows: make agent.buffer_size larger")
        rows = idx % self.capacity
        frames = self.frames[self.refs[rows] % self.capacity]  # [batch, stack + 1, ...]
        scalars = self.scalars[rows]
        if self.stack > 1:
            obs, next_obs = frames[:, :-1], frames[:, 1:]
        else:
            obs, next_obs = frames[:, 0], frames[:, 1]
        return ReplaySample(obs=obs, action=scalars[:, 0].long(), reward=scalars[:, 1],
                            next_obs=next_obs, terminated=scalars[:, 2], truncated=scalars[:, 3])

    def state_dict(self) -> dict:
        filled = min(self.written, self.capacity)
        return {"frames": self.frames[:filled].clone(), "refs": self.refs[:filled].clone(),
                "scalars": self.scalars[:filled].clone(), "written": self.written,
                "transitions": self.transitions,
                "tails": [list(s.tail) for s in self.streams],
                "last": [None if s.last is None else torch.from_numpy(s.last.copy())
                         for s in self.streams],
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        filled = len(state["refs"])
        for name in ("frames", "refs", "scalars"):
            getattr(self, name)[:filled] = state[name].to(self.device)
        self.written, self.transitions = int(state["written"]), int(state["transitions"])
        self.streams = [_Stream(list(tail), None if last is None else last.numpy().copy())
                        for tail, last in zip(state["tails"], state["last"], strict=True)]
        self.generator.set_state(state["generator"])


def make_replay(capacity: int, observation_space: spaces.Space, frame_stack: int,
                device: torch.device | str, seed: int = 0
                ) -> ReplayBuffer | FrameReplayBuffer:
    """The memory for ``observation_space``: frames for pixels (uint8 or bool Box
    observations, kept in their dtype), the float32 table for everything else."""
    if isinstance(observation_space, spaces.Box) and observation_space.dtype in (np.uint8,
                                                                                 np.bool_):
        return FrameReplayBuffer(capacity, observation_space.shape, observation_space.dtype,
                                 frame_stack, device, seed)
    return ReplayBuffer(capacity, observation_space.shape, device, seed)
