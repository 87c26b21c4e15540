"""DQN's extensions against hand-computed values: n-step returns (episode ends, truncations,
several envs, both replay memories), the dueling head, prioritized replay (sampling
distribution, importance weights, new transitions at the largest priority) and C51's projected
target; and the agent contract: a minimal agent defined here runs through the real loop."""

import dataclasses
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlexp.agents import AGENTS
from rlexp.agents.c51 import C51Agent, C51Config, project
from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.agents.qlearning import NetworkConfig, td_loss
from rlexp.nets import DuelingHead, q_network
from rlexp.replay import FrameReplayBuffer, PrioritizedSampler, ReplayBuffer, SumTree
from tests.conftest import (
    TINY,
    read_scalars,
    run_cli,
    run_in_process,
    shrunk,
    solo_agent,
    solo_state,
)

GAMMA = 0.5


def episodes(n_envs: int, steps: int, seed: int = 0):
    """Per env, transitions (obs id, reward, terminated, truncated, next obs id) of random-length
    episodes that end by termination or truncation; ids are unique per env and step."""
    rng = np.random.default_rng(seed)
    streams = []
    for env in range(n_envs):
        rows, t = [], 0
        for _ in range(steps):
            end = rng.random() < 0.2
            terminated = end and rng.random() < 0.5
            rows.append((1000 * env + t, float(rng.integers(1, 9)), terminated,
                         end and not terminated, 1000 * env + t + 1))
            t += 2 if end else 1  # after an end, the next obs is a reset (an id not followed)
        streams.append(rows)
    return streams


def expected_n_step(stream: list, j: int, n: int) -> tuple[float, float, int]:
    """Reward sum, discount and next obs id of the n-step transition at stream[j]."""
    total, scale = 0.0, 1.0
    for k in range(n):
        obs, reward, terminated, truncated, nxt = stream[j + k]
        total += scale * reward
        scale *= GAMMA
        if terminated:
            return total, 0.0, nxt
        if truncated or j + k + 1 == len(stream):  # an end, or the newest stored
            return total, scale, nxt
    return total, scale, nxt


def make_memory(memory_kind: str, n: int):
    if memory_kind == "table":
        return ReplayBuffer(10_000, (1,), "cpu", seed=0, n_step=n, gamma=GAMMA)
    # one frame per observation, stored once; ids fit in two uint8 values
    return FrameReplayBuffer(10_000, (2,), np.uint8, 1, "cpu", seed=0, n_step=n, gamma=GAMMA)


