"""What every Q-learning agent shares: epsilon-greedy acting on the members' Q-networks, built
with their optimizer from the agent's config, and one gradient step at a time.

Subclasses (qnet, dqn, c51) say how they learn; an agent whose network outputs something
other than one value per action (C51's return distributions) says how many outputs each action
has (``outputs_per_action()``) and how they become Q-values (``_q_from_outputs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlexp.agents.base import Agent, AgentConfig, AgentSpec
from rlexp.members import MemberOptimizer
from rlexp.nets import (
    ACTIVATIONS,
    KINDS,
    NORMS,
    LossOfOutputs,
    MemberNetworks,
    OutputGradient,
    member_networks,
    network_kind,
    q_network,
)


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
    #: Noisy networks (Fortunato et al. 2018): every fully connected layer is a linear layer
    #: with learned factorised Gaussian noise on its weights, drawn anew for each action
    #: choice and each gradient step (the online and target networks independently), and off
    #: in greedy evaluation. The noise explores, so epsilon may be 0. A noisy network trains
    #: alone, not in a population.
    noisy: bool = False
    #: The noise's initial scale: each sigma starts at sigma0 / sqrt(inputs) (the paper's 0.5).
    sigma0: float = 0.5
    #: Normalise every hidden layer before its nonlinearity: layer (LayerNorm, as PQN does; the
    #: MinAtar network's convolution over its channels) or null. A normalised network trains
    #: alone, not in a population.
    norm: str | None = None

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
        if self.noisy and not self.bias:
            raise ValueError("agent.network.noisy=true needs agent.network.bias=true (a noisy "
                             "layer's bias carries noise too)")
        if self.norm is not None and self.norm not in NORMS:
            raise ValueError(f"agent.network.norm={self.norm!r} is not one of "
                             f"{', '.join(NORMS)} or null")
        if not self.sigma0 > 0:
            raise ValueError(f"agent.network.sigma0={self.sigma0} must be positive")


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
#: The exploration mask of a member with one env that explores.
_ONE_ENV = np.ones(1, dtype=bool)


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

    member_fields: ClassVar[tuple[str, ...]] = ("gamma", "max_grad_norm", "lr_final_fraction",
                                                "epsilon")

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
    """Each member's mean TD loss ``[members]`` over its batch (``q``, ``target``:
    ``[members, batch]``): 0.5 * (q - target)**2 (mse) or Huber with delta 1 (equal near 0);
    ``weight``: per-sample weights (prioritized replay's importance-sampling weights)."""
    if kind == "huber":
        loss = nn.functional.huber_loss(q, target, reduction="none")
    else:
        loss = 0.5 * nn.functional.mse_loss(q, target, reduction="none")
    return (loss if weight is None else weight * loss).mean(dim=1)


def chosen_td_loss(outputs: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
                   kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's :func:`td_loss` ``[members]`` of the Q-values that ``action``
    ``[members, batch]`` chose among ``outputs`` ``[members, batch, actions]``, and those
    Q-values."""
    q = outputs.gather(2, action[..., None]).squeeze(2)
    return td_loss(q, target, kind), q


@torch.no_grad()
def chosen_td_loss_gradient(outputs: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
                            kind: str) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`chosen_td_loss` and the gradient of the members' summed losses with respect to
    ``outputs``, written out: autograd's backward functions called as its graph would call
    them (the mean's 1/batch, the 0.5 of mse, the loss's own backward, the gather's
    scatter), the same values bit for bit in a few ops instead of a graph of seven nodes."""
    loss, q = chosen_td_loss(outputs, action, target, kind)
    aten = torch.ops.aten
    mean = torch.ones_like(q).div_(q.shape[1])  # the mean's backward divides as this does
    if kind == "huber":
        dq = aten.huber_loss_backward(mean, q, target, 0, 1.0)
    else:
        dq = aten.mse_loss_backward(mean.mul_(0.5), q, target, 0)
    grad = outputs.new_zeros(outputs.shape).scatter_add_(2, action[..., None], dq[..., None])
    return (loss, q), grad


class QLearningAgent(Agent):
    """Epsilon-greedy on Q-networks; subclasses implement ``learn``."""

    Config = QLearningConfig

    def __init__(self, spec: AgentSpec):
        super().__init__(spec)
        cfg, action_space, device = self.cfg, spec.action_space, spec.device
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{cfg.name} needs a Discrete action space, got {action_space}")
        self.n_actions = int(action_space.n)
        #: Env steps of each member seen by ``learn`` so far (drives the schedules).
        self.env_steps = 0
        # Exploration draws come from numpy: when every env explores, no forward pass is needed.
        self.rngs = [np.random.default_rng(m.seed) for m in self.members]
        #: The members' online Q-networks (one module) and their optimizer.
        self.q_net = self._member_networks([self._network(m.seed) for m in self.members]
                                           ).to(device)
        self.optimizer = MemberOptimizer(self.q_net, spec.make_optimizer,
                                         [m.lr for m in self.members],
                                         [m.cfg.max_grad_norm for m in self.members])
        #: Whether the networks are noisy (agent.network.noisy).
        self.noisy = cfg.network.noisy
        #: Each member's generator of torch's random draws, for an agent that makes them
        #: (noisy networks' noise, IQN's quantile fractions); empty otherwise.
        self.torch_rngs = [torch.Generator(device=device).manual_seed(m.seed)
                           for m in self.members] if self.draws_with_torch() else []

    def _network(self, seed: int) -> nn.Sequential:
        """A member's network, initialised from torch's generator seeded with its seed."""
        net = self.cfg.network
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return q_network(self.observation_space, self.n_actions, net.hidden,
                             net.activation, net.bias, net.kind, dueling=net.dueling,
                             outputs_per_action=self.outputs_per_action(),
                             channels=self.spec.channels, noisy=net.noisy, sigma0=net.sigma0,
                             norm=net.norm)

    def _member_networks(self, nets: list[nn.Module]) -> MemberNetworks:
        """The members' networks as one module (:func:`rlexp.nets.member_networks`)."""
        return member_networks(nets)

    def draws_with_torch(self) -> bool:
        """Whether the agent makes random draws with torch (each member from its own
        generator, ``torch_rngs``)."""
        return self.noisy

    def outputs_per_action(self) -> int:
        """The network's outputs per action: 1 (a Q-value), or e.g. C51's atoms."""
        return 1

    @classmethod
    def joins_populations(cls, cfg, observation_space, channels) -> bool:
        # A convolutional network only ever trains alone (rlexp.nets.member_networks).
        return network_kind(cfg.network.kind, observation_space, channels) == "mlp"

    @classmethod
    def divergence_hints(cls, cfg) -> list[str]:
        return [] if cfg.max_grad_norm is not None else [
            "gradients are unclipped (set agent.max_grad_norm)"]

    @property
    def epsilons(self) -> list[float]:
        return [m.cfg.epsilon.value(self.env_steps, self.total_steps) for m in self.members]

    @property
    def lr_scales(self) -> list[float]:
        """Each member's learning rate now, as a fraction of its optimizer.lr (see
        lr_final_fraction)."""
        done = min(self.env_steps / self.total_steps, 1.0)
        return [1.0 - (1.0 - m.cfg.lr_final_fraction) * done for m in self.members]

    def log_scalars(self) -> dict[str, list[float]]:
        return {"epsilon": self.epsilons, "lr": self.optimizer.lrs(self.lr_scales)}

    def _q_from_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's outputs ``[members, batch, n_actions * outputs_per_action]`` as
        Q-values."""
        return outputs

    def _tensor(self, x: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None
                ) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dtype, device=self.device)

    def _noise(self, *nets: nn.Module, on: bool) -> None:
        """Noisy networks: new noise for ``nets`` (``on``), or their weights' means alone."""
        if not self.noisy:
            return
        for net in nets:
            net.set_noise(on)
            if on:
                net.resample_noise(self.torch_rngs)

    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        self._noise(self.q_net, on=False)
        with torch.inference_mode():
            return self._acting_q(self._tensor(obs), explore=False)

    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        n = obs.shape[1]
        self._noise(self.q_net, on=explore)
        # Each member's draws are its own: the uniform draws, then random actions if any env
        # explores (as a population of one draws them).
        randoms = []
        if explore:
            everywhere = True  # every env of every member explores: no forward pass needed
            for rng, eps in zip(self.rngs, self.epsilons, strict=True):
                if n == 1:  # scalar draws: the numbers arrays of one hold, at a sixth the cost
                    drawn = (_ONE_ENV, np.array([rng.integers(self.n_actions)])) \
                        if rng.random() < eps else None
                    everywhere = everywhere and drawn is not None
                else:
                    mask = rng.random(n) < eps
                    drawn = (mask, rng.integers(self.n_actions, size=n)) if mask.any() else None
                    everywhere = everywhere and drawn is not None and bool(mask.all())
                randoms.append(drawn)
            if everywhere:
                return np.stack([r[1] for r in randoms])
        # The members whose greedy actions some env takes (as each would compute alone).
        needed = [r is None or not bool(r[0].all()) for r in randoms] if explore else None
        with torch.inference_mode():
            q = self._acting_q(self._tensor(obs), explore, needed)
        greedy = q.argmax(dim=2).cpu().numpy()
        for i, drawn in enumerate(randoms):
            if drawn is not None:
                greedy[i] = np.where(drawn[0], drawn[1], greedy[i])
        return greedy

    def _acting_q(self, obs: torch.Tensor, explore: bool, needed: list[bool] | None = None
                  ) -> torch.Tensor:
        """The Q-values ``[members, envs, n_actions]`` whose argmax is the greedy action;
        ``needed``: the members whose greedy actions are taken (None: all), for an agent that
        draws at random for them (a member alone draws only when it acts greedily)."""
        return self._q_from_outputs(self.q_net.act_forward(obs))

    def _gradient_step(self, loss: torch.Tensor) -> None:
        """One step on ``loss``, the members' losses ``[members]`` (summed: each member's
        gradient is its own loss's)."""
        self.optimizer.step(loss.sum(), self.lr_scales)

    def _gradient_step_on(self, x: torch.Tensor, loss_of_outputs: LossOfOutputs,
                          gradient: OutputGradient | None = None) -> tuple[torch.Tensor, ...]:
        """One step on the members' losses ``loss_of_outputs(self.q_net(x))[0]``, a loss that
        reads the network only through its outputs on ``x``: the network may then compute
        the gradients without autograd's engine (``sets_gradients``), from ``gradient``'s
        where given. Returns what ``loss_of_outputs`` returned, detached."""
        return self.optimizer.step_on(x, loss_of_outputs, self.lr_scales, gradient)

    def state_dict(self, i: int = 0) -> dict[str, Any]:
        """Member ``i``'s weights, optimizer state and counters; subclasses add what else they
        need to resume."""
        return {
            "q_net": self.q_net.member_state_dict(i),
            "optimizer": self.optimizer.member_state_dict(i, self.lr_scales),
            "env_steps": self.env_steps,
            "rng": self.rngs[i].bit_generator.state,  # a dict of ints and strings
            **({"torch_rng": self.torch_rngs[i].get_state()} if self.torch_rngs else {}),
        }

    def load_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        for i, state in enumerate(states):
            self.q_net.load_member_state_dict(i, state["q_net"])
            self.rngs[i].bit_generator.state = state["rng"]
        self.optimizer.load_member_state_dicts([s["optimizer"] for s in states])
        if self.torch_rngs:
            for rng, state in zip(self.torch_rngs, states, strict=True):
                rng.set_state(state["torch_rng"])
        self.env_steps = shared_counter(states, "env_steps")


def shared_counter(states: Sequence[dict[str, Any]], key: str, default: int | None = None
                   ) -> int:
    """A counter every member's state has the same value of (they trained together);
    ``default``: its value in states saved before it existed."""
    values = {int(s[key] if default is None else s.get(key, default)) for s in states}
    if len(values) != 1:
        raise ValueError(f"the members' states are at different points ({key}: "
                         f"{sorted(values)}); a population resumes members saved together")
    return values.pop()
