"""C51: distributional DQN (Bellemare et al. 2017).

The network predicts, for each action, a categorical distribution of the return over ``atoms``
fixed values evenly spaced on ``[v_min, v_max]`` (the support); Q(s, a) is its mean. The target
is the next state's distribution for the greedy next action (by the online network's Q-values
with ``double_q``, else the target network's), shifted and shrunk by the Bellman operator,
``r + discount * z``, and projected back onto the support; the loss is the cross-entropy of the
prediction against it. Everything else is DQN's: replay (n-step, prioritized by the per-sample
loss), target network and update schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rlexp.agents.base import AgentSpec
from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.replay import ReplaySample


@dataclass
class C51Config(DQNConfig):
    """DQN's fields (``loss`` is not used: C51's loss is the cross-entropy) and the support."""

    name: str = "c51"
    #: Number of atoms of the support (the paper's 51).
    atoms: int = 51
    #: The smallest and largest return the support represents; targets beyond are clipped to
    #: them. The paper's [-10, 10] suits clipped Atari rewards; a CartPole return (gamma 0.99)
    #: reaches 100.
    v_min: float = -10.0
    v_max: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.atoms < 2:
            raise ValueError(f"agent.atoms={self.atoms} must be at least 2")
        if not self.v_min < self.v_max:
            raise ValueError(f"agent.v_min={self.v_min} must be below agent.v_max={self.v_max}")


def project(probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
            support: torch.Tensor) -> torch.Tensor:
    """The distribution of ``reward + discount * Z`` (Z: ``probs`` ``[batch, atoms]`` over
    ``support``) projected onto ``support``: each atom's mass is split between the two
    neighbouring atoms in proportion to closeness (Bellemare et al. 2017, Algorithm 1)."""
    v_min, v_max, atoms = support[0], support[-1], len(support)
    shifted = (reward[:, None] + discount[:, None] * support[None]).clamp(v_min, v_max)
    position = (shifted - v_min) / ((v_max - v_min) / (atoms - 1))
    lower, upper = position.floor().long(), position.ceil().long()
    # On an atom exactly, floor == ceil: move one of them so the whole mass lands on it.
    exact = lower == upper
    lower = torch.where(exact & (upper > 0), lower - 1, lower)
    upper = torch.where(exact & (lower == upper), upper + 1, upper)
    target = torch.zeros_like(probs)
    target.scatter_add_(1, lower, probs * (upper - position))
    target.scatter_add_(1, upper, probs * (position - lower))
    return target


class C51Agent(DQNAgent):
    Config = C51Config

    def __init__(self, spec: AgentSpec):
        super().__init__(spec)
        cfg = self.cfg
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.atoms, device=self.device)

    def outputs_per_action(self) -> int:
        return self.cfg.atoms

    def _logits(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.view(*outputs.shape[:2], self.n_actions, self.cfg.atoms)

    def _q_from_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        return (self._logits(outputs).softmax(dim=3) * self.support).sum(dim=3)

    def _loss(self, b: ReplaySample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self._logits(self.q_net(b.obs))
        with torch.no_grad():
            next_probs = self._logits(self.target_net(b.next_obs)).softmax(dim=3)
            # Double DQN: the online net picks the next action (in a forward of its own, so
            # that backward runs over the batch with gradients only).
            picking = self._logits(self.q_net(b.next_obs)).softmax(dim=3) \
                if self.cfg.double_q else next_probs
            next_q = (picking * self.support).sum(dim=3)
            greedy = of_action(next_probs, next_q.argmax(dim=2))
            target = project(greedy.flatten(0, 1), b.reward.flatten(), b.discount.flatten(),
                             self.support).view_as(greedy)
        log_probs = nn.functional.log_softmax(of_action(logits, b.action), dim=2)
        cross_entropy = -(target * log_probs).sum(dim=2)
        weighted = cross_entropy if b.weight is None else b.weight * cross_entropy
        q = (log_probs.detach().exp() * self.support).sum(dim=2)
        return weighted.mean(dim=1), q, cross_entropy.detach()


def of_action(per_action: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """``[members, batch, n_actions, atoms]`` -> the atoms of each sample's ``action``."""
    index = action[:, :, None, None].expand(*action.shape, 1, per_action.shape[3])
    return per_action.gather(2, index).squeeze(2)