def filled(memory_kind: str, n_envs: int, steps: int, n: int, memory=None, start: int = 0):
    streams = episodes(n_envs, start + steps)
    memory = memory or make_memory(memory_kind, n)

    def encode(ids):
        ids = np.asarray(ids)
        return ids[:, None] if memory_kind == "table" else \
            np.stack([ids // 256, ids % 256], axis=1).astype(np.uint8)

    for t in range(start, start + steps):
        rows = [s[t] for s in streams]
        memory.add(encode([r[0] for r in rows]), np.zeros(n_envs, int),
                   np.array([r[1] for r in rows]), encode([r[4] for r in rows]),
                   np.array([r[2] for r in rows]), np.array([r[3] for r in rows]))
    return memory, streams


def decode(memory_kind: str, obs: torch.Tensor) -> np.ndarray:
    x = obs.numpy().astype(np.int64)
    return x[:, 0] if memory_kind == "table" else x[:, 0] * 256 + x[:, 1]


@pytest.mark.parametrize("memory_kind", ["table", "frames"])
@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("n", [1, 3])
def test_n_step_transitions_stop_at_episode_ends_bootstrap_truncations_and_keep_envs_apart(
        memory_kind, n_envs, n):
    # The table stores each n-step transition once complete; the frame memory rebuilds them
    # when sampled, its newest bootstrapping after the steps stored so far: the same values.
    memory, streams = filled(memory_kind, n_envs, 60, n)
    b = memory.sample(4000)
    index = {row[0]: (env, j) for env, s in enumerate(streams) for j, row in enumerate(s)}
    seen = set()
    for obs, reward, discount, nxt in zip(decode(memory_kind, b.obs), b.reward.tolist(),
                                          b.discount.tolist(), decode(memory_kind, b.next_obs),
                                          strict=True):
        env, j = index[obs]
        want = expected_n_step(streams[env], j, n)
        assert (reward, discount, nxt) == pytest.approx(want), (env, j)
        seen.add((env, j))
    assert len(seen) > 0.9 * n_envs * 60  # nearly every transition was checked


@pytest.mark.parametrize("memory_kind", ["table", "frames"])
def test_a_memory_restored_mid_episode_goes_on_as_the_original(memory_kind):
    # The table's steps still waiting for their n-step transition are in its state.
    original, _ = filled(memory_kind, 2, 30, 3)
    restored = make_memory(memory_kind, 3)
    restored.load_state_dict(original.state_dict())
    for memory in (original, restored):
        filled(memory_kind, 2, 30, 3, memory=memory, start=30)
    a, b = original.sample(500), restored.sample(500)
    for field in ("obs", "next_obs", "reward", "discount"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_dueling_head_is_value_plus_centred_advantages():
    torch.manual_seed(0)
    head = DuelingHead(5, n_actions=3)
    x = torch.randn(4, 5)
    w, b = head.linear.weight, head.linear.bias  # row 0: V, rows 1-3: A
    value, advantage = x @ w[:1].T + b[:1], x @ w[1:].T + b[1:]
    torch.testing.assert_close(head(x), value + advantage - advantage.mean(dim=1, keepdim=True))
    atoms = DuelingHead(5, n_actions=3, outputs_per_action=2)  # per atom, action-major
    out, raw = atoms(x).view(4, 3, 2), atoms.linear(x)
    a = raw[:, 2:].view(4, 3, 2)
    torch.testing.assert_close(out, raw[:, None, :2] + a - a.mean(dim=1, keepdim=True))
    net = q_network(gym.spaces.Box(-1, 1, (5,)), 3, [8], dueling=True)
    assert isinstance(net[-1], DuelingHead) and net(x).shape == (4, 3)


def test_sum_tree_draws_in_proportion_and_never_a_zero():
    tree = SumTree(6)
    tree.set(np.arange(6), np.array([1.0, 0.0, 2.0, 3.0, 0.0, 4.0]))
    assert tree.total == 10.0
    rng = np.random.default_rng(0)
    draws = tree.find(rng.random(100_000) * tree.total)
    counts = np.bincount(draws, minlength=6)
    p = np.array([1, 0, 2, 3, 0, 4]) / 10
    sigma = np.sqrt(100_000 * p * (1 - p))
    assert np.all(np.abs(counts - 100_000 * p) <= 5 * sigma + 1e-9), counts
    # A changed value changes the sums above it (duplicates in one update agree).
    tree.set(np.array([5, 5]), np.array([0.0, 0.0]))
    assert tree.total == 6.0 and not np.any(tree.find(rng.random(1000) * 6.0) == 5)


def test_prioritized_sampler_weights_and_new_transitions_at_the_largest_priority():
    sampler = PrioritizedSampler(4, alpha=1.0, epsilon=1e-6, seed=0)
    sampler.add(0, np.array([True, True, False, False]))  # two transitions at priority 1
    sampler.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]) - 1e-6)
    # P = [1/4, 3/4]; N = 2; beta = 1: (N P)**-1 = [2, 2/3], divided by the largest.
    weights = sampler.weights(torch.tensor([0, 1]), beta=1.0)
    torch.testing.assert_close(weights, torch.tensor([1.0, 1.0 / 3.0]))
    sampler.add(2, np.array([True]))
    assert sampler.tree[np.array([2])][0] == pytest.approx(3.0)  # the largest so far
    draws = sampler.draw(30_000, torch.device("cpu")).numpy()
    counts = np.bincount(draws, minlength=4)
    assert counts[3] == 0
    np.testing.assert_allclose(counts[:3] / 30_000, [1 / 7, 3 / 7, 3 / 7], atol=0.01)


