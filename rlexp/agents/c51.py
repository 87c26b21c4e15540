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

    def __init__(self, cfg: C51Config, *args, **kwargs):
        self.outputs_per_action = cfg.atoms  # read by the network's construction
        super().__init__(cfg, *args, **kwargs)
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.atoms, device=self.device)

    def _logits(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.view(len(outputs), self.n_actions, self.cfg.atoms)

    def _q_from_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        return (self._logits(outputs).softmax(dim=2) * self.support).sum(dim=2)

    def _loss(self, b: ReplaySample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, n = self.cfg, len(b.action)
        rows = torch.arange(n, device=self.device)
        if cfg.double_q:  # one online forward over [obs; next_obs]
            both = self._logits(self.q_net(torch.cat([b.obs, b.next_obs])))
            logits = both[:n]
            next_q = (both[n:].detach().softmax(dim=2) * self.support).sum(dim=2)
        else:
            logits = self._logits(self.q_net(b.obs))
        with torch.no_grad():
            next_probs = self._logits(self.target_net(b.next_obs)).softmax(dim=2)
            if not cfg.double_q:
                next_q = (next_probs * self.support).sum(dim=2)
            target = project(next_probs[rows, next_q.argmax(dim=1)], b.reward, b.discount,
                             self.support)
        log_probs = nn.functional.log_softmax(logits[rows, b.action], dim=1)
        cross_entropy = -(target * log_probs).sum(dim=1)
        weighted = cross_entropy if b.weight is None else b.weight * cross_entropy
        q = (log_probs.detach().exp() * self.support).sum(dim=1)
        return weighted.mean(), q, cross_entropy.detach()
