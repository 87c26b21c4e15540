"""DQN's pieces: targets (termination vs truncation, Double DQN), target-network updates,
learning starts and train frequency, vector envs whose reset observations never become next
states."""

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlexp.agents.base import Transition
from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.agents.qlearning import EpsilonConfig, NetworkConfig
from tests.conftest import solo_agent, solo_state, train_alone

SPACE = gym.spaces.Box(-1, 1, (2,), np.float32)
ACTIONS = gym.spaces.Discrete(2)


def make_agent(**kw) -> DQNAgent:
    cfg = DQNConfig(**{"network": NetworkConfig(hidden=[8]), "learning_starts": 1,
                       "batch_size": 4, "train_freq": 1, "gradient_steps": 1, "double_q": False,
                       "n_step": 1,
                       **kw})
    return solo_agent(DQNAgent, cfg, SPACE, ACTIONS, partial(torch.optim.SGD, lr=0.1),
                      total_steps=1000)


def step(agent, terminated=False, truncated=False, n=1):
    return agent.learn(Transition(
        obs=np.zeros((1, n, 2), np.float32), action=np.zeros((1, n), np.int64),
        reward=np.ones((1, n)), next_obs=np.ones((1, n, 2), np.float32),
        terminated=np.full((1, n), terminated), truncated=np.full((1, n), truncated)))


def constant_q(net, values):
    """Make ``net`` output ``values`` for every input (zero weights, the values as bias)."""
    net.load_member_state_dict(0, solo_state(net, **{net.names[-1].replace(".", "__"): values}))


def loss_of_one_transition(terminated=False, truncated=False, **kw) -> float:
    """DQN's loss on a single stored transition (reward 1, action 0), online Q = (0, 5) and
    target Q = (3, 1) everywhere, gamma 0.9, loss 0.5 * td**2."""
    agent = make_agent(gamma=0.9, loss="mse", learning_starts=100, **kw)
    step(agent, terminated, truncated)
    constant_q(agent.q_net, [0.0, 5.0])
    constant_q(agent.target_net, [3.0, 1.0])
    loss, _ = agent._gradient_update()
    return loss[0].item()


def test_truncated_transitions_bootstrap_and_terminated_do_not():
    # Q(s, 0) = 0. Terminated: target 1. Truncated or not done: 1 + 0.9 * max target Q = 3.7.
    assert loss_of_one_transition(terminated=True) == pytest.approx(0.5 * 1.0**2)
    assert loss_of_one_transition(truncated=True) == pytest.approx(0.5 * 3.7**2)
    assert loss_of_one_transition() == pytest.approx(0.5 * 3.7**2)


def test_double_q_values_the_online_argmax_with_the_target_net():
    # The online net picks action 1 at s'; the target net values it 1.0: target 1 + 0.9 * 1.
    assert loss_of_one_transition(double_q=True) == pytest.approx(0.5 * 1.9**2)
    assert loss_of_one_transition(double_q=True, terminated=True) == pytest.approx(0.5)


def test_hard_target_update_copies_every_interval():
    agent = make_agent(target_update_interval=3, tau=1.0)
    for i in range(1, 7):
        step(agent)
        same = all(torch.equal(t, o) for t, o in zip(agent.target_net.parameters(),
                                                     agent.q_net.parameters(), strict=True))
        assert same == (i % 3 == 0), i  # trained every step, copied every third


def test_polyak_update_moves_tau_of_the_way():
    agent = make_agent(tau=0.25)
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.fill_(1.0)
        for p in agent.target_net.parameters():
            p.fill_(0.0)
    agent._update_target([True])
    agent._update_target([True])
    for p in agent.target_net.parameters():  # 0 -> 0.25 -> 0.25 + 0.25 * 0.75
        torch.testing.assert_close(p, torch.full_like(p, 0.4375))