def test_prioritized_dqn_weights_its_loss_and_anneals_beta():
    q, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    w = torch.tensor([[1.0, 0.5]])
    assert td_loss(q, target, "mse", w).item() == pytest.approx((0.5 * 1 + 0.5 * 0.5 * 4) / 2)
    agent = solo_agent(DQNAgent, DQNConfig(prioritized=True, priority_beta=0.4, batch_size=4,
                                           n_step=1, learning_starts=4, train_freq=1,
                                           gradient_steps=1, network=NetworkConfig(hidden=[8])),
                       gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2),
                       partial(torch.optim.SGD, lr=0.1), 100)
    assert agent.priority_betas == [pytest.approx(0.4)]
    from rlexp.agents.base import Transition

    for _ in range(50):
        agent.learn(Transition(np.zeros((1, 1, 2), np.float32), np.zeros((1, 1), int),
                               np.ones((1, 1)), np.ones((1, 1, 2), np.float32),
                               np.zeros((1, 1), bool), np.zeros((1, 1), bool)))
    assert agent.priority_betas == [pytest.approx(0.4 + 0.6 * 0.5)]
    # Every gradient step set the priorities of what it sampled: not all 1 any more.
    leaves = agent.replay.memories[0].sampler.tree[np.arange(50)]
    assert len(np.unique(leaves)) > 1 and np.all(leaves > 0)


SUPPORT = torch.tensor([-1.0, 0.0, 1.0])


@pytest.mark.parametrize("probs,reward,discount,want", [
    ([0, 1, 0], 0.5, 1.0, [0, 0.5, 0.5]),     # the mass at 0 lands at 0.5, between 0 and 1
    ([1, 0, 0], 0.25, 0.5, [0.25, 0.75, 0]),  # -1 -> -0.25
    ([0.2, 0.3, 0.5], 0.5, 0.0, [0, 0.5, 0.5]),  # terminal: everything at r
    ([0.2, 0.3, 0.5], 1.0, 0.0, [0, 0, 1]),      # exactly on an atom: all of it there
    ([0.2, 0.3, 0.5], -1.0, 0.0, [1, 0, 0]),     # on the lowest atom
    ([0.2, 0.3, 0.5], 5.0, 1.0, [0, 0, 1]),      # beyond v_max: clipped to it
    ([0.5, 0.0, 0.5], 0.0, 1.0, [0.5, 0, 0.5]),  # identity
])
def test_c51_projection_matches_hand_computed_targets(probs, reward, discount, want):
    target = project(torch.tensor([probs], dtype=torch.float32), torch.tensor([reward]),
                     torch.tensor([discount]),
                     SUPPORT)
    torch.testing.assert_close(target, torch.tensor([want], dtype=torch.float32), atol=1e-6,
                               rtol=0)


def test_c51_q_values_are_the_means_of_its_distributions():
    agent = solo_agent(C51Agent, C51Config(atoms=3, v_min=-1, v_max=1,
                                           network=NetworkConfig(hidden=[])),
                       gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2),
                       partial(torch.optim.Adam), 100)
    # logits: action 0 all on +1, action 1 uniform
    agent.q_net.load_member_state_dict(0, solo_state(
        agent.q_net, **{"0__bias": [-50.0, -50.0, 50.0, 0.0, 0.0, 0.0]}))
    torch.testing.assert_close(agent.q_values(np.zeros((1, 1, 2), np.float32)),
                               torch.tensor([[[1.0, 0.0]]]))
    assert agent.act(np.zeros((1, 3, 2), np.float32), explore=False).tolist() == [[0, 0, 0]]


# ------------------------------------------------------------------------- the agent contract


