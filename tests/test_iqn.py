"""IQN (rlexp.agents.iqn): the cosine embedding of the fractions by hand, where the fractions
enter the network, the risk-neutral Q-values that pick actions, and a population's stacked
networks computing each member's network alone."""

from __future__ import annotations

import copy
import math
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlexp.agents import AGENTS, AgentSpec, Member
from rlexp.agents.iqn import ImplicitQuantileNetwork, StackedIQN, split_network
from rlexp.nets import q_network

SPACE = gym.spaces.Box(-1, 1, (3,), np.float32)


def test_the_fractions_embedding_is_relu_of_a_linear_map_of_cosines_by_hand():
    torso, head = nn.Identity(), nn.Linear(2, 1)
    net = ImplicitQuantileNetwork(torso, 2, head, cosine_embeddings=3)
    with torch.no_grad():
        net.embedding.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 1.0]]))
        net.embedding.bias.copy_(torch.tensor([0.0, -0.25]))
    taus = torch.tensor([[0.0, 0.5], [0.25, 1.0]])  # [batch 2, T 2]
    embedded = net.embed(taus)
    assert embedded.shape == (2, 2, 2)
    for b in range(2):
        for t in range(2):
            tau = taus[b, t].item()
            cos = [math.cos(math.pi * i * tau) for i in range(3)]
            want = [max(0.0, cos[0] + 2 * cos[1] - cos[2]),
                    max(0.0, 0.5 * cos[0] - cos[1] + cos[2] - 0.25)]
            assert embedded[b, t].tolist() == pytest.approx(want, abs=1e-6)
    # The quantiles: the observation's features times the embedding, through the head.
    obs = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    out = net(obs, taus)
    assert out.shape == (2, 2, 1)
    torch.testing.assert_close(out, head(obs[:, None, :] * embedded))


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("noisy", [False, True])
def test_the_fractions_enter_before_the_last_hidden_layer(dueling, noisy):
    net = q_network(SPACE, 2, [8, 6], dueling=dueling, noisy=noisy)
    torso, head = split_network(net)
    widths = [m.out_features for m in torso if hasattr(m, "out_features")]
    assert widths == [8]  # the first hidden layer; the second and the head come after
    assert len([m for m in head if not isinstance(m, nn.ReLU)]) == 2


def iqn_population(seeds, hidden=(16, 16)):
    cfg = AGENTS["iqn"].Config(tau_samples=5, tau_prime_samples=6, quantile_samples=4,
                               cosine_embeddings=8)
    cfg.network.hidden = list(hidden)
    return AGENTS["iqn"](AgentSpec([Member(cfg, seed=s, lr=1e-3) for s in seeds], SPACE,
                                   gym.spaces.Discrete(2), partial(torch.optim.Adam, lr=1e-3),
                                   torch.device("cpu"), total_steps=400))


def test_actions_are_picked_by_the_mean_of_the_quantiles_at_the_k_midpoints_in_evaluation():
    agent = iqn_population([0, 1])
    obs = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    k = agent.cfg.quantile_samples
    midpoints = (torch.arange(k) + 0.5) / k  # 0.125, 0.375, 0.625, 0.875
    with torch.no_grad():
        quantiles = agent.q_net(torch.as_tensor(obs), midpoints.expand(2, 3, k))
    q = agent.q_values(obs)
    torch.testing.assert_close(q, quantiles.mean(dim=2))  # risk-neutral: the mean return
    assert np.array_equal(agent.act(obs, explore=False), q.argmax(dim=2).numpy())
    assert torch.equal(agent.q_values(obs), q)  # deterministic


def test_a_populations_stacked_networks_compute_each_members_network_and_gradients():
    agent = iqn_population([0])
    assert isinstance(agent.q_net, StackedIQN)  # a population of one computes as a member
    nets = [agent._network(s) for s in range(3)]
    stacked = StackedIQN([copy.deepcopy(n) for n in nets])
    x = torch.randn(3, 5, 3)
    taus = torch.rand(3, 5, 4)
    out = stacked(x, taus)
    (out ** 2).sum().backward()
    for i, net in enumerate(nets):
        solo = StackedIQN([net])
        alone = solo(x[i:i + 1], taus[i:i + 1])
        assert torch.equal(out[i], alone[0])  # the same kernels, member by member
        (alone ** 2).sum().backward()
        for k, (p, q) in enumerate(zip(stacked.parameters(), solo.parameters(), strict=True)):
            assert torch.equal(stacked.per_member(p.grad, k)[i],
                               solo.per_member(q.grad, k)[0]), stacked.names[k]
        # And the single network's own forward computes the same function.
        torch.testing.assert_close(alone[0], net(x[i], taus[i]), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        assert torch.equal(stacked.act_forward(x, taus), out.detach())