def test_learning_starts_and_train_frequency():
    agent = make_agent(learning_starts=5, train_freq=3, gradient_steps=2)
    updates = [step(agent) is not None for _ in range(12)]
    # Trains on calls 6, 9, 12 (every third call once 5 transitions are stored).
    assert updates == [False] * 5 + [True, False, False, True, False, False, True]


def test_vector_env_never_stores_a_reset_observation_as_next_state(tmp_path):
    from rlexp.build import make_vector_env
    from rlexp.envs import EnvConfig
    from rlexp.loop import LoopSettings

    envs = make_vector_env(EnvConfig(id="rlexp/Toy-v0", kwargs={"variant": "chain",
                                                                "n_states": 4}), 3)
    eval_envs = make_vector_env(EnvConfig(id="rlexp/Toy-v0", kwargs={"n_states": 4}), 1)
    torch.manual_seed(0)
    random_walk = EpsilonConfig(start=1.0, end=1.0)
    agent = solo_agent(DQNAgent, DQNConfig(network=NetworkConfig(hidden=[8]),
                                           learning_starts=10_000, n_step=1,
                                           epsilon=random_walk),
                       envs.single_observation_space, envs.single_action_space,
                       partial(torch.optim.Adam), 3000)
    train_alone(agent, envs, eval_envs, LoopSettings(total_steps=3000, seed=0, log_every=1000,
                                                     eval_every=0))
    b = agent.replay.memories[0].sample(5000)
    # On the chain a step moves one cell. A reset observation (cell 0) stored as the next state
    # of an episode that reached the goal (cell 3, from cell 2) would show up as a jump of 2.
    assert torch.all((b.next_obs - b.obs).abs() <= 1)
    reached_goal = (b.terminated == 1) & (b.reward == 1)
    assert reached_goal.sum() > 50 and torch.all(b.next_obs[reached_goal] == 3)


def test_the_learning_rate_falls_linearly_to_its_final_fraction():
    agent = make_agent(lr_final_fraction=0.25)  # SGD lr 0.1, 1000 steps
    lrs = []
    for _ in range(600):
        step(agent)
        lrs.append(agent.optimizer.lrs(agent.lr_scales)[0])
    # Each gradient step's, from the env steps so far: 0.1 * (1 - 0.75 * t / 1000).
    assert lrs[0] == pytest.approx(0.1 * (1 - 0.75 * 1 / 1000))
    assert lrs[499] == pytest.approx(0.1 * (1 - 0.75 * 0.5))
    assert agent.log_scalars()["lr"] == [pytest.approx(0.1 * (1 - 0.75 * 0.6))]
    assert make_agent().log_scalars()["lr"] == [0.1]  # constant by default


# ------------------------------------------------------------ no silent changes to user values


def test_learning_starts_above_the_buffer_size_is_honoured():
    agent = make_agent(learning_starts=30, buffer_size=10)
    updates = [step(agent) is not None for _ in range(35)]
    assert updates.index(True) == 29  # the 30th transition, not the 10th


def test_a_target_interval_that_is_not_a_whole_number_of_vector_steps_is_said(caplog):
    agent = make_agent(target_update_interval=10, tau=1.0)
    with caplog.at_level("WARNING", logger="rlexp"):
        step(agent, n=4)
        step(agent, n=4)  # said once, at the first step
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["agent.target_update_interval=10 is not a multiple of the 4 envs "
                        "stepped together (env.num_envs): the target network updates every 8 "
                        "env steps"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="rlexp"):
        step(make_agent(target_update_interval=12), n=4)
    assert not caplog.records


def test_a_budget_that_is_not_a_whole_number_of_vector_steps_is_said(tmp_path, caplog):
    from tests.conftest import TINY, run_in_process

    with caplog.at_level("WARNING", logger="rlexp"):
        metrics = run_in_process(["agent=qnet", "env=toy", *TINY, "total_steps=301",
                                  "env.num_envs=3", "eval.every_steps=0"], tmp_path / "run")
    assert metrics.env_steps == 303
    assert "total_steps=301 is not a multiple of env.num_envs=3: the run takes 303 env steps" \
        in caplog.text
