"""rlexp's own environments, registered with gymnasium when :mod:`rlexp` is imported."""

import gymnasium as gym

TOY_ID = "rlexp/Toy-v0"

if TOY_ID not in gym.registry:
    gym.register(TOY_ID, entry_point="rlexp.envs.toy:ToyEnv", max_episode_steps=100)
