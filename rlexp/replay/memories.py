"""Replay memories, preallocated on the run's device (:func:`rlexp.replay.make_replay` picks one).

- :class:`ReplayBuffer`, for vector (and discrete) observations: one float32 table.
- :class:`FrameReplayBuffer`, for pixel observations (uint8 frames, bool planes): each frame
  stored once, in its own dtype; stacked observations are rebuilt when sampled.

Both keep their per-transition values in a :class:`PackedTable`: float32 columns declared once
by name and shape, packed side by side into one tensor, so that sampling them is one gather (one
op) instead of one per column; for the small networks RL uses, the cost is the number of torch
ops, not their arithmetic. Discrete observations and actions are stored as float32, exact for
values below 2**24.

Sampling is uniform, or proportional to priorities (:class:`PrioritizedSampler`). A memory made
for ``n_step > 1`` returns n-step transitions: the discounted rewards of up to ``n_step`` steps of
one env, stopping at the episode's end (a terminated end does not bootstrap; a time limit's
truncation bootstraps from its final observation). The float32 table stores them as they
complete (no extra op when sampling); the frame memory rebuilds them when sampling, by following
each row to its env's next transition, and bootstraps its newest transitions after the steps
stored so far.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rlexp.replay.prioritized import PrioritizedSampler


@dataclass(frozen=True)
class Column:
    """One field of every stored transition: its name and the shape of one value."""

    name: str
    shape: tuple[int, ...] = ()

    @property
    def width(self) -> int:
        return math.prod(self.shape)


#: The scalar columns every memory stores with each transition.
SCALARS = (Column("action"), Column("reward"), Column("terminated"), Column("truncated"))


class PackedTable:
    """``capacity`` rows of float32 columns packed side by side in one tensor.

    Rows are written through a numpy view of the same memory on the CPU (a numpy copy costs a
    microsecond, a torch indexing op ten) and read with one gather, as views per column.
    """

    def __init__(self, capacity: int, columns: tuple[Column, ...], device: torch.device):
        self.slices: dict[str, slice] = {}
        start = 0
        for column in columns:
            self.slices[column.name] = slice(start, start + column.width)
            start += column.width
        self.width = start
        self.capacity = capacity
        self.device = device
        self.data = torch.zeros((capacity, self.width), dtype=torch.float32, device=device)
        self._rows = self.data.numpy() if device.type == "cpu" else None
        #: How ``pack_rows`` fills a row: (its slice, the values' index or slice), consecutive
        #: scalar columns in one assignment (each costs about a microsecond).
        self._row_parts: list[tuple[slice, int | slice]] = []
        for k, column in enumerate(columns):
            where = self.slices[column.name]
            if column.shape != ():
                self._row_parts.append((where, k))
            elif k and columns[k - 1].shape == ():  # extends the run of scalars before it
                run, values = self._row_parts[-1]
                self._row_parts[-1] = (slice(run.start, where.stop), slice(values.start, k + 1))
            else:
                self._row_parts.append((where, slice(k, k + 1)))
        #: Per column, its values out of gathered rows, in as few ops as it can (each op costs
        #: about a microsecond here, a sample's arithmetic less).
        self._readers = {c.name: self._reader(c) for c in columns}

    def _reader(self, column: Column) -> Callable[[torch.Tensor], torch.Tensor]:
        where = self.slices[column.name]
        if column.shape == ():
            return lambda table: table.select(-1, where.start)
        if len(column.shape) == 1:
            return lambda table: table[..., where]
        return lambda table: table[..., where].unflatten(-1, column.shape)

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def pack(self, **values) -> np.ndarray:
        """Rows ``[n, width]`` from one array per column (``n`` values each)."""
        n = len(next(iter(values.values())))
        rows = np.empty((n, self.width), dtype=np.float32)
        for name, value in values.items():
            rows[:, self.slices[name]] = np.asarray(value).reshape(n, -1)
        return rows

    def pack_rows(self, values: list[tuple]) -> np.ndarray:
        """Rows ``[n, width]`` from one tuple of values per row, in the columns' order."""
        rows = np.empty((len(values), self.width), dtype=np.float32)
        for row, row_values in zip(rows, values, strict=True):
            for where, part in self._row_parts:
                row[where] = row_values[part]
        return rows

    def write(self, start: int, rows: np.ndarray) -> None:
        """``rows`` at ring positions ``start, start + 1, ...``, wrapping around the end."""
        capacity, n = self.capacity, len(rows)
        target = self._rows
        if target is None:  # on an accelerator: one host-to-device copy
            target, rows = self.data, torch.from_numpy(rows).to(self.device)
        first = min(n, capacity - start)
        target[start:start + first] = rows[:first]
        if first < n:  # wrapped around
            target[: n - first] = rows[first:]

    def read(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The columns of ``rows`` (one gather), each ``[*rows.shape, *shape]``."""
        return self.columns(self.data[rows])

    def columns(self, gathered: torch.Tensor) -> dict[str, torch.Tensor]:
        """The columns of rows gathered from this table or one laid out like it
        (``[..., width]``), as views."""
        return {name: read(gathered) for name, read in self._readers.items()}

    def place(self, data: torch.Tensor) -> None:
        """Keep the rows in ``data`` from now on (a ``[capacity, width]`` float32 tensor on
        this table's device: a member's part of a population's table), with what they hold."""
        data.copy_(self.data)
        self.data = data
        self._rows = data.numpy() if self.device.type == "cpu" else None


@dataclass
class ReplaySample:
    """A sampled batch, as tensors on the memory's device.

    ``reward`` is the discounted sum of the ``n`` rewards of an ``n``-step transition (the
    reward itself for ``n=1``) and ``next_obs`` the observation it bootstraps from;
    ``discount`` multiplies the bootstrap value: ``gamma**k`` after ``k`` steps, 0 when the
    episode terminated within them. A target is ``reward + discount * V(next_obs)``.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    discount: torch.Tensor
    #: Absolute row numbers of the sampled transitions (for priority updates).
    index: torch.Tensor
    #: Importance-sampling weights (prioritized sampling), None for uniform sampling.
    weight: torch.Tensor | None = None

    @classmethod
    def of(cls, t: dict[str, torch.Tensor], rows: torch.Tensor, weight: torch.Tensor | None
           ) -> ReplaySample:
        """The sample of ``rows`` from a memory's transitions ``t`` (see
        ``ReplayMemory._transitions``)."""
        return cls(obs=t["obs"], action=t["action"].long(), reward=t["reward"],
                   next_obs=t["next_obs"], terminated=t["terminated"],
                   truncated=t["truncated"], discount=t["discount"], index=rows, weight=weight)


class ReplayMemory:
    """What both memories share: drawing rows, uniformly or by priority, into sampled batches.

    Rows are named by their ring position (0 .. capacity - 1) in sampled batches; inside,
    rows are also numbered by when they were written (0, 1, ...: absolute row numbers), and
    absolute row ``i`` lives at position ``i % capacity`` until row ``i + capacity`` replaces it.
    """

    def __init__(self, capacity: int, device: torch.device | str, seed: int, n_step: int,
                 gamma: float):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.n_step, self.gamma = n_step, gamma
        self.written = 0  # rows written so far (absolute row number of the next one)
        #: Transitions given to ``add`` so far (some may wait for their n-step return, or be
        #: overwritten): the same count for every member of a population.
        self.added = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        #: Draws rows in proportion to priorities when set (see ``prioritize``), else uniform.
        self.sampler: PrioritizedSampler | None = None

    def prioritize(self, alpha: float, epsilon: float, seed: int) -> None:
        """Sample in proportion to priorities (Schaul et al. 2016); set before the first add."""
        self.sampler = PrioritizedSampler(self.capacity, alpha, epsilon, seed)

    # What each memory provides.
    def __len__(self) -> int:
        """Transitions that can be sampled."""
        raise NotImplementedError

    def _filled(self) -> int:
        """Ring positions written so far."""
        return min(self.written, self.capacity)

    def _invalid(self, rows: torch.Tensor) -> torch.Tensor | None:
        """Which rows hold no transition to sample (None: every filled row holds one)."""
        return None

    def _transitions(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sampled transitions' fields: obs, next_obs, action, reward, discount,
        terminated, truncated."""
        raise NotImplementedError

    def draw(self, batch_size: int, beta: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ring positions of a sample's ``batch_size`` transitions (see ``sample``), and
        their importance-sampling weights (None for uniform sampling)."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")

        def pick(k: int) -> torch.Tensor:
            if self.sampler is not None:
                return self.sampler.draw(k, self.device)
            return torch.randint(self._filled(), (k,), device=self.device,
                                 generator=self.generator)

        rows = pick(batch_size)
        for _ in range(1000):  # redraw rows without a transition (a pixel memory has a few)
            bad = self._invalid(rows)
            if bad is None or not bad.any():
                break
            rows[bad] = pick(int(bad.sum()))
        else:
            raise ValueError(f"no complete transition in a replay memory of {self.capacity} "
                             "rows: make agent.buffer_size larger")
        weight = None if self.sampler is None else self.sampler.weights(rows, beta)
        return rows, weight

    def sample(self, batch_size: int, beta: float = 1.0, member_axis: bool = False
               ) -> ReplaySample:
        """A batch of transitions drawn with replacement: uniformly, or in proportion to their
        priorities with importance-sampling weights of exponent ``beta``. ``member_axis``:
        shaped ``[1, batch_size, ...]``, a population of one's batch (read so, not reshaped)."""
        rows, weight = self.draw(batch_size, beta)
        if member_axis:
            rows = rows.unsqueeze(0)
            weight = None if weight is None else weight.unsqueeze(0)
        return ReplaySample.of(self._transitions(rows), rows, weight)

    def _sampler_state(self) -> dict:
        return {} if self.sampler is None else {"sampler": self.sampler.state_dict()}

    def _load_sampler_state(self, state: dict) -> None:
        if self.sampler is not None and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])


