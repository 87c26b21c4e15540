"""The env boundary: what rlexp's agents read of any gymnasium env, and the conversions that
make a third-party env's spaces into those, once per step at the env (never per sample).

Observations the agents take, after :func:`adapt`:

- ``Box`` of float32: features of any rank (an MLP flattens them);
- ``Box`` of uint8 or bool: an image when it is 2-D or 3-D (see :func:`image_channels`), kept
  in its dtype (stored at a byte a value; scaled to [0, 1] inside the network), else features;
- ``Discrete(n)``: a state, one-hot encoded by the network.

So :func:`adapt` casts other Box dtypes (float16/64, integers) to float32 (a scalar Box
becomes a vector of one), shifts a ``Discrete(n, start=k)`` state to ``0 .. n-1``, encodes
``MultiDiscrete`` one-hot and ``MultiBinary`` as float32, gives a 2-D image a channel axis,
and maps a ``Discrete(n, start=k)`` action back to the env's numbering. Any other space is
refused in one line that names the fix. Envs whose spaces need nothing (CartPole, Atari,
MinAtar, the toy env) get no wrapper and cost nothing more.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import DtypeObservation, ReshapeObservation, TransformAction

from rlexp.locate import locate

#: ``env.channels``: where an image's channels are; none: the observation is not an image.
CHANNELS = ("first", "last", "none")
_IMAGE_DTYPES = (np.uint8, np.bool_)


class EnvSpaceError(ValueError):
    """An env whose observation or action space rlexp's agents cannot take."""


