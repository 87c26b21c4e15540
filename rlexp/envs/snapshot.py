"""The state of a vector env as plain data, so a resumed run continues its episodes exactly.

A checkpoint must load with ``torch.load(weights_only=True)``, so envs cannot be pickled. Instead
every layer of each sub-env's wrapper chain (TimeLimit, ..., the env itself) is read attribute by
attribute: numbers, strings, numpy arrays, numpy generators and RandomStates, lists, tuples,
deques and dicts of those, and objects made of them (restored in place, into the objects the
new env already has, so no class is ever constructed from a checkpoint). An emulator that can
save itself as bytes (ale-py's ``cloneState``/``restoreState``) is saved that way. An object
reached twice (a generator shared by two layers) is restored as one. Static objects (spaces,
specs, functions, and the attributes an env names in ``snapshot_static``) are skipped. When a
layer holds anything else (a physics engine, a renderer), the env is made with
:class:`EpisodeReplay` above it (:func:`replayable`): the layers above are saved as plain data,
and the env below is rebuilt by resetting it as its episode began and replaying the episode's
actions, which gives the same state for a deterministic env (Box2D's LunarLander, say). Where
that fails too, :func:`capture` returns None and the resumed run starts new episodes instead.
A batched vector env (rlexp's training CartPoles) saves and restores its own state.
"""

from __future__ import annotations

import math
import types
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlexp.envs.cartpole import CartPoleTrainingEnvs

# Unchanging objects every env carries, and wrappers' functions: restoring them is not needed.
_STATIC = (gym.Space, gym.envs.registration.EnvSpec, types.FunctionType,
           types.BuiltinFunctionType, types.MethodType, type, np.dtype)
_PLAIN = (bool, int, float, str, type(None))


class _Uncapturable(Exception):
    pass


class _Encoder:
    """Encodes values as ``[kind, payload]`` lists that weights-only loading accepts; objects
    seen before become ``["ref", n]``."""

    def __init__(self):
        self.seen: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps encoded objects alive, so their ids stay unique

    def __call__(self, value: Any) -> list:
        # Before the plain types: numpy's float64 is a float, and would be pickled as numpy's.
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return ["npscalar", torch.from_numpy(np.asarray(value).copy())]
        if isinstance(value, _PLAIN):
            return ["plain", value]
        if isinstance(value, _STATIC):  # inside a container (a wrapper's recorded arguments)
            return ["static", None]
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            return ["ndarray", torch.from_numpy(value.copy())]
        if isinstance(value, list | tuple):
            return [type(value).__name__, [self(v) for v in value]]
        if isinstance(value, dict) and all(isinstance(k, _PLAIN) for k in value):
            return ["dict", [[k, self(v)] for k, v in value.items()]]
        if id(value) in self.seen:
            return ["ref", self.seen[id(value)]]
        self.seen[id(value)] = len(self.seen)
        self.keep.append(value)
        if isinstance(value, np.random.Generator):
            return ["generator", value.bit_generator.state]  # a dict of ints and strings
        if isinstance(value, np.random.RandomState):
            return ["randomstate", self(value.get_state(legacy=False))]
        if isinstance(value, deque):
            return ["deque", [[self(v) for v in value], value.maxlen]]
        if hasattr(value, "cloneState") and hasattr(value, "restoreState"):  # ale-py
            data = value.cloneState(include_rng=True).serialize()
            return ["emulator", torch.frombuffer(bytearray(data), dtype=torch.uint8)]
        if hasattr(value, "__dict__") and not isinstance(value, type | types.ModuleType):
            return ["object", self.attributes(value)]
        raise _Uncapturable(type(value).__name__)

    def attributes(self, obj: Any) -> dict[str, list]:
        # A wrapper's inner env is the next layer, captured on its own.
        skip = (*getattr(obj, "snapshot_static", ()), *(("env",) if isinstance(obj, gym.Wrapper)
                                                       else ()))
        return {key: self(value) for key, value in vars(obj).items()
                if key not in skip and not isinstance(value, _STATIC)}


