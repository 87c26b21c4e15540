"""rlexp's agents, by the name their config group uses (``agent=NAME``).

Adding an agent: a module here with an :class:`~rlexp.agents.base.Agent` subclass and its
``Config`` dataclass, one entry below, and ``conf/agent/NAME.yaml``.
"""

from rlexp.agents.base import Agent, AgentConfig, Transition
from rlexp.agents.dqn import DQNAgent
from rlexp.agents.qnet import QNetAgent

AGENTS: dict[str, type[Agent]] = {"qnet": QNetAgent, "dqn": DQNAgent}

__all__ = ["AGENTS", "Agent", "AgentConfig", "DQNAgent", "QNetAgent", "Transition"]