# ------------------------------------------------------------------ every option, end to end
# (from the registry: every agent's switches; MinAtar and Atari for each agent: test_pixels)

def switches(agent: str) -> list[tuple[str, bool]]:
    """Every on/off option of a registered agent (its config's and its network's bool fields),
    as the override that turns it from its default to the other value, and whether the agent's
    own config class sets that default (declares the field, or its network)."""
    schema = AGENTS[agent].Config
    own = set(vars(schema).get("__annotations__", {}))
    cfg = schema()
    flips = []
    for prefix, node, declared in (("agent.", cfg, own),
                                   ("agent.network.", getattr(cfg, "network", None),
                                    {f.name for f in dataclasses.fields(NetworkConfig)}
                                    if "network" in own else set())):
        for f in dataclasses.fields(node) if node is not None else ():
            if isinstance(getattr(node, f.name), bool):
                flips.append((f"{prefix}{f.name}={str(not getattr(node, f.name)).lower()}",
                              f.name in declared))
    return flips


def refusal(agent: str, overrides: list[str]) -> str | None:
    """Why the agent's config refuses these ``agent.*`` overrides (None: it takes them)."""
    schema = OmegaConf.structured(AGENTS[agent].Config)
    dotlist = [o.removeprefix("agent.") for o in overrides if o.startswith("agent.")]
    try:
        OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.from_dotlist(dotlist)))
    except ValueError as e:
        return str(e)
    return None


def option_cases() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """For every registered agent: each switch alone where the agent's own config sets its
    default (an inherited one is tested alone on the agent that sets it), then all of them
    together with 3-step returns and 3 envs where the agent has them; and apart, the switches
    (and 3-step returns) the agent refuses, where the mathematics does not allow them."""
    cases, refused, reasons = {}, {}, set()
    for agent in sorted(AGENTS):
        flips = []  # those it takes together
        for flip, own in switches(agent):
            if refusal(agent, [flip]):
                refused[f"{agent} {flip}"] = [f"agent={agent}", flip]
                continue
            if own:
                cases[f"{agent} {flip}"] = [f"agent={agent}", flip]
            why = refusal(agent, [*flips, flip])  # e.g. noisy layers need a bias
            if why and why not in reasons:  # each reason once
                reasons.add(why)
                refused[f"{agent} {flip} with {' '.join(flips)}"] = [f"agent={agent}", *flips,
                                                                     flip]
            if not why:
                flips.append(flip)
        fields = {f.name for f in dataclasses.fields(AGENTS[agent].Config)}
        extra = ["agent.n_step=3", "env.num_envs=3"] if "n_step" in fields else []
        if refusal(agent, extra):
            refused[f"{agent} agent.n_step=3"] = [f"agent={agent}", "agent.n_step=3"]
            extra = ["env.num_envs=3"]
        cases[f"{agent} all"] = [f"agent={agent}", *flips, *extra]
    return cases, refused


OPTIONS, REFUSED = option_cases()


@pytest.mark.parametrize("name", REFUSED)
def test_an_option_an_agent_cannot_combine_with_is_refused_in_one_line(tmp_path, name):
    result = run_cli([*REFUSED[name], *TINY], cwd=tmp_path)
    key = REFUSED[name][-1].split("=")[0]
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and key in result.stderr, result.stderr
    assert not list(tmp_path.glob("outputs/runs/*/*/checkpoints"))


@pytest.mark.parametrize("name", OPTIONS)
def test_every_extension_trains_a_tiny_budget_and_logs_its_curves(run_dir, name):
    metrics = run_in_process(shrunk([*OPTIONS[name], "device=cpu", *TINY]), run_dir)
    assert metrics.status == "completed" and metrics.env_steps == 600
    scalars = read_scalars(run_dir)
    for tag in ("train/loss", "train/q_mean", "eval/return_mean"):
        assert scalars[tag] and all(np.isfinite(v) for _, v in scalars[tag]), tag