class _Decoder:
    """Decodes :class:`_Encoder`'s output, in place into ``current`` values where it can."""

    def __init__(self):
        self.objects: list[Any] = []

    def __call__(self, item: list, current: Any = None) -> Any:
        kind, payload = item
        if kind == "plain":
            return payload
        if kind == "ndarray":
            return payload.numpy().copy()
        if kind == "npscalar":
            return payload.numpy()[()]
        if kind in ("list", "tuple"):
            values = [self(v) for v in payload]
            return values if kind == "list" else tuple(values)
        if kind == "dict":
            now = current if isinstance(current, dict) else {}
            return {k: self(v, now.get(k)) for k, v in payload}
        if kind == "static":  # unchanging: the new env's own
            return current
        if kind == "ref":
            return self.objects[payload]
        slot = len(self.objects)
        self.objects.append(None)  # reserved: refs inside this object point at it
        if kind == "generator":
            value = current if isinstance(current, np.random.Generator) else np.random.default_rng()
            value.bit_generator.state = payload
        elif kind == "randomstate":
            value = (current if isinstance(current, np.random.RandomState)
                     else np.random.RandomState())
            self.objects[slot] = value
            value.set_state(self(payload))
        elif kind == "deque":
            items, maxlen = payload
            value = deque([self(v) for v in items], maxlen)
        elif kind == "emulator":
            value = current
            state_type = type(value.cloneState())
            value.restoreState(state_type(payload.numpy().tobytes()))
        else:  # an object: restored into the one the new env has
            if current is None:
                raise ValueError("the env's structure differs from the saved one")
            value = current
            self.objects[slot] = value
            self.set_attributes(value, payload)
        self.objects[slot] = value
        return value

    def set_attributes(self, obj: Any, attrs: dict[str, list]) -> None:
        for key, item in attrs.items():
            setattr(obj, key, self(item, getattr(obj, key, None)))


class EpisodeReplay(gym.Wrapper):
    """Records how the current episode of the env beneath it began (the seed and options of its
    reset, or the env's random generator just before it) and the actions since, so that a
    fresh env can be brought to the same state by :meth:`replay`. The snapshot saves the layers
    above this one and its record, and rebuilds the env beneath by replaying (see the module
    docstring)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.reset_seed: int | None = None
        self.reset_options: dict | None = None
        self.rng_state: dict | None = None
        self.actions: list = []

    def reset(self, *, seed=None, options=None):
        self.reset_seed, self.reset_options = seed, options
        generator = self.env.unwrapped.np_random
        self.rng_state = None if seed is not None else generator.bit_generator.state
        self.actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(action)
        return self.env.step(action)

    def replay(self) -> None:
        """Bring the env beneath, freshly made, to the state of the recorded episode."""
        if self.rng_state is not None:
            self.env.unwrapped.np_random.bit_generator.state = self.rng_state
        self.env.reset(seed=self.reset_seed, options=self.reset_options)
        for action in self.actions:
            self.env.step(action)


def replayable(env: gym.Env) -> gym.Env:
    """``env``, with :class:`EpisodeReplay` above it when its state cannot be saved as plain
    data (then only the layers above and the episode's record are saved)."""
    try:
        for layer in _layers(env):
            _Encoder().attributes(layer)
    except _Uncapturable:
        return EpisodeReplay(env)
    return env


def _chain(env: gym.Env) -> list[gym.Env]:
    """``env``'s wrapper chain, outermost first, down to the env itself."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _layers(env: gym.Env) -> list[gym.Env]:
    """The layers of ``env`` that a snapshot saves: its wrapper chain, down to an
    :class:`EpisodeReplay` (the env beneath it is rebuilt by replaying)."""
    layers = _chain(env)
    replay = next((i for i, layer in enumerate(layers) if isinstance(layer, EpisodeReplay)),
                  len(layers) - 1)
    return layers[:replay + 1]


def capture(envs: gym.vector.VectorEnv, part: slice = slice(None)) -> dict | None:
    """The state of a vector env made by :func:`rlexp.build.make_vector_env` (of its sub-envs
    ``part``: one member's, in a population's), or None when some sub-env holds state that
    cannot be saved as plain data. A batched env saves its own (its ``state_dict``)."""
    if isinstance(envs, CartPoleTrainingEnvs):
        return envs.state_dict(part)
    encode = _Encoder()
    try:
        return {"envs": [[encode.attributes(layer) for layer in _layers(env)]
                         for env in envs.unwrapped.envs[part]], "layers": _structure(envs, part)}
    except _Uncapturable:
        return None


def _structure(envs: gym.vector.VectorEnv, part: slice) -> list[list[str]]:
    """Each sub-env's wrapper chain, by class: a saved state only fits the same chain."""
    return [[f"{type(layer).__module__}.{type(layer).__qualname__}" for layer in _chain(env)]
            for env in envs.unwrapped.envs[part]]


def restore(envs: gym.vector.VectorEnv, state: dict, part: slice = slice(None)) -> bool:
    """Put ``envs`` (built from the same config; its sub-envs ``part``) back into a state from
    :func:`capture`; False when the state does not fit them (saved by another version of the
    envs or of rlexp): the caller then resets them."""
    if isinstance(envs, CartPoleTrainingEnvs):
        return envs.load_state_dict(_as_batched_cartpoles(state), part)
    if not isinstance(envs, gym.vector.SyncVectorEnv) or state.get("layers") != _structure(
            envs, part):
        return False
    decode = _Decoder()
    try:
        for env, layer_states in zip(envs.unwrapped.envs[part], state["envs"], strict=True):
            layers = _layers(env)
            for layer, attrs in zip(layers, layer_states, strict=True):
                decode.set_attributes(layer, attrs)
            if isinstance(layers[-1], EpisodeReplay):
                layers[-1].replay()
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError):
        return False
    return True


