"""MinAtar (Young & Tian 2019): five Atari-like games on a 10x10 grid, the CPU-scale pixel
benchmark. Registered as ``rlexp/MinAtar-v0`` (``env=minatar env.game=breakout``).

The env is MinAtar's own gymnasium env; observations are its ``[10, 10, channels]`` boolean
planes, one channel per kind of object, stored and sent to the network as they are. Episodes
have no time limit of their own (evaluations are capped by ``eval.max_episode_steps``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

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
