"""rlexp's own environments, registered with gymnasium when :mod:`rlexp` is imported.

Entry points are strings, so Atari (ale-py) and MinAtar are imported only when made.
"""

import gymnasium as gym

from rlexp.envs.atari import ATARI_ID
from rlexp.envs.minatar import MINATAR_ID

TOY_ID = "rlexp/Toy-v0"

_REGISTERED = {
    TOY_ID: dict(entry_point="rlexp.envs.toy:ToyEnv", max_episode_steps=100),
    # Atari games end themselves (ALE's max_num_frames_per_episode); MinAtar's do not.
    ATARI_ID: dict(entry_point="rlexp.envs.atari:make_atari"),
    MINATAR_ID: dict(entry_point="rlexp.envs.minatar:make_minatar"),
}
for env_id, spec in _REGISTERED.items():
    if env_id not in gym.registry:
        gym.register(env_id, **spec)
