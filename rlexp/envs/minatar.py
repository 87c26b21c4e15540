"""MinAtar (Young & Tian 2019): five Atari-like games on a 10x10 grid, the CPU-scale pixel
benchmark. Registered as ``rlexp/MinAtar-v0`` (``env=minatar env.game=breakout``).

The env is MinAtar's own gymnasium env; observations are its ``[10, 10, channels]`` boolean
planes, one channel per kind of object, stored and sent to the network as they are. Episodes
have no time limit of their own (evaluations are capped by ``eval.max_episode_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlexp.envs.base import EnvConfig

MINATAR_ID = "rlexp/MinAtar-v0"
GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
#: Pixels per grid cell in rendered frames (a 10x10 grid is too small to watch).
RENDER_CELL = 16


class ColourFrames(gym.Wrapper):
    """MinAtar renders floats in [0, 1] on its 10x10 grid: make them RGB uint8, one
    ``RENDER_CELL``-pixel square per cell, as a person would want to watch them."""

    def render(self):
        frame = self.env.render()
        if frame is None:
            return None
        rgb = (np.asarray(frame) * 255).round().astype(np.uint8)
        return rgb.repeat(RENDER_CELL, axis=0).repeat(RENDER_CELL, axis=1)


def make_minatar(game: str, *, sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 minimal_action_set: bool = False, render_mode: str | None = None) -> gym.Env:
    """One MinAtar game; the arguments are MinAtar's own (see ``MinAtarEnvConfig``)."""
    from minatar.gym import BaseEnv  # imported here: only MinAtar runs pay for it

    env = BaseEnv(game, render_mode=render_mode, use_minimal_action_set=minimal_action_set,
                  sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
    env.metadata = {**env.metadata, "render_fps": 10}
    return ColourFrames(env)


@dataclass
class MinAtarEnvConfig(EnvConfig):
    """A MinAtar game (Young & Tian 2019, :mod:`rlexp.envs.minatar`): ``[10, 10, C]`` boolean
    observations; the defaults are the paper's."""

    name: str = "minatar"
    #: asterix, breakout, freeway, seaquest or space_invaders.
    game: str = "breakout"
    #: Shown in run names and logs; set from ``game``.
    id: str = "MinAtar/${.game}"
    #: Probability that the previous action is repeated instead of the chosen one (paper: 0.1).
    sticky_action_prob: float = 0.1
    #: Games speed up as they go on (the paper's setting).
    difficulty_ramping: bool = True
    #: Only the game's meaningful actions instead of all 6.
    minimal_action_set: bool = False
    channels: str | None = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.game not in GAMES:
            raise ValueError(f"env.game={self.game!r} is not one of {', '.join(GAMES)}")
        if not 0.0 <= self.sticky_action_prob <= 1.0:
            raise ValueError(f"env.sticky_action_prob={self.sticky_action_prob} must be in "
                              "[0, 1]")

    @property
    def make_id(self) -> str:
        return MINATAR_ID
