"""rlexp's own environments, registered with gymnasium when :mod:`rlexp` is imported, and the
env configs (``env=NAME``), discovered as agents are: every :class:`EnvConfig` subclass defined
in a module of this package, by its ``name``. Adding an env family with settings of its own is a
module here (the env and its config) and ``conf/env/NAME.yaml``.

Entry points are strings, so Atari (ale-py) and MinAtar are imported only when made.
"""

import importlib
import pkgutil

import gymnasium as gym

from rlexp.envs.atari import ATARI_ID
from rlexp.envs.base import EnvConfig
from rlexp.envs.minatar import MINATAR_ID
from rlexp.envs.toy import TOY_ID

_REGISTERED = {
    TOY_ID: dict(entry_point="rlexp.envs.toy:ToyEnv", max_episode_steps=100),
    # Atari games end themselves (ALE's max_num_frames_per_episode); MinAtar's do not.
    ATARI_ID: dict(entry_point="rlexp.envs.atari:make_atari"),
    MINATAR_ID: dict(entry_point="rlexp.envs.minatar:make_minatar"),
}
for env_id, spec in _REGISTERED.items():
    if env_id not in gym.registry:
        gym.register(env_id, **spec)


def _discover() -> dict[str, type[EnvConfig]]:
    configs: dict[str, type[EnvConfig]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, EnvConfig)
                    and obj.__module__ == module.__name__):
                configs[obj.name] = obj
    return configs


#: The env configs: ``env=NAME``'s schema, by name.
ENVS: dict[str, type[EnvConfig]] = _discover()

__all__ = ["ENVS", "TOY_ID", "EnvConfig"]
