"""Atari 2600 games (ale-py) with the DQN protocol of Mnih et al. (2015) and Machado et al. (2018).

``make_atari`` builds one game, registered as ``rlexp/Atari-v0`` (``env=atari``). The chain,
inside out, is gymnasium's and ale-py's own pieces wherever they exist:

1. the ALE env with its own frame skip and sticky actions off (``frameskip=1``);
2. gymnasium's ``StickyAction`` on each emulator frame (Machado et al. 2018): ALE's own sticky
   actions repeat an action its saved state does not hold, so a resumed run would not continue
   its games exactly;
3. gymnasium's ``AtariPreprocessing``: up to ``noop_max`` no-op actions at reset, each action
   repeated ``frame_skip`` times with a max over the last two frames, 84x84 grayscale;
4. ``RecordEpisodeStatistics``: the raw score and length of each *full game*, before any
   clipping or life-loss end, so training curves are comparable with published ones;
5. training only: ``EpisodicLife`` (a life lost ends the episode for the learner, not the game);
6. ``FireOnReset`` for games that wait for FIRE (after every life lost, in training);
7. training only: gymnasium's ``ClipReward`` to [-1, 1];
8. gymnasium's ``FrameStackObservation``: the last ``frame_stack`` frames, ``[stack, 84, 84]``
   uint8 (the first frame repeated at an episode start).

Only ``EpisodicLife`` and ``FireOnReset`` are written here: no well-kept library has them for
gymnasium 1.x (Stable-Baselines3's equivalents are tied to its own wrappers' API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import (
    AtariPreprocessing,
    ClipReward,
    FrameStackObservation,
    RecordEpisodeStatistics,
    StickyAction,
)

from rlexp.envs.base import EnvConfig

ATARI_ID = "rlexp/Atari-v0"
#: Frames per second of the Atari 2600.
ATARI_HZ = 60
#: The ALE action that starts play in games that wait for it (Breakout, ...).
FIRE = 1


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode (``terminated``) while the game goes on: the next reset
    continues the game with a no-op step, and only a real game over resets the game.
    DQN trains with this (Mnih et al. 2015); evaluation plays full games."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:  # a life was lost: continue the same game
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op itself ended the game
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireOnReset(gym.Wrapper):
    """Press FIRE after every reset, for games that do nothing until it is pressed (a policy
    that never learns to press it would otherwise see one frozen screen)."""

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(FIRE)
        if terminated or truncated:
            obs, info = self.env.reset(options=options)
        return obs, info


def needs_fire(env: gym.Env) -> bool:
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) > FIRE and meanings[FIRE] == "FIRE"


def make_atari(game: str, *, evaluation: bool = False, noop_max: int = 30, frame_skip: int = 4,
               screen_size: int = 84, frame_stack: int = 4, sticky_actions: float = 0.25,
               full_action_space: bool = False, max_frames_per_episode: int = 108_000,
               fire_on_reset: bool = True, episodic_life: bool = True, clip_rewards: bool = True,
               render_mode: str | None = None) -> gym.Env:
    """One Atari game (``game``: an ALE id such as ``ALE/Breakout-v5``) wrapped as the module
    docstring says; ``evaluation`` leaves out the life-loss ends and the reward clipping."""
    import ale_py  # imported here: only Atari runs pay for it

    gym.register_envs(ale_py)
    env = gym.make(game, frameskip=1, repeat_action_probability=0.0,
                   full_action_space=full_action_space,
                   max_num_frames_per_episode=max_frames_per_episode, render_mode=render_mode)
    # The game's action set (pybind enums) never changes: the snapshot of a run skips it.
    env.unwrapped.snapshot_static = ("_action_set",)
    if sticky_actions:
        env = StickyAction(env, sticky_actions)
    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip,
                             screen_size=screen_size, grayscale_obs=True)
    env = RecordEpisodeStatistics(env)
    if episodic_life and not evaluation:
        env = EpisodicLife(env)
    if fire_on_reset and needs_fire(env):
        env = FireOnReset(env)
    if clip_rewards and not evaluation:
        env = ClipReward(env, -1.0, 1.0)
    env = FrameStackObservation(env, frame_stack)
    # One rendered frame per agent step, played back at the game's own speed (60 Hz frames).
    env.metadata = {**env.metadata, "render_fps": ATARI_HZ / frame_skip}
    return env


@dataclass
class AtariEnvConfig(EnvConfig):
    """An Atari 2600 game through ale-py, with the DQN protocol (:mod:`rlexp.envs.atari`).

    The defaults are the protocol of Mnih et al. (2015) with Machado et al.'s (2018) sticky
    actions, as ALE v5 plays by default. Evaluations always play full games with raw scores (no
    life-loss ends, no clipping); ``train/episode_return`` is the raw score of full games too.
    """

    name: str = "atari"
    #: The ALE game id, e.g. ALE/Breakout-v5, ALE/Pong-v5 (any game ale-py ships).
    id: str = "ALE/Breakout-v5"
    #: At most this many no-op actions at the start of each game (a random number >= 1).
    noop_max: int = 30
    #: Each action is repeated for this many frames; the observation is the max of the last two.
    frame_skip: int = 4
    #: Frames are resized to this many pixels square (grayscale).
    screen_size: int = 84
    #: Observations stack the last this many frames: ``[frame_stack, screen, screen]`` uint8.
    frame_stack: int = 4
    channels: str | None = "first"
    #: Probability that the previous action is repeated instead of the chosen one, at every
    #: emulator frame (Machado et al. 2018; 0.25 as ALE v5), by gymnasium's StickyAction so that
    #: a checkpoint holds it. 0: deterministic games (NoFrameskip-v4).
    sticky_actions: float = 0.25
    #: All 18 actions instead of the game's minimal set.
    full_action_space: bool = False
    #: A game is truncated after this many emulator frames (108,000: 30 minutes, 27,000 agent
    #: steps at frame skip 4, the literature's cap). It also caps evaluation episodes.
    max_frames_per_episode: int = 108_000
    #: Press FIRE after each reset in games that wait for it (Breakout, ...).
    fire_on_reset: bool = True
    #: Training only: a lost life ends the learner's episode (the game goes on).
    episodic_life: bool = True
    #: Training only: rewards clipped to [-1, 1].
    clip_rewards: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps is not None:
            raise ValueError(f"env.max_steps={self.max_steps} is not used by Atari games: "
                              "set env.max_frames_per_episode (emulator frames per game)")
        for key in ("frame_skip", "screen_size", "frame_stack", "max_frames_per_episode"):
            if getattr(self, key) <= 0:
                raise ValueError(f"env.{key}={getattr(self, key)} must be positive")
        if self.noop_max < 0:
            raise ValueError(f"env.noop_max={self.noop_max} must be >= 0")
        if not 0.0 <= self.sticky_actions < 1.0:
            raise ValueError(f"env.sticky_actions={self.sticky_actions} must be in [0, 1)")

    @property
    def make_id(self) -> str:
        return ATARI_ID

    def make_kwargs(self, evaluation: bool = False) -> dict[str, Any]:
        return {**super().make_kwargs(evaluation), "game": self.id, "evaluation": evaluation}
