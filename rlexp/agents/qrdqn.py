"""QR-DQN: distributional DQN by quantile regression (Dabney et al. 2018, "Distributional
Reinforcement Learning with Quantile Regression").

The network predicts, for each action, ``quantiles`` values: the return distribution's quantiles
at the fractions ``tau_i = (2i + 1) / (2N)`` (the midpoints of N equal slices of [0, 1]). Q(s, a)
is their mean. The target is the next state's quantiles for the greedy next action (chosen by the
online network's Q-values with ``double_q``, else the target network's), each moved by the
Bellman operator, ``r + discount * theta_j``; every predicted quantile regresses on every target
quantile with the quantile Huber loss (:func:`quantile_huber_loss`). Unlike C51 the support is
learned, so no return range is set. Everything else is DQN's: replay (n-step, prioritized by the
per-sample loss), target network and update schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlexp.agents.c51 import of_action
from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.replay import ReplaySample


@dataclass
class QRDQNConfig(DQNConfig):
    """DQN's fields (``loss`` is not used: the loss is the quantile Huber loss) and the
    quantiles."""

    name: str = "qrdqn"
    #: Quantiles per action, N (the paper's Atari agent uses 200).
    quantiles: int = 50
    #: The Huber loss's threshold kappa in the quantile Huber loss (the paper's 1; 0 is the
    #: plain quantile regression loss).
    kappa: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantiles < 1:
            raise ValueError(f"agent.quantiles={self.quantiles} must be at least 1")
        if self.kappa < 0:
            raise ValueError(f"agent.kappa={self.kappa} must be >= 0")


def quantile_huber_loss(predicted: torch.Tensor, taus: torch.Tensor, target: torch.Tensor,
                        kappa: float) -> torch.Tensor:
    """The quantile Huber loss of each sample (Dabney et al. 2018a, eq. 10): the sum over the
    predicted quantiles ``i`` of the mean over the target quantiles ``j`` of
    ``|tau_i - 1{u_ij < 0}| * L_kappa(u_ij) / kappa``, with ``u_ij = target_j - predicted_i``
    and ``L_kappa`` the Huber loss of threshold kappa (``kappa = 0``: ``|u|``, plain quantile
    regression).

    ``predicted`` ``[..., N]`` at fractions ``taus`` (``[..., N]`` or ``[N]``), ``target``
    ``[..., N']`` -> ``[...]``."""
    u = target[..., None, :] - predicted[..., :, None]  # [..., N, N']
    if kappa > 0:
        huber = torch.where(u.abs() <= kappa, 0.5 * u.square(), kappa * (u.abs() - 0.5 * kappa))
        huber = huber / kappa
    else:
        huber = u.abs()
    weight = (taus[..., :, None] - (u.detach() < 0).to(u.dtype)).abs()
    return (weight * huber).mean(dim=-1).sum(dim=-1)


class QRDQNAgent(DQNAgent):
    Config = QRDQNConfig

    def __init__(self, spec):
        super().__init__(spec)
        n = self.cfg.quantiles
        #: The fractions the outputs are the quantiles at: the slices' midpoints.
        self.taus = (torch.arange(n, device=self.device, dtype=torch.float32) + 0.5) / n

    def outputs_per_action(self) -> int:
        return self.cfg.quantiles

    def _quantiles(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.view(*outputs.shape[:2], self.n_actions, self.cfg.quantiles)

    def _q_from_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        return self._quantiles(outputs).mean(dim=3)

    def _loss(self, b: ReplaySample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        predicted = of_action(self._quantiles(self.q_net(b.obs)), b.action)
        with torch.no_grad():
            next_quantiles = self._quantiles(self.target_net(b.next_obs))
            picking = self._quantiles(self.q_net(b.next_obs)) if self.cfg.double_q \
                else next_quantiles
            greedy = of_action(next_quantiles, picking.mean(dim=3).argmax(dim=2))
            target = b.reward[..., None] + b.discount[..., None] * greedy
        per_sample = quantile_huber_loss(predicted, self.taus, target, self.cfg.kappa)
        weighted = per_sample if b.weight is None else b.weight * per_sample
        return weighted.mean(dim=1), predicted.detach().mean(dim=2), per_sample.detach()
