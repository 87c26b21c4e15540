"""The config every env option builds on (``env=gym``: any registered gymnasium id), and how
an env config says which env to make. Each env family's own config subclasses it beside its
env (``rlexp/envs/toy.py``, ``atari.py``, ``minatar.py``) and is discovered as agents are:
:data:`rlexp.envs.ENVS`. A value that is not allowed raises ValueError naming the key
(:func:`rlexp.config.validate` reports it in one line)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlexp.envs.boundary import CHANNELS, resolve_wrapper


@dataclass
class EnvConfig:
    """Any gymnasium env with a Discrete action space (``env=gym env.id=...``)."""

    #: Which env schema this is: gym (any registered id) or toy (rlexp's toy MDP).
    name: str = "gym"
    #: The gymnasium id, e.g. CartPole-v1; ``module:Id`` imports ``module`` first.
    id: str = "???"  # omegaconf's MISSING: a value the YAML or command line must give
    #: Extra keyword arguments for ``gymnasium.make``.
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Truncate episodes after this many steps; null keeps the env's registered limit.
    max_steps: int | None = None
    #: Envs stepped together (gymnasium's synchronous vector env).
    num_envs: int = 1
    #: The mean return at which the env counts as solved (gymnasium's reward_threshold, e.g.
    #: 475 for CartPole-v1); null: none. Sweep reports count the runs that reach it.
    solved_return: float | None = None
    #: gymnasium wrappers applied in order after ``gymnasium.make`` (the first innermost), in
    #: training and evaluation alike: each an import path
    #: (``gymnasium.wrappers.FlattenObservation``) or a mapping with ``_target_`` and keyword
    #: arguments (``{_target_: gymnasium.wrappers.ResizeObservation, shape: [64, 64]}``).
    wrappers: list[Any] = field(default_factory=list)
    #: Where an image observation's channels are: first ([C, H, W]), last ([H, W, C]), none
    #: (the observation is not an image: an MLP reads it); null: a 2-D or 3-D uint8 or bool
    #: observation is an image with its channels on its shorter end axis (rlexp.envs.boundary).
    channels: str | None = None
    #: The env config class as an import path, for an env from the user's own package (an
    #: EnvConfig subclass, whose fields and make_id/make_kwargs say how to make its env; its
    #: YAML sets it); null: rlexp's env schema named ``name``.
    _target_: str | None = None

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"env.max_steps={self.max_steps} must be positive or null")
        if self.num_envs <= 0:
            raise ValueError(f"env.num_envs={self.num_envs} must be positive")
        if self.channels is not None and self.channels not in CHANNELS:
            raise ValueError(f"env.channels={self.channels!r} is not one of "
                              f"{', '.join(CHANNELS)} or null (auto)")
        for item in self.wrappers:
            resolve_wrapper(item)  # its ValueError names the item and what is allowed

    @property
    def make_id(self) -> str:
        """The id given to ``gymnasium.make``."""
        return self.id

    @property
    def frame_stack(self) -> int:
        """How many frames each observation stacks along its first axis (1: none); a replay
        memory stores each frame once."""
        return 1

    def make_kwargs(self, evaluation: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make(self.make_id, ...)``: ``kwargs``, the time
        limit, and every field an env's own schema adds (``env=toy``'s variant, ...), so that a
        field declared there reaches the env. ``evaluation``: for the greedy-evaluation envs
        (which may differ, e.g. Atari's full games)."""
        kwargs = dict(self.kwargs)
        if self.max_steps is not None:
            kwargs["max_episode_steps"] = self.max_steps
        common = {f.name for f in dataclasses.fields(EnvConfig)}
        return {**kwargs, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                             if f.name not in common}}