def _is_image_dtype(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and space.dtype in _IMAGE_DTYPES


def image_channels(space: spaces.Space, channels: str | None) -> str | None:
    """Where the channels of an (adapted) image observation are, ``first`` (``[C, H, W]``) or
    ``last`` (``[H, W, C]``); None when the observation is not an image.

    ``channels`` is ``env.channels``: ``first``, ``last``, ``none`` (not an image), or None
    (auto): a 3-D uint8 or bool Box is an image whose channels are on its shorter end axis
    (equal ends: last, gymnasium's ``[H, W, C]`` convention; an Atari stack ``[4, 84, 84]`` is
    channels-first, MinAtar's ``[10, 10, C]`` channels-last)."""
    if channels == "none" or not _is_image_dtype(space) or len(space.shape) != 3:
        return None
    if channels is not None:
        return channels
    return "first" if space.shape[0] < space.shape[-1] else "last"


class OneHotMultiDiscrete(gym.ObservationWrapper):
    """``MultiDiscrete(nvec, start)`` observations as the concatenation of one one-hot vector
    per entry: float32 ``[sum(nvec)]``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.start = space.start.reshape(-1).astype(np.int64)
        nvec = space.nvec.reshape(-1).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        self.observation_space = spaces.Box(0.0, 1.0, (int(nvec.sum()),), np.float32)

    def observation(self, observation):
        encoded = np.zeros(self.observation_space.shape, dtype=np.float32)
        encoded[self.offsets + np.asarray(observation).reshape(-1) - self.start] = 1.0
        return encoded


class ShiftDiscrete(gym.ObservationWrapper):
    """``Discrete(n, start=k)`` states as ``0 .. n-1``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.start = int(env.observation_space.start)
        self.observation_space = spaces.Discrete(int(env.observation_space.n))

    def observation(self, observation):
        return int(observation) - self.start


def _refuse_observations(env_id: str, space: spaces.Space) -> EnvSpaceError:
    fix = ("flatten it with env.wrappers=[gymnasium.wrappers.FlattenObservation] or the "
           "env's own wrapper" if isinstance(space, spaces.Dict | spaces.Tuple) else
           "convert it with a wrapper in env.wrappers")
    return EnvSpaceError(
        f"env.id={env_id!r} has observation space {space}; rlexp's agents take Box, Discrete, "
        f"MultiBinary or MultiDiscrete observations: {fix}")


def adapt(env: gym.Env, env_id: str, channels: str | None) -> gym.Env:
    """``env``, wrapped where its spaces need it so that rlexp's agents can take it (see the
    module's doc); raises :class:`EnvSpaceError` for spaces they cannot."""
    action = env.action_space
    if not isinstance(action, spaces.Discrete):
        raise EnvSpaceError(f"env.id={env_id!r} has action space {action}; rlexp's agents "
                            "choose among discrete actions: Discrete(n) only")
    if int(action.start) != 0:
        start = int(action.start)
        env = TransformAction(env, lambda a: a + start, spaces.Discrete(int(action.n)))
    space = env.observation_space
    if isinstance(space, spaces.Discrete):
        return ShiftDiscrete(env) if int(space.start) != 0 else env
    if isinstance(space, spaces.MultiDiscrete):
        return OneHotMultiDiscrete(env)
    if isinstance(space, spaces.MultiBinary):
        return _float32(env)
    if not isinstance(space, spaces.Box):
        raise _refuse_observations(env_id, space)
    if space.shape == ():  # one number: a vector of one feature
        env = ReshapeObservation(env, (1,))
        space = env.observation_space
    if _is_image_dtype(space) and channels != "none" and len(space.shape) == 2:
        # A single-channel image [H, W]: given its channel axis where env.channels says.
        shape = (*space.shape, 1) if channels == "last" else (1, *space.shape)
        return ReshapeObservation(env, shape)
    if _is_image_dtype(space) or space.dtype == np.float32:
        return env
    return _float32(env)


def _float32(env: gym.Env) -> gym.Env:
    """gymnasium's DtypeObservation to float32, without its warning that float64 bounds lose
    precision (said of every env made, and true of every float64 env)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return DtypeObservation(env, np.float32)


def _added(env: gym.Env) -> list[gym.ObservationWrapper]:
    """The observation wrappers :func:`adapt` put on ``env`` (an adapted env), outermost
    first."""
    added = []
    while isinstance(env, OneHotMultiDiscrete | ShiftDiscrete | DtypeObservation |
                     ReshapeObservation):
        added.append(env)
        env = env.env
    return added


def raw_observation_space(env: gym.Env) -> spaces.Space:
    """The observation space of an adapted env before :func:`adapt` converted it."""
    added = _added(env)
    return added[-1].env.observation_space if added else env.observation_space


def observation_converter(env: gym.Env):
    """A function that converts one raw observation of the env :func:`adapt` wrapped, as
    ``env`` (the adapted env) does: the wrappers :func:`adapt` added, innermost first."""
    added = _added(env)

    def convert(observation):
        for wrapper in reversed(added):
            observation = wrapper.observation(observation)
        return observation

    return convert


# ------------------------------------------------------------------------------ env.wrappers


def resolve_wrapper(item: str | Mapping) -> tuple[type[gym.Wrapper], dict[str, Any]]:
    """An ``env.wrappers`` item as (the wrapper class, its keyword arguments): an import path,
    or a mapping with ``_target_`` (the import path) and keyword arguments."""
    if isinstance(item, str):
        path, kwargs = item, {}
    elif isinstance(item, Mapping) and isinstance(item.get("_target_"), str):
        path, kwargs = item["_target_"], {k: v for k, v in item.items() if k != "_target_"}
    else:
        raise ValueError(f"env.wrappers item {item!r} must be an import path or a mapping with "
                         "_target_ (e.g. gymnasium.wrappers.FlattenObservation)")
    cls = locate(path)
    if not (isinstance(cls, type) and issubclass(cls, gym.Wrapper)):
        raise ValueError(f"env.wrappers item {path!r} is not a gymnasium.Wrapper subclass "
                         "(e.g. gymnasium.wrappers.FlattenObservation)")
    return cls, kwargs


def apply_wrappers(env: gym.Env, items) -> gym.Env:
    """``env`` wrapped by each ``env.wrappers`` item, in order (the first innermost)."""
    for item in items:
        cls, kwargs = resolve_wrapper(item)
        try:
            env = cls(env, **kwargs)
        except Exception as e:  # a wrapper's own check of its env or arguments
            raise ValueError(f"env.wrappers item {cls.__module__}.{cls.__qualname__} "
                             f"failed on this env: {type(e).__name__}: {e}") from e
    return env
