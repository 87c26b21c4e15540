"""Munchausen DQN's target by hand: the clipped, scaled log-policy bonus and the soft value."""

import math

import pytest
import torch

from rlexp.agents.mdqn import munchausen_target

LOG_1_PLUS_E = math.log(1 + math.e)


@pytest.mark.parametrize(("action", "want"), [
    # pi(.|s) = softmax(1, 0): log pi(1|s) = -log(1 + e) = -1.313, below l0 = -1: clipped, so
    # the bonus is 0.9 * -1. The next state's Q-values are equal: pi uniform, its soft value
    # sum 0.5 * (0 + log 2) = log 2. Target 0.5 - 0.9 + 0.9 log 2.
    (1, 0.5 - 0.9 + 0.9 * math.log(2)),
    # log pi(0|s) = 1 - log(1 + e) = -0.313: not clipped, bonus 0.9 * -0.313.
    (0, 0.5 + 0.9 * (1 - LOG_1_PLUS_E) + 0.9 * math.log(2)),
])
def test_the_munchausen_target_matches_hand_computed_values(action, want):
    target = munchausen_target(torch.tensor([1.0, 0.0]), torch.tensor(action), torch.tensor(0.5),
                               torch.tensor(0.9), torch.tensor([0.0, 0.0]), temperature=1.0,
                               alpha=0.9, l0=-1.0)
    assert target.item() == pytest.approx(want)


def test_a_cold_softmax_without_the_bonus_is_q_learnings_target():
    # temperature -> 0: pi is greedy and the soft value max_a q(s', a); alpha 0: no bonus.
    target = munchausen_target(torch.tensor([[3.0, 1.0]]), torch.tensor([1]), torch.tensor([1.0]),
                               torch.tensor([0.5]), torch.tensor([[1.0, 2.0]]), temperature=1e-4,
                               alpha=0.0, l0=-1.0)
    assert target.tolist() == pytest.approx([1.0 + 0.5 * 2.0])


def test_the_bonus_is_never_positive_and_never_below_alpha_times_l0():
    q = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0)) * 5
    action = torch.randint(4, (1000,), generator=torch.Generator().manual_seed(1))
    zero = torch.zeros(1000)
    bonus = munchausen_target(q, action, zero, zero, torch.zeros(1000, 4), temperature=0.5,
                              alpha=0.9, l0=-1.0)
    assert bonus.max().item() <= 0.0 and bonus.min().item() >= -0.9 - 1e-6
    assert bonus.min().item() == pytest.approx(-0.9)  # some are clipped