#: The wrapper chain of a training CartPole in gymnasium's per-env vector env, outermost first.
_CARTPOLE_CHAIN = ("gymnasium.wrappers.common.RecordEpisodeStatistics",
                   "gymnasium.wrappers.common.TimeLimit",
                   "gymnasium.wrappers.common.OrderEnforcing",
                   "gymnasium.wrappers.common.PassiveEnvChecker",
                   "gymnasium.envs.classic_control.cartpole.CartPoleEnv")


def _as_batched_cartpoles(state: dict) -> dict:
    """A state of training CartPoles as :class:`CartPoleTrainingEnvs` saves it: ``state``
    itself, or its conversion when a per-env vector env saved it (training CartPoles were
    stepped one by one before rlexp batched them), so that such a run resumes its episodes.
    What does not convert is returned as it is (the batched env then refuses it)."""
    if [tuple(chain) for chain in state.get("layers", [])] != \
            [_CARTPOLE_CHAIN] * len(state.get("envs", [None])):
        return state
    try:
        envs = [{key: item for layer in layers for key, item in layer.items()}
                for layers in state["envs"]]
        kinds = {(a["state"][0], a["_np_random"][0], a["_max_episode_steps"][0]) for a in envs}
        limits = {a["_max_episode_steps"][1] for a in envs}
        if kinds != {("ndarray", "generator", "plain")} or len(limits) != 1:
            return state

        def number(item: list) -> float:
            return float(item[1]) if item[0] in ("plain", "npscalar") else math.nan

        return {"kind": CartPoleTrainingEnvs.__name__, "max_episode_steps": limits.pop(),
                "state": torch.stack([a["state"][1] for a in envs], dim=1),
                "steps": torch.tensor([int(number(a["_elapsed_steps"])) for a in envs]),
                "returns": torch.tensor([number(a["episode_returns"]) for a in envs],
                                        dtype=torch.float64),
                "generators": [a["_np_random"][1] for a in envs]}
    except (KeyError, TypeError, ValueError, IndexError):
        return state
