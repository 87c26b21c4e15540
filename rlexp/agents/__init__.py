"""rlexp's agents, by the name their config group uses (``agent=NAME``).

Every module of this package is imported, and each :class:`~rlexp.agents.base.Agent` subclass
defined there with a ``Config`` of its own is registered under that config's ``name``: adding an
agent is a module here and ``conf/agent/NAME.yaml``, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from rlexp.agents.base import Agent, AgentConfig, AgentSpec, Member, Transition
from rlexp.locate import locate


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


def agent_class(cfg: AgentConfig) -> type[Agent]:
    """The class an agent config is for: the one its ``_target_`` names, else the registered
    agent ``cfg.name``."""
    return AGENTS[cfg.name] if cfg._target_ is None else target_class(cfg._target_)


def target_class(target: str) -> type[Agent]:
    """The :class:`Agent` subclass an import path names; ValueError (one line) otherwise."""
    try:
        cls = locate(target)
    except ValueError as e:
        raise ValueError(f"agent._target_: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Agent) and "Config" in vars(cls)):
        raise ValueError(f"agent._target_={target!r} is not an rlexp Agent subclass with a "
                         "Config of its own (rlexp.agents.Agent)")
    return cls


__all__ = ["AGENTS", "Agent", "AgentConfig", "AgentSpec", "Member", "Transition", "agent_class",
           "target_class"]
