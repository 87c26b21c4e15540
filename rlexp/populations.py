"""The rules of populations: which runs may train together as the members of one population
(one computation on one set of envs), and the key that groups a sweep's runs into them."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from rlexp import rundir
from rlexp.config import Config, ConfigError

#: Top-level settings in which the runs of one population may differ (with the agent's own
#: ``member_fields``); every other setting must be equal, as the members train as one
#: computation on one set of envs.
MEMBER_FIELDS = ("seed", "seeds", "run_name", "resume", "optimizer.lr", "train.stop_on_return",
                 "train.max_abs_q")


def population_key(cfg: Config) -> dict[str, Any]:
    """The settings that runs of one population must share, flattened (``agent.gamma``...)."""
    member = {*MEMBER_FIELDS, *(f"agent.{name}" for name in cfg.agent.member_fields)}
    flat = rundir.flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
    return {key: value for key, value in flat.items()
            if key not in member and not any(key.startswith(f"{m}.") for m in member)}


def check_population(cfgs: list[Config]) -> None:
    """Raise :class:`ConfigError` unless the runs can train as one population."""
    first = population_key(cfgs[0])
    for cfg in cfgs[1:]:
        other = population_key(cfg)
        for key in sorted(first.keys() | other.keys()):
            if first.get(key) != other.get(key):
                allowed = ", ".join([*MEMBER_FIELDS, *(f"agent.{name}" for name in
                                                        cfgs[0].agent.member_fields)])
                raise ConfigError(
                    f"runs of one population differ in {key} ({first.get(key)!r} and "
                    f"{other.get(key)!r}); its members may differ only in: {allowed}")
