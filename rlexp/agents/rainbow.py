"""Rainbow (Hessel et al. 2018, "Rainbow: Combining Improvements in Deep Reinforcement
Learning"): C51's distributional loss with noisy networks, a dueling head, 3-step returns,
proportional prioritized replay (prioritized by the loss) and Double DQN's action choice.

Every one of those ideas is already an option of C51 and DQN; Rainbow is their combination,
with the paper's values for the ideas themselves (Hessel et al. 2018, Table 1). The schedule
(buffer, batch, learning rate, update period) stays DQN's defaults, tuned on CartPole-v1: the
paper's are for 200M Atari frames and are in ``experiment=dopamine_rainbow_atari``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlexp.agents.c51 import C51Agent, C51Config
from rlexp.agents.qlearning import EpsilonConfig, NetworkConfig


@dataclass
class RainbowConfig(C51Config):
    """C51's fields with Rainbow's combination switched on (sources in conf/agent/rainbow.yaml)."""

    name: str = "rainbow"
    n_step: int = 3
    double_q: bool = True
    prioritized: bool = True
    priority_alpha: float = 0.5
    priority_beta: float = 0.4
    network: NetworkConfig = field(
        default_factory=lambda: NetworkConfig(hidden=[128, 128], dueling=True, noisy=True))
    # The noisy networks explore: no epsilon-greedy actions.
    epsilon: EpsilonConfig = field(
        default_factory=lambda: EpsilonConfig(start=0.0, end=0.0, fraction=0.0))


class RainbowAgent(C51Agent):
    Config = RainbowConfig
