"""QR-DQN's pieces: the quantile Huber loss by hand, that its minimiser is the quantile, and
the target QR-DQN regresses on."""

from functools import partial

import numpy as np
import pytest
import torch

from rlexp.agents.qlearning import NetworkConfig
from rlexp.agents.qrdqn import QRDQNAgent, QRDQNConfig, quantile_huber_loss
from tests.conftest import solo_agent
from tests.test_dqn import ACTIONS, SPACE, constant_q, step


@pytest.mark.parametrize(("predicted", "taus", "target", "kappa", "want"), [
    # u = 0.5 - 0 = 0.5 (weight 0.25), u = 0.5 - 1 = -0.5 (weight |0.75 - 1|): each
    # 0.25 * Huber(0.5) = 0.25 * 0.125; summed over the two predicted quantiles.
    ([0.0, 1.0], [0.25, 0.75], [0.5], 1.0, 0.0625),
    # kappa 0, plain quantile regression: u = 2 (weight 0.1), u = -2 (weight 0.9), mean of
    # 0.2 and 1.8 over the two targets.
    ([1.0], [0.1], [3.0, -1.0], 0.0, 1.0),
    # Beyond kappa the loss is linear: Huber(3) = 1 * (3 - 0.5) = 2.5, weight 0.5.
    ([0.0], [0.5], [3.0], 1.0, 1.25),
    # kappa 2 divides by kappa: Huber_2(1) = 0.5, / 2 = 0.25, weight 1 - 0.3 (u < 0).
    ([1.0], [0.3], [0.0], 2.0, 0.7 * 0.25),
])
def test_quantile_huber_loss_matches_hand_computed_values(predicted, taus, target, kappa, want):
    got = quantile_huber_loss(torch.tensor(predicted), torch.tensor(taus), torch.tensor(target),
                              kappa)
    assert got.item() == pytest.approx(want)


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.8])
def test_the_quantile_loss_is_least_at_the_taus_quantile(tau):
    samples = torch.arange(101, dtype=torch.float64)  # quantile tau is 100 * tau
    thetas = torch.linspace(0, 100, 1001, dtype=torch.float64)
    losses = [quantile_huber_loss(t[None], torch.tensor([tau]), samples, 0.0).item()
              for t in thetas]
    assert thetas[int(np.argmin(losses))].item() == pytest.approx(100 * tau, abs=1.0)


def test_qrdqn_regresses_on_shifted_quantiles_of_the_greedy_next_action():
    # Online quantiles (2 per action): action 0 -> (0, 0); the target net: action 0 -> (1, 3),
    # action 1 -> (2, 2) (mean 2 each: action 0 wins the tie as argmax's first). Reward 1,
    # gamma 0.9, one-step: target quantiles 1 + 0.9 * (1, 3) = (1.9, 3.7).
    cfg = QRDQNConfig(quantiles=2, kappa=1.0, gamma=0.9, learning_starts=100, batch_size=4,
                      train_freq=1, gradient_steps=1, n_step=1, double_q=False,
                      network=NetworkConfig(hidden=[8]))
    agent = solo_agent(QRDQNAgent, cfg, SPACE, ACTIONS, partial(torch.optim.SGD, lr=0.1),
                       total_steps=1000)
    step(agent)
    constant_q(agent.q_net, [0.0, 0.0, 5.0, 5.0])
    constant_q(agent.target_net, [1.0, 3.0, 2.0, 2.0])
    loss, q = agent._gradient_update()
    want = quantile_huber_loss(torch.zeros(2), torch.tensor([0.25, 0.75]),
                               torch.tensor([1.9, 3.7]), 1.0)
    assert loss[0].item() == pytest.approx(want.item(), rel=1e-5)
    assert q[0].tolist() == pytest.approx([0.0] * len(q[0]))  # Q(s, 0): its quantiles' mean
    # Q-values are the quantiles' means: after the step, action 1's are still (5, 5).
    assert agent.q_values(np.zeros((1, 1, 2), np.float32))[0, 0, 1].item() == pytest.approx(5.0)
