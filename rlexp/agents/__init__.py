"""rlexp's agents, by the name their config group uses (``agent=NAME``).

Every module of this package is imported, and each :class:`~rlexp.agents.base.Agent` subclass
defined there with a ``Config`` of its own is registered under that config's ``name``: adding an
agent is a module here and ``conf/agent/NAME.yaml``, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from rlexp.agents.base import Agent, AgentConfig, Member, Transition


def _discover() -> dict[str, type[Agent]]:
    agents: dict[str, type[Agent]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Agent) and "Config" in vars(obj)
                    and obj.__module__ == module.__name__ and obj.Config.name):
                agents[obj.Config.name] = obj
    return agents


#: The registered agents: ``agent=NAME`` -> its class.
AGENTS: dict[str, type[Agent]] = _discover()

__all__ = ["AGENTS", "Agent", "AgentConfig", "Member", "Transition"]
