"""Munchausen DQN (Vieillard et al. 2020, "Munchausen Reinforcement Learning").

DQN with two changes to the target, both read from the target network's Q-values ``q``, through
its softmax policy ``pi = softmax(q / temperature)``:
- the *Munchausen bonus*: the reward gets ``alpha * clip(temperature * log pi(a|s), l0, 0)``,
  the scaled log-probability of the action taken, clipped below at ``l0`` (so that it stays
  bounded when pi(a|s) is near 0);
- a *soft* bootstrap: ``sum_a' pi(a'|s') (q(s', a') - temperature * log pi(a'|s'))``, the
  value of the entropy-regularised policy, instead of ``max_a' q(s', a')``.

The target is ``r + bonus + discount * soft value``; the loss, replay, target network and update
schedule are DQN's. The bonus is that of the first action of a transition, so targets are
one-step (``n_step=1``); and no action is picked by an argmax, so Double DQN does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.agents.qlearning import td_loss
from rlexp.replay import ReplaySample


@dataclass
class MDQNConfig(DQNConfig):
    """DQN's fields with one-step targets and no Double DQN, and the Munchausen terms (the
    paper's Atari values: tau 0.03, alpha 0.9, l0 -1)."""

    name: str = "mdqn"
    #: The entropy temperature, the paper's tau: the softmax policy is softmax(q / temperature)
    #: (named apart from ``tau``, the target network's update rate).
    temperature: float = 0.03
    #: The Munchausen scaling alpha of the log-policy bonus (0: soft DQN with no bonus).
    alpha: float = 0.9
    #: The lower clip l0 of ``temperature * log pi(a|s)`` in the bonus.
    l0: float = -1.0
    n_step: int = 1
    double_q: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"agent.temperature={self.temperature} must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"agent.alpha={self.alpha} must be in [0, 1]")
        if not self.l0 < 0:
            raise ValueError(f"agent.l0={self.l0} must be negative")
        if self.n_step != 1:
            raise ValueError(f"agent.n_step={self.n_step}: Munchausen DQN's bonus is that of a "
                             "transition's first action, so its targets are one-step (n_step=1)")
        if self.double_q:
            raise ValueError("agent.double_q=true does not apply to Munchausen DQN: its target "
                             "is a softmax policy's value, no action is picked (double_q=false)")


def munchausen_target(q_obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                      discount: torch.Tensor, q_next: torch.Tensor, temperature: float,
                      alpha: float, l0: float) -> torch.Tensor:
    """``r + alpha * clip(temperature * log pi(a|s), l0, 0) + discount * sum_a' pi(a'|s')
    (q(s', a') - temperature * log pi(a'|s'))``, with ``pi = softmax(q / temperature)``.

    ``q_obs``, ``q_next``: the target network's Q-values ``[..., n_actions]`` of the
    observations and the next ones; ``action``, ``reward``, ``discount``: ``[...]``."""
    log_pi = torch.log_softmax(q_obs / temperature, dim=-1)
    taken = log_pi.gather(-1, action[..., None]).squeeze(-1)
    bonus = alpha * (temperature * taken).clamp(min=l0, max=0.0)
    next_log_pi = torch.log_softmax(q_next / temperature, dim=-1)
    soft_value = (next_log_pi.exp() * (q_next - temperature * next_log_pi)).sum(dim=-1)
    return reward + bonus + discount * soft_value


class MDQNAgent(DQNAgent):
    Config = MDQNConfig

    def _loss(self, b: ReplaySample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        q = self.q_net(b.obs).gather(2, b.action[..., None]).squeeze(2)
        with torch.no_grad():
            # One forward of the target network over both batches.
            both = self.target_net(torch.cat([b.obs, b.next_obs], dim=1))
            q_obs, q_next = both.split(b.obs.shape[1], dim=1)
            target = munchausen_target(q_obs, b.action, b.reward, b.discount, q_next,
                                       cfg.temperature, cfg.alpha, cfg.l0)
        return td_loss(q, target, cfg.loss, b.weight), q, q.detach() - target
