"""Config composition with Hydra's compose API: every option composes, the schema types it, and
value checks refuse what is out of range."""

import itertools
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from rlexp.agents.dqn import DQNConfig
from rlexp.config import (
    CONFIG_DIR,
    SCHEMAS,
    AdamConfig,
    ConfigError,
    DeviceConfig,
    config_from_dict,
)
from rlexp.runtime import resolve_device
from tests.conftest import compose_config, options

AGENTS, ENVS, OPTIMIZERS, DEVICES = (options(g) for g in ("agent", "env", "optimizer", "device"))


def test_defaults_are_dqn_on_cartpole_with_adam():
    cfg = compose_config([])
    assert isinstance(cfg.agent, DQNConfig) and isinstance(cfg.optimizer, AdamConfig)
    assert cfg.env.id == "CartPole-v1" and cfg.device.type == "auto"
    assert (cfg.seed, cfg.total_steps, cfg.eval.episodes) == (0, 50_000, 20)
    # Runs train their whole budget; the env's target is what reports count.
    assert cfg.env.solved_return == 475 and cfg.train.stop_on_return is None
    assert compose_config(["train.stop_on_return=${env.solved_return}"]
                          ).train.stop_on_return == 475


# Every agent x env; the optimizers and devices, which combine with anything, cycle through them.
@pytest.mark.parametrize("agent,env,optimizer,device", [
    (*combination, OPTIMIZERS[i % len(OPTIMIZERS)],
     DEVICES[i // len(OPTIMIZERS) % len(DEVICES)])
    for i, combination in enumerate(itertools.product(AGENTS, ENVS))])
def test_every_combination_composes_to_its_schema(agent, env, optimizer, device):
    extra = ["env.id=FrozenLake-v1"] if env == "gym" else []
    cfg = compose_config([f"agent={agent}", f"env={env}", f"optimizer={optimizer}",
                          f"device={device}", *extra])
    assert type(cfg.agent) is SCHEMAS["agent"][agent]
    assert type(cfg.optimizer) is SCHEMAS["optimizer"][optimizer]
    # An env option is a schema of its own (toy, atari, ...) or a gymnasium id (cartpole).
    assert type(cfg.env) is SCHEMAS["env"].get(env, SCHEMAS["env"]["gym"])
    assert cfg.device.type == device


def test_overrides_reach_the_typed_config():
    cfg = compose_config(["agent=qnet", "env=toy", "env.variant=random", "env.n_states=5",
                          "optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9",
                          "agent.network.hidden=[]", "agent.epsilon.start=0.3", "seed=7"])
    assert cfg.env.make_kwargs() == {"variant": "random", "n_states": 5, "max_episode_steps": 50}
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == (0.05, 0.9)
    assert cfg.agent.network.hidden == [] and cfg.agent.epsilon.start == 0.3 and cfg.seed == 7


@pytest.mark.parametrize("override,message", [
    ("optimizer.lr=-1", "optimizer.lr=-1.0 must be > 0"),
    ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
    ("agent.gamma=1.5", "agent.gamma=1.5 must be in [0, 1]"),
    ("agent.epsilon.end=2", "agent.epsilon.end=2.0 must be in [0, 1]"),
    ("agent.batch_size=0", "agent.batch_size=0 must be positive"),
    ("agent.tau=0", "agent.tau=0.0 must be in (0, 1]"),
    ("agent.loss=l1", "agent.loss='l1' is not one of mse, huber"),
    ("agent.network.hidden=[64,-1]", "widths must be positive"),
    ("total_steps=0", "total_steps=0 must be between 1 and 1e+12"),
    ("eval.episodes=0", "eval.episodes=0 must be positive"),
    ("env.num_envs=0", "env.num_envs=0 must be positive"),
    ("processes=0", "processes=0 must be -1 (one per core) or >= 1"),
    ("optimizer._target_=os.system", "optimizer._target_='os.system' is not allowed"),
    ("optimizer._target_=torch.optim.lr_scheduler.StepLR", "is not allowed"),
    ("optimizer._partial_=false", "must stay true"),
    ("run_name=../escape", "run_name='../escape' is not allowed"),
    ("+agent.typo=1", "unknown key 'agent.typo'"),
    ("agent.name=qnet", "agent.name='qnet' does not match the agent config"),
    ("device.type=tpu", "device.type='tpu' is not one of"),
])
def test_out_of_range_values_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError) as info:
        compose_config([override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override", ["optimizer.lr=abc", "agent.nope=1", "agent.gamma=",
                                      "agent.network.hidden=abc", "seed=1.5"])
def test_wrong_types_and_unknown_keys_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_config([override])


def test_saved_config_round_trips_to_the_same_typed_config():
    from omegaconf import OmegaConf

    cfg = compose_config(["agent=qnet", "env=toy", "optimizer=sgd", "optimizer.lr=0.3"])
    data = OmegaConf.to_container(OmegaConf.structured(cfg))
    assert config_from_dict(data) == cfg
    with pytest.raises(ConfigError, match="not a config saved by rlexp"):
        config_from_dict({"agent": {"name": "nope"}})


def test_every_registered_agent_has_its_config_option_and_every_option_an_agent():
    from rlexp.agents import AGENTS as REGISTERED

    assert sorted(REGISTERED) == AGENTS
    for name, agent in REGISTERED.items():
        assert agent.Config.name == name and SCHEMAS["agent"][name] is agent.Config


#: The options that are their schema's own YAML (agent=dqn: DQNConfig, env=toy, ...).
OWN_SCHEMA = [(group, option, SCHEMAS[group][option]) for group in SCHEMAS
              for option in options(group) if option in SCHEMAS[group]]


@pytest.mark.parametrize("group,option,schema", [*OWN_SCHEMA, ("device", "auto", DeviceConfig)])
def test_an_option_named_after_its_schema_adds_no_defaults_of_its_own(group, option, schema):
    # Each default lives in one place, the dataclass: the YAML only selects the schema, so the
    # CLI and Python (unit tests, notebooks) cannot disagree.
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    # With an env that has no tuned settings for this agent (conf/tuned/<agent>_<env>.yaml).
    tuned = {p.stem for p in (Path(CONFIG_DIR) / "tuned").glob("*.yaml")}
    env = next(e for e in ENVS if f"{option}_{e}" not in tuned) if group == "agent" else None
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        composed = compose("config", overrides=["run_name=x", f"{group}={option}",
                                                *([f"env={env}"] if env else [])])[group]
    assert OmegaConf.to_container(composed) == OmegaConf.to_container(
        OmegaConf.structured(schema))


def test_tuned_settings_apply_to_their_agent_and_env_only_and_overrides_beat_them():
    # conf/tuned/<agent>_<env>.yaml, chosen by Hydra's config-group specialization.
    tuned = {p.stem for p in (Path(CONFIG_DIR) / "tuned").glob("*.yaml")}
    assert "qnet_toy" in tuned
    assert compose_config(["agent=qnet", "env=toy"]).agent.epsilon.start == 1.0
    assert compose_config(["agent=qnet", "env=cartpole"]).agent.epsilon.start == 0.1
    assert compose_config(["agent=qnet", "env=toy", "agent.epsilon.start=0.3"]
                          ).agent.epsilon.start == 0.3
    for name in tuned:  # each names a real agent and env, and composes
        agent, env = name.split("_", 1)
        assert agent in AGENTS and env in ENVS, name
        compose_config([f"agent={agent}", f"env={env}"])


@pytest.mark.parametrize("flush", [True, False])
def test_device_flush_denormal_sets_how_the_cpu_treats_subnormal_floats(flush):
    subnormal = torch.tensor([1e-39])  # float32's normal range ends at 1.2e-38
    try:
        resolve_device(DeviceConfig(type="cpu", flush_denormal=flush))
        product = float(subnormal * 3.0)
        assert product == 0.0 if flush else product == pytest.approx(3e-39, rel=1e-3)
    finally:
        resolve_device(DeviceConfig(type="cpu"))  # the default: flushed
    assert float(subnormal * 3.0) == 0.0
