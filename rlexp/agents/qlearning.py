"""What every Q-learning agent shares: epsilon-greedy acting on a Q-network, built with its
optimizer from the agent's config, and one gradient step at a time.

Subclasses (qnet, dqn, c51) say how they learn; an agent whose network outputs something
other than one value per action (C51's return distributions) says how many outputs each action
has (``outputs_per_action``) and how they become Q-values (``_q_from_outputs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlexp.agents.base import Agent, AgentConfig
from rlexp.nets import ACTIVATIONS, KINDS, functional_forward, q_network


@dataclass
class NetworkConfig:
    """The Q-network (:mod:`rlexp.nets`): an MLP (with ``hidden=[]`` and ``bias=false`` on a
    discrete env, a Q-table) or a pixel benchmark's convolutional network."""

    #: auto (picked from the observations: nature_cnn for Atari frame stacks, minatar_cnn for
    #: MinAtar's planes, else mlp), mlp, nature_cnn (Mnih et al. 2015) or minatar_cnn (Young &
    #: Tian 2019). The convolutional networks are their papers'; the fields below shape the MLP.
    kind: str = "auto"
    #: MLP hidden layer widths, e.g. [64, 64]; [] is a single linear layer (started at zero).
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    #: Nonlinearity between layers: relu, tanh or elu.
    activation: str = "relu"
    #: Whether the linear layers have a bias.
    bias: bool = True
    #: Dueling head (Wang et al. 2016): Q(s, a) = V(s) + A(s, a) - mean_a A(s, a), the value
    #: and the advantages each a linear map of the last hidden layer (the torso is shared).
    dueling: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"agent.network.kind={self.kind!r} is not one of {', '.join(KINDS)}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"agent.network.hidden={list(self.hidden)}: widths must be positive")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"agent.network.activation={self.activation!r} is not one of "
                f"{', '.join(ACTIVATIONS)}"
            )


@dataclass
class EpsilonConfig:
    """Epsilon-greedy exploration, annealed linearly from ``start`` to ``end``."""

    #: Exploration rate at step 0.
    start: float = 1.0
    #: Exploration rate once annealed, kept until the end.
    end: float = 0.05
    #: Fraction of ``total_steps`` over which epsilon goes from start to end (0: always ``end``).
    fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("start", "end", "fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"agent.epsilon.{name}={value} must be in [0, 1]")

    def value(self, step: int, total_steps: int) -> float:
        """Epsilon after ``step`` env steps of a ``total_steps`` budget."""
        duration = self.fraction * total_steps
        if step >= duration:
            return self.end
        return self.start + (self.end - self.start) * step / duration


LOSSES = ("mse", "huber")


@dataclass
class QLearningConfig(AgentConfig):
    """Fields every Q-learning agent has; each agent extends it with its own."""

    #: Discount factor.
    gamma: float = 0.99
    #: TD loss: mse (0.5 * td**2, so SGD's lr is the tabular step size) or huber (delta 1).
    loss: str = "mse"
    #: Clip the global gradient norm to this value before each step; null: no clipping.
    max_grad_norm: float | None = None
    #: The learning rate falls linearly from optimizer.lr to this fraction of it at
    #: total_steps (1: constant), so that late updates move a learned policy less.
    lr_final_fraction: float = 1.0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    epsilon: EpsilonConfig = field(default_factory=EpsilonConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"agent.gamma={self.gamma} must be in [0, 1]")
        if self.loss not in LOSSES:
            raise ValueError(f"agent.loss={self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"agent.max_grad_norm={self.max_grad_norm} must be positive or null")
        if not 0.0 <= self.lr_final_fraction <= 1.0:
            raise ValueError(f"agent.lr_final_fraction={self.lr_final_fraction} must be in "
                             "[0, 1]")


def td_loss(q: torch.Tensor, target: torch.Tensor, kind: str,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean TD loss: 0.5 * (q - target)**2 (mse) or Huber with delta 1 (equal near 0);
    ``weight``: per-sample weights (prioritized replay's importance-sampling weights)."""
    reduction = "mean" if weight is None else "none"
    if kind == "huber":
        loss = nn.functional.huber_loss(q, target, reduction=reduction)
    else:
        loss = 0.5 * nn.functional.mse_loss(q, target, reduction=reduction)
    return loss if weight is None else (weight * loss).mean()


class QLearningAgent(Agent):
    """Epsilon-greedy on a Q-network; subclasses implement ``learn``."""

    Config = QLearningConfig
    #: Network outputs per action: 1 (a Q-value), or e.g. C51's atoms.
    outputs_per_action = 1

    def __init__(self, cfg: QLearningConfig, observation_space, action_space, make_optimizer,
                 device, total_steps, seed, frame_stack=1):
        super().__init__(cfg, observation_space, action_space, make_optimizer, device,
                         total_steps, seed, frame_stack)
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{cfg.name} needs a Discrete action space, got {action_space}")
        self.n_actions = int(action_space.n)
        #: Env steps seen by ``learn`` so far (drives the epsilon schedule).
        self.env_steps = 0
        # Exploration draws come from numpy: when every env explores, no forward pass is needed.
        self.rng = np.random.default_rng(seed)
        net = cfg.network
        #: The online Q-network and its optimizer.
        self.q_net = q_network(observation_space, self.n_actions, net.hidden, net.activation,
                               net.bias, net.kind, dueling=net.dueling,
                               outputs_per_action=self.outputs_per_action).to(device)
        self.optimizer = make_optimizer(self.q_net.parameters())
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._act_forward = functional_forward(self.q_net)

    @property
    def epsilon(self) -> float:
        return self.cfg.epsilon.value(self.env_steps, self.total_steps)

    @property
    def lr_scale(self) -> float:
        """The learning rate now, as a fraction of optimizer.lr (see lr_final_fraction)."""
        done = min(self.env_steps / self.total_steps, 1.0)
        return 1.0 - (1.0 - self.cfg.lr_final_fraction) * done

    def log_scalars(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "lr": self._base_lrs[0] * self.lr_scale}

    def _q_from_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's outputs ``[batch, n_actions * outputs_per_action]`` as Q-values."""
        return outputs

    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._q_from_outputs(self.q_net(torch.as_tensor(obs, device=self.device)))

    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        n = len(obs)
        explore_mask = self.rng.random(n) < self.epsilon if explore else None
        if explore_mask is not None and explore_mask.all():  # no forward pass needed
            return self.rng.integers(self.n_actions, size=n)
        with torch.inference_mode():
            q = self._q_from_outputs(self._act_forward(torch.as_tensor(obs, device=self.device)))
        greedy = q.argmax(dim=1).cpu().numpy()
        if explore_mask is None or not explore_mask.any():
            return greedy
        return np.where(explore_mask, self.rng.integers(self.n_actions, size=n), greedy)

    def _gradient_step(self, loss: torch.Tensor) -> None:
        if self.cfg.lr_final_fraction != 1.0:
            scale = self.lr_scale
            for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
                group["lr"] = base * scale
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q_net.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer state and counters; subclasses add what else they need to resume."""
        return {
            "q_net": self.q_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
            "rng": self.rng.bit_generator.state,  # a dict of ints and strings
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.rng.bit_generator.state = state["rng"]
