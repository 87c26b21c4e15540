"""The state of a vector env as plain data, so a resumed run continues its episodes exactly.

A checkpoint must load with ``torch.load(weights_only=True)``, so envs cannot be pickled. Instead
every layer of each sub-env's wrapper chain (TimeLimit, ..., the env itself) is read attribute by
attribute: numbers, strings, numpy arrays and generators, and lists, tuples and dicts of those.
Static objects (spaces, specs, and the attributes an env names in ``snapshot_static``) are
skipped. When a layer holds anything else (a physics engine, a
renderer), :func:`capture` returns None and the resumed run starts new episodes instead.
This covers gymnasium's classic-control envs and rlexp's toy env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

# Unchanging objects every env carries; restoring them is not needed.
_STATIC = (gym.Space, gym.envs.registration.EnvSpec)
_PLAIN = (bool, int, float, str, type(None))
# The vector wrapper's running episode statistics (its deques of past episodes only feed
# gymnasium's own summaries, and its start times are wall-clock).
_EPISODE_STATS = ("episode_returns", "episode_lengths", "prev_dones")


class _Uncapturable(Exception):
    pass


def _encode(value: Any) -> list:
    """``value`` as ``[kind, payload]`` with only what weights-only loading accepts."""
    if isinstance(value, _PLAIN):
        return ["plain", value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return ["ndarray", torch.from_numpy(value.copy())]
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return ["npscalar", torch.from_numpy(np.asarray(value).copy())]
    if isinstance(value, np.random.Generator):
        return ["generator", value.bit_generator.state]  # a dict of ints and strings
    if isinstance(value, list | tuple):
        return [type(value).__name__, [_encode(v) for v in value]]
    if isinstance(value, dict) and all(isinstance(k, _PLAIN) for k in value):
        return ["dict", [[k, _encode(v)] for k, v in value.items()]]
    raise _Uncapturable(type(value).__name__)


def _decode(item: list, current: Any = None) -> Any:
    kind, payload = item
    if kind == "plain":
        return payload
    if kind == "ndarray":
        return payload.numpy().copy()
    if kind == "npscalar":
        return payload.numpy()[()]
    if kind == "generator":  # restored in place: wrappers may share the env's generator
        generator = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        generator.bit_generator.state = payload
        return generator
    if kind in ("list", "tuple"):
        values = [_decode(v) for v in payload]
        return values if kind == "list" else tuple(values)
    return {k: _decode(v) for k, v in payload}


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _capture_env(env: gym.Env) -> list[dict[str, list]]:
    return [{key: _encode(value) for key, value in vars(layer).items()
             if key != "env" and key not in getattr(layer, "snapshot_static", ())
             and not isinstance(value, _STATIC)} for layer in _layers(env)]


def capture(envs: gym.vector.VectorEnv) -> dict | None:
    """The state of a vector env made by :func:`rlexp.build.make_vector_env`, or None when
    some sub-env holds state that cannot be saved as plain data."""
    try:
        subenvs = [_capture_env(env) for env in envs.unwrapped.envs]
    except _Uncapturable:
        return None
    stats = {key: _encode(getattr(envs, key)) for key in _EPISODE_STATS if hasattr(envs, key)}
    return {"envs": subenvs, "episode_stats": stats}


def restore(envs: gym.vector.VectorEnv, state: dict) -> None:
    """Put ``envs`` (built from the same config) back into a state from :func:`capture`."""
    for env, layer_states in zip(envs.unwrapped.envs, state["envs"], strict=True):
        for layer, attrs in zip(_layers(env), layer_states, strict=True):
            for key, item in attrs.items():
                setattr(layer, key, _decode(item, getattr(layer, key, None)))
    for key, item in state["episode_stats"].items():
        setattr(envs, key, _decode(item))
