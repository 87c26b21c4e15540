"""Online Q-learning with a Q-network: one gradient step per transition, no replay, no target net.

After every env step the network takes one gradient step on the TD error of that transition,
toward ``r + gamma * max_a' Q(s', a')``: no bootstrap when the episode terminated, bootstrap when
it was only truncated by a time limit. With one-hot observations, ``network.hidden=[]``,
``network.bias=false`` and SGD with learning rate alpha, this is exactly tabular Q-learning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rlexp.agents.base import AgentSpec, Transition
from rlexp.agents.qlearning import EpsilonConfig, QLearningAgent, QLearningConfig, td_loss


@dataclass
class QNetConfig(QLearningConfig):
    name: str = "qnet"
    #: Constant exploration by default: online Q-learning has no warm-up phase to anneal over.
    epsilon: EpsilonConfig = field(
        default_factory=lambda: EpsilonConfig(start=0.1, end=0.1, fraction=0.0)
    )


class QNetAgent(QLearningAgent):
    Config = QNetConfig

    def __init__(self, spec: AgentSpec):
        super().__init__(spec)
        self.gammas = torch.tensor([[m.cfg.gamma] for m in self.members], device=self.device)

    def learn(self, batch: Transition, should_stop=None) -> dict[str, torch.Tensor]:
        n = batch.obs.shape[1]
        self.env_steps += n
        # One forward pass over [obs; next_obs]; the next-state half is detached: it is the target.
        q_all = self.q_net(self._tensor(np.concatenate([batch.obs, batch.next_obs], axis=1)))
        action = self._tensor(batch.action).long()
        q = q_all[:, :n].gather(2, action[..., None]).squeeze(2)
        reward = self._tensor(batch.reward, torch.float32)
        not_done = self._tensor(~batch.terminated, torch.float32)
        target = reward + self.gammas * not_done * q_all[:, n:].detach().max(dim=2).values
        loss = td_loss(q, target, self.cfg.loss)
        self._gradient_step(loss)
        return {"loss": loss.detach(), "q_mean": q.detach().mean(dim=1)}