class ReplayBuffer(ReplayMemory):
    """Fixed-capacity ring buffer of transitions; the oldest are overwritten when full.

    Each row is one transition: the columns ``obs``, ``next_obs`` (the observation it
    bootstraps from), ``discount`` (of that bootstrap) and the scalars, packed in one float32
    table of exactly ``capacity * (2 * obs_size + 5) * 4`` bytes, allocated up front. With
    ``n_step > 1`` each env's last steps wait (``pending``) until their n-step transition is
    complete: ``n_step`` steps later, or at the episode's end.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], device: torch.device | str,
                 seed: int = 0, n_step: int = 1, gamma: float = 0.99):
        super().__init__(capacity, device, seed, n_step, gamma)
        self.obs_shape = tuple(obs_shape)
        columns = (Column("obs", self.obs_shape), Column("next_obs", self.obs_shape),
                   Column("discount"), *SCALARS)
        self.table = PackedTable(capacity, columns, self.device)
        #: Per env, the (obs, action, reward) of its steps whose n-step transition is not
        #: complete yet (n_step > 1 only).
        self.pending: list[deque] = []
        self._powers = [gamma ** k for k in range(n_step + 1)]  # gamma**k, k = 0 .. n_step
        self._flatten = len(self.obs_shape) > 1

    def __len__(self) -> int:
        return self._filled()

    @property
    def pos(self) -> int:
        """The ring position the next row goes to."""
        return self.written % self.capacity

    @property
    def nbytes(self) -> int:
        return self.table.nbytes

    def describe(self) -> str:
        return f"{self.nbytes / 1e9:.3g} GB for {self.capacity} transitions"

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Append a batch of transitions (numpy arrays, one row per env, always as many)."""
        self.added += len(obs)
        if self._flatten:  # the table's obs columns are flat: [n, *shape] -> [n, size] views
            obs, next_obs = obs.reshape(len(obs), -1), next_obs.reshape(len(next_obs), -1)
        if self.n_step == 1:
            discount = self.gamma * (1.0 - np.asarray(terminated, dtype=np.float32))
            self._write(self.table.pack(obs=obs, next_obs=next_obs, action=action,
                                        reward=reward, discount=discount,
                                        terminated=terminated, truncated=truncated))
            return
        if not self.pending:
            self.pending = [deque() for _ in range(len(obs))]
        elif len(obs) != len(self.pending):
            raise ValueError(f"transitions of {len(obs)} envs added to a memory of "
                             f"{len(self.pending)}")
        done = []  # rows in the table's column order (obs, next_obs, discount, SCALARS)
        for i, steps in enumerate(self.pending):
            steps.append((np.array(obs[i], dtype=np.float32), action[i], float(reward[i])))
            ended = bool(terminated[i] or truncated[i])
            while steps and (len(steps) == self.n_step or ended):
                total = sum(p * r for p, (_, _, r) in zip(self._powers, steps, strict=False))
                discount = 0.0 if terminated[i] else self._powers[len(steps)]
                first, first_action, _ = steps.popleft()
                done.append((first, next_obs[i], discount, first_action, total,
                             ended and terminated[i], ended and truncated[i]))
                if not ended:
                    break
        if done:
            self._write(self.table.pack_rows(done))

    def _write(self, rows: np.ndarray) -> None:
        n = len(rows)
        skip = max(n - self.capacity, 0)  # only the newest `capacity` rows can survive
        start = (self.written + skip) % self.capacity
        self.table.write(start, rows[skip:])
        if self.sampler is not None:
            self.sampler.add(start, np.ones(n - skip, dtype=bool))
        self.written += n

    def _transitions(self, rows):
        return self.table.read(rows)  # one gather

    def state_dict(self) -> dict:
        pending = [[(torch.from_numpy(o), int(a), r) for o, a, r in steps]
                   for steps in self.pending]
        return {"table": self.table.data[: len(self)].clone(), "written": self.written,
                "added": self.added,
                "pending": pending, "generator": self.generator.get_state(),
                **self._sampler_state()}

    def load_state_dict(self, state: dict) -> None:
        size = len(state["table"])
        self.table.data[:size] = state["table"].to(self.device)
        self.written = int(state["written"])
        self.added = int(state.get("added", self.written))
        self.pending = [deque((o.numpy(), a, r) for o, a, r in steps)
                        for steps in state.get("pending", [])]
        self.generator.set_state(state["generator"])
        self._load_sampler_state(state)


