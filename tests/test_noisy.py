"""Noisy networks: the factorised noise's shapes, the output's mean and variance over draws, and
greedy evaluation without noise."""

import math
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.agents.qlearning import EpsilonConfig, NetworkConfig
from rlexp.nets import NoisyLinear, q_network, resample_noise, set_noise
from tests.conftest import solo_agent


def test_factorised_noise_draws_inputs_plus_outputs_values_and_builds_an_outer_product():
    layer = NoisyLinear(5, 3)
    layer.resample(torch.Generator().manual_seed(0))
    assert layer.eps_in.shape == (5,) and layer.eps_out.shape == (3,)
    raw = torch.randn(8, generator=torch.Generator().manual_seed(0))
    f = raw.sign() * raw.abs().sqrt()  # f(x) = sign(x) sqrt(|x|)
    assert torch.equal(layer.eps_in, f[:5]) and torch.equal(layer.eps_out, f[5:])
    noise = (layer.weight - layer.weight_mu) / layer.weight_sigma
    assert torch.allclose(noise, torch.outer(f[5:], f[:5]))
    assert torch.allclose(layer.bias, layer.bias_mu + layer.bias_sigma * f[5:])
    # The paper's initialisation: sigma = sigma0 / sqrt(inputs).
    assert torch.allclose(layer.weight_sigma, torch.full((3, 5), 0.5 / math.sqrt(5)))


def test_the_output_has_the_means_output_as_its_mean_and_the_factorised_variance():
    torch.manual_seed(0)
    layer = NoisyLinear(4, 2, sigma0=0.8)
    x = torch.tensor([1.0, -2.0, 0.5, 3.0])
    generator = torch.Generator().manual_seed(1)
    draws = []
    for _ in range(12_000):
        layer.resample(generator)
        draws.append(layer(x))
    draws = torch.stack(draws).double()
    with torch.no_grad():
        mean = layer.weight_mu @ x + layer.bias_mu
        # y_k = mean_k + f(e_k) (sum_j s_kj f(e_j) x_j + s_k); E f(e)^2 = E|e| = sqrt(2 / pi).
        e_abs = math.sqrt(2 / math.pi)
        variance = e_abs * (e_abs * (layer.weight_sigma**2 @ x**2) + layer.bias_sigma**2)
    assert draws.mean(0).tolist() == pytest.approx(mean.tolist(), abs=0.04)
    assert draws.var(0).tolist() == pytest.approx(variance.tolist(), rel=0.06)


def test_without_noise_the_network_is_its_means_and_deterministic():
    net = q_network(gym.spaces.Box(-1, 1, (3,)), 2, [8], dueling=True, noisy=True)
    x = torch.randn(5, 3)
    resample_noise(net, torch.Generator().manual_seed(0))
    noisy = net(x)
    set_noise(net, False)
    quiet = net(x)
    assert not torch.allclose(noisy, quiet)
    resample_noise(net, torch.Generator().manual_seed(1))  # new noise, still off
    assert torch.equal(net(x), quiet)


def test_a_noisy_agent_explores_without_epsilon_and_acts_greedily_in_evaluation():
    cfg = DQNConfig(network=NetworkConfig(hidden=[16], noisy=True, sigma0=2.0),
                    epsilon=EpsilonConfig(start=0.0, end=0.0, fraction=0.0))
    agent = solo_agent(DQNAgent, cfg, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4),
                       partial(torch.optim.Adam, lr=1e-3), total_steps=100)
    obs = np.full((1, 1, 3), 0.3, np.float32)
    explored = {int(agent.act(obs)[0, 0]) for _ in range(200)}
    greedy = {int(agent.act(obs, explore=False)[0, 0]) for _ in range(50)}
    assert len(explored) > 1 and len(greedy) == 1
    assert greedy == {int(agent.q_values(obs)[0, 0].argmax())}