#: Bytes a pixel transition must keep besides its new frame: action (1), reward (4), two flags.
TRANSITION_EXTRA_BYTES = 1 + 4 + 2


@dataclass
class _Stream:
    """One env's frames in the memory: the rows of its current stack, and the last next
    observation it added (None after an episode ended)."""

    tail: list[int] = field(default_factory=list)
    last: np.ndarray | None = None
    #: The row of the env's latest transition while its episode goes on.
    previous: int | None = None


class FrameReplayBuffer(ReplayMemory):
    """Pixel transitions, each new frame stored once, in the observations' own dtype.

    An env step adds one row: the newest frame of its next observation, with the action, reward
    and flags. A stacked observation ``[frame_stack, ...]`` (gymnasium's FrameStackObservation)
    is the frames of its env's last ``frame_stack`` rows, so an observation and its successor
    share all but one frame; with ``frame_stack=1`` (MinAtar) the frame is the whole observation.
    Each row records the absolute row numbers of the ``frame_stack + 1`` frames its transition
    spans (observation, then the next observation's newest), so sampling is one gather; and the
    row of its env's next transition (``successor``, for n-step returns).

    Where an env's observation does not continue its last next observation (an episode start, a
    resumed run's new episodes), a new *segment* starts with the observation's own frames, as
    rows that hold no transition. At an episode start the env repeats its first frame (or pads
    with zeros); the leading copies are stored once and the stack clamps to the segment's first
    row, which rebuilds either padding exactly. So stacks never mix two episodes or two envs,
    across the ring's wrap-around too: a row whose oldest frame was overwritten is not sampled.

    Memory: ``capacity`` rows of one frame plus 16 bytes of action, reward and flags and
    ``8 * (frame_stack + 2)`` bytes of row numbers; ``nbytes`` says how much exactly.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype, frame_stack: int,
                 device: torch.device | str, seed: int = 0, n_step: int = 1,
                 gamma: float = 0.99):
        super().__init__(capacity, device, seed, n_step, gamma)
        self.stack = frame_stack
        self.obs_shape = tuple(obs_shape)
        if frame_stack > 1 and self.obs_shape[0] != frame_stack:
            raise ValueError(f"observations {self.obs_shape} do not stack {frame_stack} frames "
                             "along their first axis")
        self.frame_shape = self.obs_shape[1:] if frame_stack > 1 else self.obs_shape
        dtype = torch.from_numpy(np.zeros(0, dtype=obs_dtype)).dtype
        self.frames = torch.zeros((capacity, *self.frame_shape), dtype=dtype, device=self.device)
        #: Absolute row numbers of each transition's frames, oldest first, then of its env's
        #: next transition (-1: none yet); -1 first: the row holds no transition.
        self.refs = torch.full((capacity, frame_stack + 2), -1, dtype=torch.int64,
                               device=self.device)
        self.scalars = PackedTable(capacity, SCALARS, self.device)
        on_cpu = self.device.type == "cpu"  # numpy views: a row write costs ~1 us, not ~10
        self._frames = self.frames.numpy() if on_cpu else self.frames
        self._refs = self.refs.numpy() if on_cpu else self.refs
        self.transitions = 0  # rows in the ring that hold a transition
        self.streams: list[_Stream] = []

    def __len__(self) -> int:
        return self.transitions

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.frames, self.refs)) + \
            self.scalars.nbytes

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
        refs = [-1] * (self.stack + 2) if refs is None else [*refs, -1]
        self._refs[row] = refs if on_cpu else torch.tensor(refs, device=self.device)
        if refs[0] >= 0:
            self.scalars.write(row, np.asarray([scalars], dtype=np.float32))
            self.transitions += 1
        if self.sampler is not None:
            self.sampler.add(row, np.array([refs[0] >= 0]))
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
        stream.previous = None

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Append a batch of transitions (numpy arrays, one row per env, always as many)."""
        n = len(obs)
        self.added += n
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
            if stream.previous is not None:  # the env's previous transition leads to this one
                self._refs[stream.previous % self.capacity, -1] = row
            stream.tail = [*stream.tail[1:], row]
            # After an episode's end the next observation is a reset: a new segment.
            stream.last = None if ended else nxt.copy()
            stream.previous = None if ended else row

    def _oldest(self) -> int:
        return max(self.written - self.capacity, 0)

    def _invalid(self, rows):
        # No transition (-1), or its oldest frame was overwritten.
        return self.refs[rows, 0] < self._oldest()

    def _transitions(self, rows):
        if rows.dim() > 1:  # the frame logic below works on a flat batch
            flat = self._transitions(rows.reshape(-1))
            return {k: v.view(*rows.shape, *v.shape[1:]) for k, v in flat.items()}
        scalars = self.scalars.read(rows)
        refs = self.refs[rows, :-1] % self.capacity
        frames = self.frames[refs]  # [batch, stack + 1, ...]: one gather for n_step 1
        if self.n_step == 1:
            reward, discount = scalars["reward"], self.gamma * (1.0 - scalars["terminated"])
        else:
            last, reward, discount = self._n_step(rows, scalars)
            frames = torch.cat([frames[:, :-1],
                                self.frames[self.refs[last, :-1] % self.capacity]], dim=1)
        if self.stack > 1:
            obs, next_obs = frames[:, :self.stack], frames[:, -self.stack:]
        else:
            obs, next_obs = frames[:, 0], frames[:, -1]
        return {**scalars, "obs": obs, "next_obs": next_obs, "reward": reward,
                "discount": discount}

    def _n_step(self, rows: torch.Tensor, first: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For n-step transitions from ``rows`` (whose scalars are ``first``): the row whose
        next observation each bootstraps from, the discounted reward sums and the discounts of
        the bootstrap value. Each step follows a row to its env's next transition."""
        gamma = self.gamma
        reward = first["reward"].clone()
        scale = torch.full_like(reward, gamma)  # gamma**k after k steps
        terminal = first["terminated"] > 0
        going = ~(terminal | (first["truncated"] > 0))
        last = rows
        for _ in range(self.n_step - 1):
            following = self.refs[last, -1]
            going = going & (following >= 0)
            last = torch.where(going, following % self.capacity, last)
            step = self.scalars.read(last)
            reward = reward + torch.where(going, scale * step["reward"], 0.0)
            scale = torch.where(going, scale * gamma, scale)
            ends = step["terminated"] > 0
            terminal = torch.where(going, ends, terminal)
            going = going & ~(ends | (step["truncated"] > 0))
        return last, reward, torch.where(terminal, 0.0, scale)

    def state_dict(self) -> dict:
        filled = self._filled()
        return {"frames": self.frames[:filled].clone(), "refs": self.refs[:filled].clone(),
                "scalars": self.scalars.data[:filled].clone(), "written": self.written,
                "added": self.added,
                "transitions": self.transitions,
                "tails": [list(s.tail) for s in self.streams],
                "previous": [-1 if s.previous is None else s.previous for s in self.streams],
                "last": [None if s.last is None else torch.from_numpy(s.last.copy())
                         for s in self.streams],
                "generator": self.generator.get_state(), **self._sampler_state()}

    def load_state_dict(self, state: dict) -> None:
        filled = len(state["refs"])
        self.frames[:filled] = state["frames"].to(self.device)
        self.refs[:filled] = state["refs"].to(self.device)
        self.scalars.data[:filled] = state["scalars"].to(self.device)
        self.written, self.transitions = int(state["written"]), int(state["transitions"])
        self.added = int(state.get("added", self.transitions))
        self.streams = [_Stream(list(tail), None if last is None else last.numpy().copy(),
                                None if previous < 0 else int(previous))
                        for tail, last, previous in zip(state["tails"], state["last"],
                                                        state["previous"], strict=True)]
        self.generator.set_state(state["generator"])
        self._load_sampler_state(state)
